"""Weight-space regularisers for few-shot adaptation."""
from __future__ import annotations

import torch


def ewc_penalty(params, source_params, fisher) -> torch.Tensor:
    """EWC (Li et al., 2020): Σ_i F_i (θ_i − θ_s,i)², summed over every tensor.

    ``params`` the adapted weights θ, ``source_params`` the frozen θ_s and
    ``fisher`` the diagonal Fisher F, three sequences of same-shaped tensors.
    """
    return sum((f * (p - s).pow(2)).sum() for p, s, f in zip(params, source_params, fisher))
