"""Evaluation, one package for trials and `raygan eval`: the seeded sampling of generators
(sampling.py), the few-shot metrics with their provenance (fewshot.py, used by trials through
trials.py and by the command), label-to-image scoring (label_scoring.py, labels.py), and the
`raygan eval` command itself (command.py)."""
