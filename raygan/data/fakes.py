"""Procedural "fakes" of the sketches domain: hard negatives for shapesnet's realism head.

A failed few-shot adaptation rarely looks like the source domain; it looks like paper with
noise on it (noise-injection gone loud), filled ink blobs where the source had shapes, or
mush. A realism classifier trained only on real source vs real target images happily calls
such images "target" (speckled paper scored p_t = 0.99998 under shapesnet v1). Every
generator here makes one kind of such failure, labelled "not target" when shapesnet trains,
and the tests score each kind with the final net.

Each generator is `fn(n, size=32, seed=0) -> [n, 3, size, size]` float in [-1, 1], fully
determined by (seed, n): image i is drawn from numpy's default_rng([seed, i]) or from
`synthetic.sample_scenes(seed, n)`, so training (seeds from FAKE_TRAIN_SEED) and the tests
(synthetic.HELD_OUT_OFFSET + ...) never share images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from raygan.data import synthetic

FAKE_TRAIN_SEED = 30_000   # scene/noise seeds of the training fakes; disjoint from shots, held-out, TRAIN_SEED
STRONG_BLUR = (1.5, 3.0)   # sigma range (px at 32 px) of blurred-sketch negatives; see blurred_sketches


def gaussian_blur(x: torch.Tensor, sigma) -> torch.Tensor:
    """Separable Gaussian blur of NCHW images (reflect padding, radius ceil(3 sigma)); `sigma` is a
    float or one value per image [n]. sigma <= 0 leaves an image unchanged."""
    n, c, h, w = x.shape
    sig = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1).expand(n)
    radius = int(math.ceil(3 * float(sig.max()))) if n else 0
    if radius == 0:
        return x.clone()
    radius = min(radius, h - 1, w - 1)
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sig.clamp(min=1e-6)[:, None]) ** 2)
    k = torch.where(sig[:, None] > 0, k, (t[None] == 0).to(x.dtype))   # delta kernel for sigma 0
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)            # [n*c, 2r+1]
    y = x.reshape(1, n * c, h, w)
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode="reflect"), k[:, None, None, :], groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def _rngs(seed: int, n: int):
    return [np.random.default_rng([seed, i]) for i in range(n)]


def _sketches(n: int, size: int, seed: int) -> torch.Tensor:
    return synthetic.render(synthetic.sample_scenes(seed, n), size, "target")


def blank_paper(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """The target domain's paper (tint and grain) with nothing drawn on it."""
    scenes = synthetic.sample_scenes(seed, n)
    scenes.count = np.zeros_like(scenes.count)     # no shapes: render stops after the paper
    return synthetic.render(scenes, size, "target")


def _speckle(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Per-pixel noise of the kind a generator with too-loud noise injection draws: sparse
    dark/light impulses (ink dots, holes) or dense Gaussian grain, grey or per-channel."""
    _, h, w = img.shape
    chans = 1 if rng.random() < 0.6 else 3
    if rng.random() < 0.5:   # impulses at density 2-60 %, mostly dark
        mask = rng.random((chans, h, w)) < rng.uniform(0.02, 0.6)
        sign = np.where(rng.random((chans, h, w)) < rng.uniform(0.6, 1.0), -1.0, 1.0)
        noise = mask * sign * rng.uniform(0.3, 1.6, (chans, h, w))
    else:                    # dense grain, std 0.1-0.6 (in [-1, 1] units)
        noise = rng.normal(0.0, rng.uniform(0.1, 0.6), (chans, h, w))
    return (img + torch.as_tensor(noise, dtype=img.dtype)).clamp(-1, 1)


def speckled_paper(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Blank paper + per-pixel speckle (see _speckle): the v1 net's p_t for this was 0.99998."""
    paper = blank_paper(n, size, seed)
    return torch.stack([_speckle(p, rng) for p, rng in zip(paper, _rngs(seed, n))])


def speckled_faint_sketches(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Sketches faded to 10-35 % contrast under strong speckle: noise dominates the drawing.
    (Clear sketches with light noise are NOT negatives: an adapted generator is allowed some grain.)"""
    sketches, paper = _sketches(n, size, seed), blank_paper(n, size, seed)
    out = []
    for s, p, rng in zip(sketches, paper, _rngs(seed + 1, n)):
        faint = p + rng.uniform(0.1, 0.35) * (s - p)
        noisy = faint
        while (noisy - faint).abs().mean() < 0.12:   # redraw until the speckle is strong
            noisy = _speckle(faint, rng)
        out.append(noisy)
    return torch.stack(out)


def gaussian_noise(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Per-pixel Gaussian noise around a random grey level, grey or per-channel."""
    out = []
    for rng in _rngs(seed, n):
        chans = 1 if rng.random() < 0.5 else 3
        x = rng.normal(rng.uniform(-0.6, 0.8), rng.uniform(0.2, 1.0), (chans, size, size))
        out.append(torch.as_tensor(x, dtype=torch.float32).expand(3, size, size))
    return torch.stack(out).clamp(-1, 1)


def blurred_sketches(n: int, size: int = 32, seed: int = 0, sigma=STRONG_BLUR) -> torch.Tensor:
    """Sketches under a strong Gaussian blur, sigma uniform in `sigma` (px at 32 px, scaled with
    size). The range starts at 1.5 px because an adapted 32-px GAN draws slightly soft lines
    that must still count as sketches (light blur, sigma <= 0.7, keeps p_t >= 0.9)."""
    lo, hi = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    sig = torch.as_tensor(np.array([rng.uniform(lo, hi) for rng in _rngs(seed, n)]), dtype=torch.float32)
    return gaussian_blur(_sketches(n, size, seed), sig * size / 32).clamp(-1, 1)


def blobs(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """The scene's shapes FILLED with ink (dark to mid grey) on paper instead of outlined:
    failed adaptations turn the source's filled shapes into dark blobs."""
    scenes = synthetic.sample_scenes(seed, n)
    img = (blank_paper(n, size, seed) + 1) / 2                        # [0, 1]
    xx, yy = synthetic._grid(size)
    tone = torch.as_tensor(np.array([rng.uniform(0.05, 0.45) for rng in _rngs(seed, n)]), dtype=torch.float32)
    for j in range(synthetic.MAX_SHAPES):
        sdf, _ = synthetic._slot_fields(scenes, j, xx, yy)
        fill = (0.5 - sdf * size).clamp(0, 1).reshape(n, 1, size, size)  # anti-aliased coverage
        img = img * (1 - fill) + tone[:, None, None, None] * fill
    return img * 2 - 1


# name -> generator; shapesnet trains on all of them as "not target"
KINDS = {
    "blank_paper": blank_paper,
    "speckled_paper": speckled_paper,
    "speckled_faint_sketches": speckled_faint_sketches,
    "gaussian_noise": gaussian_noise,
    "blurred_sketches": blurred_sketches,
    "blobs": blobs,
}


def make(kind: str, n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """n fakes of one kind (a key of KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown fake kind {kind!r}; expected one of {sorted(KINDS)}")
    return KINDS[kind](n, size, seed)


def training_fakes(n_per_kind: int, size: int = 32, seed: int = FAKE_TRAIN_SEED) -> torch.Tensor:
    """n_per_kind fakes of every kind (kind k from seed + k), concatenated in KINDS order."""
    return torch.cat([fn(n_per_kind, size, seed + k) for k, fn in enumerate(KINDS.values())])
