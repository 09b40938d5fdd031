"""The one seeded way few-shot generators are sampled for evaluation.

Trial evaluations (metrics/evaluate.py) and `raygan eval` (eval_fewshot.py) both
call ``generate``, so a checkpoint scores the same in both for the same z and seed.
"""
from __future__ import annotations

from typing import Callable

import torch

NOISE_SEED_STRIDE = 100_003  # batch i of seed s draws its noise maps from s * stride + i


@torch.no_grad()
def generate(g, z: torch.Tensor, seed: int, batch: int, device="cpu",
             latent_map: Callable | None = None) -> torch.Tensor:
    """G(z) in [-1, 1] on the CPU, in batches of ``batch``; batch i's noise maps come
    from ``seed * NOISE_SEED_STRIDE + i``, so two generators of one architecture get
    the same noise for the same z (SCS pairs G_t with G_s on it) and a prefix of z
    gets the noise of the full run. ``latent_map`` (z -> W+ styles, e.g. RSSA's
    compression) replaces G's own mapping when given."""
    was_training = g.training
    g.eval()
    out = []
    with torch.random.fork_rng(devices=[]):
        for i, b in enumerate(z.split(batch)):
            torch.manual_seed(seed * NOISE_SEED_STRIDE + i)
            b = b.to(device)
            img = g([latent_map(b)], input_is_latent=True)[0] if latent_map else g([b])[0]
            out.append(img.clamp(-1, 1).cpu())
    g.train(was_training)
    return torch.cat(out)
