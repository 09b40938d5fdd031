"""The one seeded way few-shot generators are sampled for evaluation.

Trial evaluations (evaluation/trials.py) and `raygan eval` (raygan/commands/evaluate.py) both draw their codes
with ``eval_codes`` and render them with ``generate``, so a checkpoint scores the same in both
for the same seed and sample count.
"""
from __future__ import annotations

from typing import Callable

import torch

Z_SEED_OFFSET = 10_000        # evaluation codes of seed s come from seed 10_000 + s
NOISE_SEED_STRIDE = 100_003   # noise chunk i of seed s is drawn from s * stride + i
NOISE_CHUNK = 200             # samples per noise chunk: fixed, so the batch size never changes the noise


def eval_codes(n: int, style_dim: int, seed: int) -> torch.Tensor:
    """The fixed batch of z an evaluation of seed ``seed`` renders (a prefix of a longer one)."""
    return torch.randn(n, style_dim, generator=torch.Generator().manual_seed(Z_SEED_OFFSET + seed))


def chunk_noise(g, n: int) -> list[torch.Tensor]:
    """Per-layer noise maps for ``n`` samples, drawn from the global RNG in G's layer order
    (the values G itself would draw with randomize_noise)."""
    shapes = [getattr(g.noises, f"noise_{i}").shape[2:] for i in range(g.num_layers)]
    return [torch.randn(n, 1, *hw) for hw in shapes]


@torch.no_grad()
def generate(g, z: torch.Tensor, seed: int, batch: int, device="cpu",
             latent_map: Callable | None = None, shared_noise: bool = False) -> torch.Tensor:
    """G(z) in [-1, 1] on the CPU, computed ``batch`` samples at a time. The noise maps of
    samples [200 i, 200 (i + 1)) come from seed ``seed * NOISE_SEED_STRIDE + i`` whatever the
    batch, so two generators of one architecture get the same noise for the same z (SCS pairs
    G_t with G_s on it) and a prefix of z gets the noise of the full run. ``latent_map``
    (z -> W+ styles, e.g. RSSA's compression) replaces G's own mapping when given.
    ``shared_noise``: every sample of a chunk gets the noise of its first (the frames of an
    interpolation differ in their codes only)."""
    was_training = g.training
    g.eval()
    out = []
    with torch.random.fork_rng(devices=[]):
        for i, chunk in enumerate(z.split(NOISE_CHUNK)):
            torch.manual_seed(seed * NOISE_SEED_STRIDE + i)
            noise = chunk_noise(g, len(chunk))
            if shared_noise:
                noise = [n[:1].expand_as(n) for n in noise]
            for j in range(0, len(chunk), batch):
                b = chunk[j:j + batch].to(device)
                nz = [n[j:j + batch].to(device) for n in noise]
                styles = [latent_map(b)] if latent_map else [b]
                img = g(styles, input_is_latent=latent_map is not None, noise=nz)[0]
                out.append(img.clamp(-1, 1).cpu())
    g.train(was_training)
    return torch.cat(out)
