"""Realism p_t (DCL Eq. 3): mean probability, under a binary source-vs-target classifier
trained on held-out real images, that generated images belong to the target domain."""
from __future__ import annotations

import torch

from raygan.metrics.features import batched

NAME = "realism"


def realism(images: torch.Tensor, net, batch_size: int = 250) -> float:
    """Mean sigmoid of the classifier's domain logit over images in [-1, 1] (NCHW).

    `net(x)["domain"]` is the target-vs-source logit, as in ShapesNet; DCL evaluates it on
    G_t(z) for a fixed batch of 1000 z."""
    device = next(net.parameters()).device
    probs = batched(lambda x: torch.sigmoid(net(x)["domain"]), images, batch_size, device)
    return float(probs.double().mean())
