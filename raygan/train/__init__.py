"""Training: the loop every trial runs (loop.py, plain PyTorch), pretraining of the embedded
source (pretrain.py), and the gradient-sync contract methods see (sync.py)."""
