"""The commands that read what the searches wrote: `raygan eval` (evaluate.py; label-to-image
checkpoints: evaluate_labels.py) and `raygan generate` (generate.py)."""
