"""ShapesNet: a small feature network for the embedded procedural domains.

Published metrics use Inception / VGG / AlexNet, whose weights cannot be downloaded
on an offline machine. For the embedded benchmark raygan trains this CNN on
held-out procedural images of both styles, with three heads:
  domain  1 logit, target (1) vs not target (0) -> realism classifier p_t (DCL Eq. 3)
  kind    kind of the largest shape              -> makes the features shape-aware
  count   number of shapes (0-based)
"Not target" is the real source images AND procedural hard negatives (raygan.data.fakes:
speckled / blank paper, noise, strongly blurred sketches, ink blobs): trained on source vs
target alone, the head called speckled paper a sketch (p_t 0.99998), which rewarded
failed adaptations. The kind/count heads train on the real images only.
Its 128-d penultimate layer feeds `fd_shapesnet`; its conv activations feed the
perceptual-distance fallback of intra-cluster diversity. Metrics computed with it
carry "shapesnet" in their names.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from raygan import cache
from raygan.data import fakes, synthetic

VERSION = "v2"          # bump when the architecture, data or recipe changes (invalidates caches)
DEFAULT_STEPS = 1200
TEST_STEPS, TEST_SCENES = 40, 128  # the test-size recipe ($RAYGAN_TEST_NETWORKS=1, raygan.cache.test_networks)
TRAIN_SEED = 20_000     # scene seed of the training pool; disjoint from shots (0..) and held-out (10_000+)
FEATURE_DIM = 128
FAKE_SHARE = 0.35       # hard negatives per real training image (all kinds together)
SOFT_SHARE = 0.5        # share of the target images that also enter the pool lightly blurred
SOFT_BLUR = (0.0, 0.9)  # blur sigmas of the softened target images (positives); negatives start at 1.5


class ShapesNet(nn.Module):
    def __init__(self, n_kinds: int = len(synthetic.KINDS), n_counts: int = synthetic.MAX_SHAPES,
                 width: int = 16):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())
            for cin, cout in zip(chans[:-1], chans[1:]))
        self.embed = nn.Sequential(nn.Linear(chans[-1], FEATURE_DIM), nn.ReLU())
        self.domain_head = nn.Linear(FEATURE_DIM, 1)
        self.kind_head = nn.Linear(FEATURE_DIM, n_kinds)
        self.count_head = nn.Linear(FEATURE_DIM, n_counts)

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activations of every conv block (before its pooling), [B, C, H, W] each."""
        return block_outputs(self.blocks, x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 128-d penultimate features [B, 128]."""
        return self.embed(self.layer_features(x)[-1].mean((2, 3)))

    def forward(self, x: torch.Tensor) -> dict:
        h = self.features(x)
        return {"domain": self.domain_head(h).squeeze(1), "kind": self.kind_head(h),
                "count": self.count_head(h)}


def block_outputs(blocks, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of each of ``blocks`` applied in turn, each after a 2x max pooling but the
    first. Max pooling keeps thin strokes and corners (ShapesNet learnt shape kinds much faster
    with it than with average pooling)."""
    outs = []
    for i, block in enumerate(blocks):
        x = block(x if i == 0 else F.max_pool2d(x, 2))
        outs.append(x)
    return outs


def _cache_path(cache_dir, size: int, steps: int, n_scenes: int | None = None) -> Path:
    suffix = ("" if steps == DEFAULT_STEPS else f"_{steps}steps") + (f"_{n_scenes}scenes" if n_scenes else "")
    return Path(cache_dir or cache.cache_dir()) / f"shapesnet_{size}px_{VERSION}{suffix}.pt"


def _training_pool(size: int, n_scenes: int):
    """(images, domain, kind, count). Both renderings of the same scenes, so the domain head can
    only use style, not content; a lightly blurred copy of a SOFT_SHARE of the target images
    (target, see _soften); then the hard negatives of raygan.data.fakes, FAKE_SHARE of the real
    images in number, with domain 0. kind/count -1 means no label (masked out of those losses)."""
    scenes = synthetic.sample_scenes(TRAIN_SEED, n_scenes)
    target = synthetic.render(scenes, size, "target")
    n_soft = int(SOFT_SHARE * n_scenes)
    real = torch.cat([synthetic.render(scenes, size, "source"), target, _soften(target[:n_soft])])
    n_fake = max(1, round(FAKE_SHARE * len(real) / len(fakes.KINDS)))
    fake = fakes.training_fakes(n_fake, size)
    labels = synthetic.scene_labels(scenes)
    no_label = torch.full((len(fake),), -1, dtype=torch.long)
    # The soft copies train the domain head only: with kind/count labels too, they cost the
    # kind head accuracy on sharp images (held-out 0.94 -> 0.81) for no gain in realism.
    real_labels = lambda y: torch.cat([y, y, torch.full((n_soft,), -1), no_label])
    domain = torch.cat([torch.zeros(n_scenes), torch.ones(n_scenes + n_soft), torch.zeros(len(fake))])
    return torch.cat([real, fake]), domain, real_labels(labels["kind"]), real_labels(labels["count"])


def _soften(target: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Target images under a light blur, sigma uniform in SOFT_BLUR (px at 32 px), kept as target.
    Without them the head learnt "sharp lines" from the strongly blurred negatives (sigma >= 1.5)
    and already rejected sigma 0.7 (p_t 0.02), i.e. the slightly soft lines a 32-px GAN draws."""
    n, size = len(target), target.shape[-1]
    sigma = torch.empty(n).uniform_(*SOFT_BLUR, generator=torch.Generator().manual_seed(seed))
    return fakes.gaussian_blur(target, sigma * size / 32).clamp(-1, 1)


def _labelled_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the rows with a label (y >= 0); 0 when a batch holds only fakes."""
    keep = y >= 0
    return F.cross_entropy(logits[keep], y[keep]) if keep.any() else logits.sum() * 0


def train_shapesnet(size: int = 32, steps: int = DEFAULT_STEPS, batch_size: int = 64,
                    n_scenes: int | None = None, device="cpu", seed: int = 0) -> ShapesNet:
    """Train a ShapesNet from scratch (seeded; the global RNG state is left untouched).
    The pool has n_scenes scenes in both styles; by default about one image per sample drawn
    (3000 scenes for the default recipe), so short test runs do not render a large pool."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t0 = time.time()
    n_scenes = n_scenes or int(min(3000, max(128, steps * batch_size // 2)))
    images, domain, kind, count = _training_pool(size, n_scenes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ShapesNet().to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=5e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=5e-3, total_steps=max(steps, 2), pct_start=0.15)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            idx = torch.randint(len(images), (batch_size,), generator=gen)
            x = images[idx]
            flip = torch.rand(batch_size, generator=gen) < 0.5   # labels are mirror-invariant
            x = torch.where(flip[:, None, None, None], x.flip(3), x).to(device)
            out = net(x)
            loss = (F.binary_cross_entropy_with_logits(out["domain"], domain[idx].to(device))
                    + _labelled_ce(out["kind"], kind[idx].to(device))
                    + _labelled_ce(out["count"], count[idx].to(device)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    print(f"shapesnet: trained {size}px, {steps} steps in {time.time() - t0:.1f}s (final loss {loss.item():.3f})")
    return net


@torch.no_grad()
def heldout_accuracy(net: ShapesNet, size: int = 32, n: int = 500, seed: int = 0) -> dict:
    """Accuracy of each head on held-out scenes (both styles); never seen in training."""
    device = next(net.parameters()).device
    scenes = synthetic.sample_scenes(synthetic.HELD_OUT_OFFSET + seed, n)
    labels = synthetic.scene_labels(scenes)
    acc = {"domain": 0.0, "kind": 0.0, "count": 0.0}
    for target, style in enumerate(synthetic.STYLES):
        out = net(synthetic.render(scenes, size, style).to(device))
        acc["domain"] += ((out["domain"] > 0).long().cpu() == target).float().mean().item() / 2
        acc["kind"] += (out["kind"].argmax(1).cpu() == labels["kind"]).float().mean().item() / 2
        acc["count"] += (out["count"].argmax(1).cpu() == labels["count"]).float().mean().item() / 2
    return acc


def load_shapesnet(size: int = 32, cache_dir=None, device="cpu", steps: int | None = None) -> ShapesNet:
    """The ShapesNet for `size`, in eval mode: from the cache (`cache_dir`, else $RAYGAN_CACHE,
    else ~/.cache/raygan), otherwise trained now and cached (raygan.cache.cached_network).
    `steps` None: the default recipe, or the test-size one under $RAYGAN_TEST_NETWORKS=1."""
    n_scenes = None
    if steps is None:
        steps, n_scenes = (TEST_STEPS, TEST_SCENES) if cache.test_networks() else (DEFAULT_STEPS, None)
    net = cache.cached_network(_cache_path(cache_dir, size, steps, n_scenes), {"version": VERSION, "size": size},
                               lambda config: ShapesNet(),
                               lambda: train_shapesnet(size, steps=steps, n_scenes=n_scenes, device=device),
                               "shapesnet")
    return net.to(device)


@torch.no_grad()
def batched(fn, images: torch.Tensor, batch_size: int = 250, device=None) -> torch.Tensor:
    """Apply fn to images in batches (no grad) and concatenate the results on the CPU."""
    if device is None:
        device = next(fn.parameters()).device if isinstance(fn, nn.Module) else "cpu"
    outs = [fn(images[i:i + batch_size].to(device)).cpu() for i in range(0, len(images), batch_size)]
    return torch.cat(outs) if outs else torch.zeros(0)


def extract_features(images: torch.Tensor, net: ShapesNet, batch_size: int = 250) -> torch.Tensor:
    """[N, 128] ShapesNet features of images in [-1, 1]."""
    device = next(net.parameters()).device
    return batched(net.features, images, batch_size, device)
