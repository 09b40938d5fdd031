"""DomainNet: the realism classifier C of DCL Eq. 3 for any target, trained from scratch.

DCL measures realism as p_t = E_z C(G_t(z)), C a binary classifier trained on held-out real
images of the target domain (1) against the source domain (0). On the embedded sketches
raygan's ShapesNet has such a head; on a folder target this small CNN is trained once, on
the target images (the target folder and the reference folder together) against the
non-target ones (``data.source_images``, or where none are given G_s's samples, which the
provenance then says), and cached under a fingerprint of both sets (``load_domainnet``).

Three choices keep C honest (the checks in ``heldout_checks`` are tests):
- hard negatives, labelled 0: noise, blank images in a target image's mean colour, strongly
  blurred target images (trained on real images only, a classifier calls a failed
  adaptation's noise or mush "target": see raygan.data.fakes);
- augmentations of every real image, of both classes alike (a flip, a crop, a lower
  resolution, JPEG re-encoding), so that C cannot tell the two sets apart by their resolution
  or their compression; light blur (sigma <= 0.9 px at 32 px) stays a positive, strong blur a
  negative, as for ShapesNet; the hard negatives are made after the augmentations;
- held-out checks: a share of each set is kept out of training, and C is refused
  (``check``) when it does not separate them.
Images above ``MAX_RESOLUTION`` are area-downsampled first (C's cost then stops growing
with the generator's size). Its 128-d pooled features feed fd_domainnet and its conv
activations intra_domainnet.
"""
from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from raygan import cache
from raygan.data.fakes import gaussian_blur
from raygan.errors import UserError
from raygan.metrics.features import block_outputs

VERSION = "d2"            # bump when the architecture, data or recipe changes (invalidates caches)
DEFAULT_STEPS, BATCH = 600, 64
TEST_STEPS, TEST_BATCH = 50, 32   # the test-size recipe under $RAYGAN_TEST_NETWORKS=1
MAX_RESOLUTION = 128
FEATURE_DIM = 128
HELD_OUT_SHARE = 0.25     # of each set, never trained on, behind heldout_checks (at least 2 images)
MIN_ACCURACY = 0.8        # held-out accuracy, each side, below which C is refused
SOURCE_SAMPLES = 400      # G_s samples drawn when no data.source_images are given
NEGATIVE_SHARE = 0.5      # of a batch: 1/2 target, 1/2 not target (of which HARD_SHARE hard negatives)
HARD_SHARE = 1 / 3
STRONG_BLUR, SOFT_BLUR = (1.8, 3.5), (0.0, 0.9)   # sigmas in px at 32 px (negatives / positives)
LOW_RES, JPEG_QUALITY = (0.5, 1.0), (30, 95)      # augmentations: resolution factor, JPEG quality


class DomainNet(nn.Module):
    """Conv blocks (conv 3x3, batch norm, ReLU) at every resolution from the input's down to
    4 x 4, each after a 2x max pooling (it keeps thin strokes, as in ShapesNet), a pooled
    128-d embedding and one logit: target (1) vs not target (0)."""

    def __init__(self, size: int, width: int = 16):
        super().__init__()
        self.config = {"size": size, "width": width}
        self.resolution = min(size, MAX_RESOLUTION)
        n_blocks = max(1, self.resolution.bit_length() - 2)            # 32 px: 32, 16, 8, 4
        chans = [3] + [min(width * 2 ** i, 8 * width) for i in range(n_blocks)]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, padding=1, bias=False), nn.BatchNorm2d(b), nn.ReLU())
            for a, b in zip(chans[:-1], chans[1:]))
        self.embed = nn.Sequential(nn.Linear(chans[-1], FEATURE_DIM), nn.ReLU())
        self.domain_head = nn.Linear(FEATURE_DIM, 1)

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The activations of every conv block (before the next block's pooling)."""
        if x.shape[-1] != self.resolution:
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="area")
        return block_outputs(self.blocks, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.embed(self.layer_features(x)[-1].mean((2, 3)))

    def forward(self, x: torch.Tensor) -> dict:
        return {"domain": self.domain_head(self.features(x)).squeeze(1)}


# ---- the training data --------------------------------------------------------------------------

def split(images: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, held-out) of a set: HELD_OUT_SHARE of it (at least 2) by a seeded permutation."""
    n_out = max(2, round(HELD_OUT_SHARE * len(images)))
    if len(images) < n_out + 2:
        raise ValueError(f"expected at least {n_out + 2} images to hold {n_out} out, got {len(images)}")
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    return images[order[n_out:]], images[order[:n_out]]


def hard_negatives(target: torch.Tensor, kind: str, gen: torch.Generator) -> torch.Tensor:
    """Images a failed adaptation draws, made from target images: ``noise`` (Gaussian around
    the image's mean colour), ``blank`` (its mean colour, faint grain), ``blur`` (STRONG_BLUR)."""
    n, size = len(target), target.shape[-1]
    mean = target.mean((2, 3), keepdim=True).expand_as(target)
    if kind == "noise":
        scale = torch.rand(n, 1, 1, 1, generator=gen) * 0.8 + 0.2
        return (mean + scale * torch.randn(target.shape, generator=gen)).clamp(-1, 1)
    if kind == "blank":
        return (mean + 0.02 * torch.randn(target.shape, generator=gen)).clamp(-1, 1)
    if kind == "blur":
        sigma = torch.empty(n).uniform_(*STRONG_BLUR, generator=gen) * size / 32
        return gaussian_blur(target, sigma).clamp(-1, 1)
    raise ValueError(f"unknown hard negative {kind!r}")


HARD_NEGATIVES = ("noise", "blank", "blur")


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The same augmentations for both classes: flips, a crop of 80-100 % of the side, a lower
    resolution (LOW_RES, back up bilinearly), JPEG at JPEG_QUALITY for half the batch, and a
    light blur (SOFT_BLUR) for a quarter."""
    n, _, size, _ = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    side = int(size * float(torch.empty(1).uniform_(0.8, 1.0, generator=gen)))
    top, left = (int(torch.randint(size - side + 1, (1,), generator=gen)) for _ in range(2))
    x = F.interpolate(x[..., top:top + side, left:left + side], size=(size, size), mode="bilinear", align_corners=False)
    low = max(4, int(size * float(torch.empty(1).uniform_(*LOW_RES, generator=gen))))
    if low < size:
        x = F.interpolate(F.interpolate(x, size=(low, low), mode="area"), size=(size, size), mode="bilinear",
                          align_corners=False)
    jpeg = (torch.rand(n, generator=gen) < 0.5).nonzero().flatten().tolist()
    if jpeg:
        x[jpeg] = jpeg_roundtrip(x[jpeg], int(torch.randint(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1, (1,), generator=gen)))
    soft = torch.rand(n, generator=gen) < 0.25
    sigma = torch.empty(n).uniform_(*SOFT_BLUR, generator=gen) * soft * size / 32
    return gaussian_blur(x, sigma).clamp(-1, 1)


def jpeg_roundtrip(x: torch.Tensor, quality: int) -> torch.Tensor:
    """Images in [-1, 1] saved as JPEG at ``quality`` (PIL) and read back."""
    out = []
    for img in ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=quality)
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


def train_domainnet(target: torch.Tensor, other: torch.Tensor, steps: int = DEFAULT_STEPS, batch_size: int = BATCH,
                    seed: int = 0, device="cpu", progress=print) -> DomainNet:
    """C trained from scratch on ``target`` (label 1) against ``other`` and the hard negatives
    (label 0), every batch augmented; seeded, the global RNG left as it was."""
    t0, size = time.time(), target.shape[-1]
    n_neg = int(batch_size * NEGATIVE_SHARE)
    n_hard = max(len(HARD_NEGATIVES), int(n_neg * HARD_SHARE))
    n_other, n_pos = n_neg - n_hard, batch_size - n_neg
    labels = torch.cat([torch.ones(n_pos), torch.zeros(n_neg)]).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DomainNet(size).to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=max(steps, 2), pct_start=0.15)
        gen = torch.Generator().manual_seed(seed)
        pick = lambda pool, k: pool[torch.randint(len(pool), (k,), generator=gen)]  # noqa: E731
        for _ in range(steps):
            # The real images are augmented, the hard negatives made afterwards from augmented
            # target images: a generator's failures carry no JPEG or resampling artefacts (made
            # before the augmentations, strong noise came out smoothed, and raw noise scored 1.0).
            real = augment(torch.cat([pick(target, n_pos), pick(other, n_other), pick(target, n_hard)]), gen)
            kinds = torch.arange(n_hard) % len(HARD_NEGATIVES)
            hard = real[n_pos + n_other:]
            x = torch.cat([real[:n_pos + n_other],
                           *[hard_negatives(hard[kinds == i], k, gen) for i, k in enumerate(HARD_NEGATIVES)]])
            loss = F.binary_cross_entropy_with_logits(net(x.to(device))["domain"], labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    progress(f"domainnet: trained {size}px on {len(target)} target vs {len(other)} other images, {steps} steps "
             f"in {time.time() - t0:.1f}s (final loss {loss.item():.3f})")
    return net.eval()


@torch.no_grad()
def heldout_checks(net: DomainNet, target: torch.Tensor, other: torch.Tensor, seed: int = 0) -> dict:
    """Mean p(target) on held-out images: ``target``, ``other`` and the hard negatives made
    from the held-out target images; ``accuracy`` is the lower of the two real sides'."""
    gen = torch.Generator().manual_seed(seed)
    p = lambda x: torch.sigmoid(net(x.to(next(net.parameters()).device))["domain"]).cpu()  # noqa: E731
    checks = {"target": float(p(target).mean()), "other": float(p(other).mean())}
    checks.update({k: float(p(hard_negatives(target, k, gen)).mean()) for k in HARD_NEGATIVES})
    checks["accuracy"] = min(float((p(target) > 0.5).float().mean()), float((p(other) < 0.5).float().mean()))
    return checks


def describe(checks: dict) -> str:
    """The held-out checks in one line (printed, and kept in every score's provenance)."""
    return (f"held-out p(target): target {checks['target']:.2f}, other {checks['other']:.2f}, "
            + ", ".join(f"{k} {checks[k]:.2f}" for k in HARD_NEGATIVES) + f"; accuracy {checks['accuracy']:.2f}")


def check(checks: dict, where: str, what: str) -> None:
    """Refuse a C that does not separate the held-out images of its two sets, or that calls
    one kind of hard negative made from held-out target images "target"."""
    if checks["accuracy"] < MIN_ACCURACY:
        raise UserError(where, f"the realism classifier C ({what}) tells held-out target from non-target images "
                               f"apart only {checks['accuracy']:.0%} of the time (expected at least "
                               f"{MIN_ACCURACY:.0%}): give more target images or data.source_images")
    if fooled := [k for k in HARD_NEGATIVES if checks[k] >= 0.5]:
        raise UserError(where, f"the realism classifier C ({what}) calls held-out {fooled[0]} images target "
                               f"(p {checks[fooled[0]]:.2f}): give more target images")


def load_domainnet(key: str, size: int, data: Callable[[], tuple], steps: int | None = None, device="cpu",
                   progress=print) -> DomainNet:
    """The C of the image sets that ``key`` fingerprints, from the cache, or trained now on
    ``data()`` ((target, other) in [-1, 1]) with HELD_OUT_SHARE of each kept out; its
    ``config["checks"]`` are the held-out checks it was saved with. ``steps`` None: the
    default recipe, or the test-size one under $RAYGAN_TEST_NETWORKS=1."""
    test = cache.test_networks()
    steps, batch = steps or (TEST_STEPS if test else DEFAULT_STEPS), TEST_BATCH if test else BATCH
    path = Path(cache.cache_dir()) / f"domainnet_{size}px_{VERSION}_{steps}x{batch}_{key[:16]}.pt"

    def train():
        target, other = data()
        (target, target_out), (other, other_out) = split(target), split(other)
        net = train_domainnet(target, other, steps, batch, device=device, progress=progress)
        net.config["checks"] = heldout_checks(net, target_out, other_out)
        return net

    def build(config):
        net = DomainNet(config["size"], config["width"])
        net.config["checks"] = config["checks"]
        return net

    meta = {"version": VERSION, "size": size, "steps": steps, "batch": batch, "key": key}
    return cache.cached_network(path, meta, build, train, "domainnet").to(device)
