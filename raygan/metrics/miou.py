"""SegNet: a scene segmenter for the embedded label-to-image benchmark, and what uses it.

Label-to-image papers (SPADE, OASIS) score a generator by segmenting its images with a
pretrained segmenter (DeepLab / UperNet) and reporting the mIoU against the input label maps,
plus FID. Those networks cannot be downloaded on an offline machine, so for the embedded
procedural scenes (`raygan.data.scenes`) raygan trains this small U-Net once on freshly
rendered REAL scenes and caches it, like ShapesNet (`raygan.metrics.features`):

  miou_segnet   mIoU of SegNet(G(labels)) against `labels` on fixed held-out label maps
  miou_rare     IoU of the rare class(es) (`scenes.RARE`: person) in that same confusion
  fd_segnet     Fréchet distance between SegNet features of G(labels) and of held-out
                real scenes (not Inception, hence the name)

Architecture: a plain U-Net (conv-BN-ReLU x2 per level, max-pool down, bilinear up, skip
connections at every resolution including full resolution), width 12, depth 3. Measured at
32 px against `UNetDiscriminator(N_CLASSES, 32, base=16, spectral=False)` reading its first
N_CLASSES logits, same data / loss / optimiser, one CPU thread: the discriminator reached
held-out mIoU 0.74 (car 0.40, person 0.14) in 300 steps / 29 s, this U-Net 0.94 (car 0.87,
person 0.65) in 400 steps / 46 s. The discriminator has no full-resolution path (its first
block pools), which costs the thin classes (cars, 1-2 px wide people).

Default recipe (DEFAULT_STEPS = 600, batch 16, 3000 training scenes): 45-55 s at 32 px on one
CPU thread of a shared machine; held-out mIoU 0.938 (1000 scenes), per class sky 1.00,
grass 1.00, road 0.99, building 0.99, tree 0.99, water 0.99, car 0.87, person 0.67.
At 64 px training costs about four times as much (cached once).

The loss is class-weighted cross-entropy, weights ∝ (pixel frequency)^-1/2 (normalised to a
pixel-weighted mean of 1); without it the rare person class stays at IoU ≈ 0.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from raygan.data.scenes import N_CLASSES, held_out, render_scenes
from raygan import cache
from raygan.metrics.frechet import cached_stats

VERSION = "v1"          # bump when the architecture, data or recipe changes (invalidates caches)
DEFAULT_STEPS = 600
TEST_STEPS, TEST_SCENES = 30, 64  # the test-size recipe ($RAYGAN_TEST_NETWORKS=1, raygan.cache.test_networks)
BATCH_SIZE = 16
LR = 6e-3
WEIGHT_POWER = 0.5      # class weights ∝ frequency ** -WEIGHT_POWER
TRAIN_SEED = 777        # scene seed of the training pool; disjoint from training scenes (0..99)
                        # and from held-out scenes (HELD_OUT_OFFSET + seed = 10_000 + seed)
MAX_POOL = 3000         # scenes rendered for training (at most)
REFERENCE_SEED = 5_000  # held_out(seed=...) of the FD reference scenes: disjoint from any
                        # SceneEvaluator whose seed is < 5_000
N_REFERENCE = 2000
FD_NAME = "fd_segnet"
MIOU_NAME = "miou_segnet"
RARE_NAME = "miou_rare"
PROGRESS_EVERY = 100


# ---- the network ------------------------------------------------------------------------------

def _cbr(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class SegNet(nn.Module):
    """U-Net segmenter: images [B, 3, H, W] in [-1, 1] -> logits [B, n_classes, H, W]
    (H, W divisible by 2**depth)."""

    def __init__(self, n_classes: int = N_CLASSES, width: int = 12, depth: int = 3):
        super().__init__()
        self.config = dict(n_classes=n_classes, width=width, depth=depth)
        self.n_classes = n_classes
        ch = [width * 2 ** i for i in range(depth + 1)]
        self.inc = nn.Sequential(_cbr(3, ch[0]), _cbr(ch[0], ch[0]))
        self.down = nn.ModuleList(nn.Sequential(_cbr(ch[i], ch[i + 1]), _cbr(ch[i + 1], ch[i + 1]))
                                  for i in range(depth))
        self.up = nn.ModuleList(nn.Sequential(_cbr(ch[i + 1] + ch[i], ch[i]), _cbr(ch[i], ch[i]))
                                for i in reversed(range(depth)))
        self.head = nn.Conv2d(ch[0], n_classes, 1)
        self.feature_dim = ch[-1] + sum(ch[:-1])
        self.steps = None       # training steps of the recipe it came from (set by load_segnet)

    def forward(self, x: torch.Tensor, return_feats: bool = False):
        """Logits [B, n_classes, H, W]; with return_feats also the bottleneck map followed by
        every decoder stage's output (coarse to full resolution)."""
        skips = []
        x = self.inc(x)
        for block in self.down:
            skips.append(x)
            x = block(F.max_pool2d(x, 2))
        feats = [x]
        for block in self.up:
            s = skips.pop()
            x = block(torch.cat([F.interpolate(x, size=s.shape[-2:], mode="bilinear", align_corners=False), s], 1))
            feats.append(x)
        logits = self.head(x)
        return (logits, feats) if return_feats else logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, feature_dim] global-average-pooled bottleneck and decoder features (for fd_segnet)."""
        _, feats = self(x, return_feats=True)
        return torch.cat([f.mean((2, 3)) for f in feats], 1)


# ---- training and the cache -------------------------------------------------------------------

def _cache_path(cache_dir, size: int, steps: int, n_scenes: int | None = None) -> Path:
    suffix = ("" if steps == DEFAULT_STEPS else f"_{steps}steps") + (f"_{n_scenes}scenes" if n_scenes else "")
    return Path(cache_dir or cache.cache_dir()) / f"segnet_{size}px_{VERSION}{suffix}.pt"


def class_weights(labels: torch.Tensor, n_classes: int = N_CLASSES, power: float = WEIGHT_POWER) -> torch.Tensor:
    """Cross-entropy weights ∝ freq**-power (frequencies floored at 1e-4 of the largest),
    normalised so that the pixel-weighted mean weight is 1."""
    freq = torch.bincount(labels.reshape(-1), minlength=n_classes)[:n_classes].double() / labels.numel()
    w = (freq / freq.max()).clamp(min=1e-4) ** -power
    return (w / (w * freq).sum()).float()


def train_segnet(size: int = 32, steps: int = DEFAULT_STEPS, batch_size: int = BATCH_SIZE,
                 n_scenes: int | None = None, device="cpu", seed: int = 0) -> SegNet:
    """Train a SegNet from scratch on real scenes from TRAIN_SEED (seeded; the global RNG state
    is left untouched). Horizontal flips; class-weighted cross-entropy; Adam + one-cycle."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    t0 = time.time()
    n_scenes = n_scenes or int(min(MAX_POOL, max(256, steps * batch_size)))
    images, labels = render_scenes(TRAIN_SEED, n_scenes, size)
    weight = class_weights(labels).to(device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SegNet().to(device).train()
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=max(steps, 2), pct_start=0.15)
        gen = torch.Generator().manual_seed(seed)
        running = None
        for step in range(1, steps + 1):
            idx = torch.randint(len(images), (batch_size,), generator=gen)
            flip = torch.rand(batch_size, generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], images[idx].flip(3), images[idx]).to(device)
            y = torch.where(flip[:, None, None], labels[idx].flip(2), labels[idx]).to(device)
            loss = F.cross_entropy(net(x), y, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running = loss.item() if running is None else 0.9 * running + 0.1 * loss.item()
            if step % PROGRESS_EVERY == 0 or step == steps:
                print(f"raygan: training the scene segmenter (cached after the first run): "
                      f"step {step}/{steps}, loss {running:.3f}, {time.time() - t0:.0f}s", flush=True)
    net.eval()
    net.steps = steps
    return net


def load_segnet(size: int = 32, cache_dir=None, device="cpu", steps: int | None = None) -> SegNet:
    """The SegNet for `size`, in eval mode: from the cache (`cache_dir`, else $RAYGAN_CACHE,
    else ~/.cache/raygan), otherwise trained now and cached (raygan.cache.cached_network).
    `steps` None: the default recipe, or the test-size one under $RAYGAN_TEST_NETWORKS=1."""
    n_scenes = None
    if steps is None:
        steps, n_scenes = (TEST_STEPS, TEST_SCENES) if cache.test_networks() else (DEFAULT_STEPS, None)
    net = cache.cached_network(_cache_path(cache_dir, size, steps, n_scenes), {"version": VERSION, "size": size},
                               lambda config: SegNet(**config),
                               lambda: train_segnet(size, steps=steps, n_scenes=n_scenes, device=device),
                               "segnet")
    net.steps = steps
    return net.to(device)


# ---- mIoU -------------------------------------------------------------------------------------

def confusion(pred: torch.Tensor, target: torch.Tensor, n_classes: int = N_CLASSES) -> torch.Tensor:
    """Confusion matrix LongTensor [n, n]: entry [t, p] counts pixels of true class t predicted
    as p. Target pixels outside 0..n-1 (an ignore label such as 255) are skipped; predictions
    must lie in 0..n-1."""
    pred, target = torch.as_tensor(pred).long().reshape(-1), torch.as_tensor(target).long().reshape(-1)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target sizes differ: {pred.numel()} vs {target.numel()}")
    keep = (target >= 0) & (target < n_classes)
    pred, target = pred[keep].cpu(), target[keep].cpu()
    if pred.numel() and (pred.min() < 0 or pred.max() >= n_classes):
        raise ValueError(f"predicted class ids must be in 0..{n_classes - 1}")
    return torch.bincount(target * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def iou_per_class(conf: torch.Tensor) -> torch.Tensor:
    """IoU = TP / (TP + FP + FN) per class, float64 [n]; NaN where the union is empty (the
    class is absent from both target and prediction)."""
    conf = torch.as_tensor(conf).double()
    inter = conf.diagonal()
    union = conf.sum(0) + conf.sum(1) - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.full_like(inter, math.nan))


def miou(conf: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(mean IoU, per-class IoU [n] float64) from a confusion matrix.

    The mean is over the classes with a non-zero union, i.e. present in the target OR in the
    prediction (the DeepLab / OASIS convention, which accumulates one confusion matrix over
    the whole evaluation set): a class only predicted counts with IoU 0; a class absent from
    both is excluded (NaN in the per-class vector). NaN mean if no class is present at all."""
    iou = iou_per_class(conf)
    present = ~torch.isnan(iou)
    return (iou[present].mean().item() if present.any() else math.nan), iou


@torch.no_grad()
def segment(images: torch.Tensor, net: SegNet, batch: int = 200) -> torch.Tensor:
    """Predicted class ids LongTensor [n, H, W] (CPU) of images [n, 3, H, W] in [-1, 1]."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        outs = [net(images[i:i + batch].to(device)).argmax(1).cpu() for i in range(0, len(images), batch)]
    finally:
        net.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, *images.shape[-2:], dtype=torch.long)


@torch.no_grad()
def segnet_features(images: torch.Tensor, net: SegNet, batch: int = 200) -> torch.Tensor:
    """[n, D] SegNet features of images in [-1, 1] (CPU, float32)."""
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        outs = [net.features(images[i:i + batch].to(device)).cpu() for i in range(0, len(images), batch)]
    finally:
        net.train(was_training)
    return torch.cat(outs) if outs else torch.zeros(0, net.feature_dim)


def scene_reference_stats(net: SegNet, size: int, n: int = N_REFERENCE, cache_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) of SegNet features of n held-out real scenes (held_out seed REFERENCE_SEED),
    cached on disk per size, n and net (the file name carries a hash of the weights)."""
    path = Path(cache_dir or cache.cache_dir()) / f"ref_scenes_segnet_{size}px_{n}_{VERSION}_{cache.fingerprint(net, 10)}.npz"
    return cached_stats(path, lambda: segnet_features(held_out(n, size, seed=REFERENCE_SEED)[0], net).numpy())

