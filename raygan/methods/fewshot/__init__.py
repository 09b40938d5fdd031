"""Few-shot adaptation of a pretrained StyleGAN2: the shared harness (adapter.py) and one file per
method (tgan, freezed, ewc, cdc, dcl, rssa). Pure training code: losses, models, config, sync."""
