"""Scoring a label-to-image generator on fixed held-out label maps, with any segmenter.

The embedded scenes use SegNet (:class:`raygan.metrics.miou.SceneEvaluator`); a real
dataset uses the user's own segmenter on a packed held-out split (``data.eval_root``,
``data.segmenter``), and its mIoU is named after the segmenter's file so that it never
passes for another network's number. mIoU ignores the "don't care" class of the real
layouts (class 0), as OASIS's evaluation does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.utils import make_grid

from raygan.data.scenes import N_CLASSES, PALETTE, RARE, held_out
from raygan.evaluation.sampling import NOISE_SEED_STRIDE
from raygan.metrics import miou as M
from raygan.metrics.frechet import feature_stats, frechet_distance

STREAM_STRIDE = 10_007  # label stream k of an evaluation draws its noise apart from stream 0


def _fork_rng_devices(device) -> list:
    d = torch.device(device)
    return [d.index or 0] if d.type == "cuda" else []


def palette(n_classes: int) -> torch.Tensor:
    """[n, 3] colours in [0, 1]: the scenes' palette where it suffices, else a fixed
    pseudo-random one (the same for every run)."""
    if n_classes <= len(PALETTE):
        return torch.from_numpy(PALETTE[:n_classes]).float()
    return torch.from_numpy(np.random.default_rng(n_classes).uniform(0.1, 0.95, (n_classes, 3))).float()


class LabelMapEvaluator:
    """``generate(labels_onehot [B, n_classes, H, W]) -> images [B, 3, H, W] in [-1, 1]`` is
    called in batches of ``batch`` under a fixed seed per batch (forked RNG: the caller's
    RNG is untouched), so every evaluation sees the same noise. ``segment(images) -> class
    ids [B, H, W]`` scores the images; ``ignore`` is a class left out of the mIoU."""

    def __init__(self, labels: torch.Tensor, real_images: torch.Tensor, segment: Callable, n_classes: int,
                 miou_name: str, seed: int = 0, device="cpu", batch: int = 200, ignore: int | None = None):
        if len(labels) < 2:
            raise ValueError(f"need at least 2 held-out label maps, got {len(labels)}")
        self.labels, self.real_images, self.segment = labels, real_images, segment
        self.n_classes, self.miou_name, self.ignore = n_classes, miou_name, ignore
        self.seed, self.device, self.batch = seed, device, batch
        self._real_miou = None

    def onehot(self, labels: torch.Tensor) -> torch.Tensor:
        """Label ids [B, H, W] -> one-hot float [B, n_classes, H, W] on the evaluator's device."""
        return F.one_hot(labels.to(self.device), self.n_classes).permute(0, 3, 1, 2).float()

    @torch.no_grad()
    def generate(self, generate, labels: torch.Tensor | None = None, stream: int = 0) -> torch.Tensor:
        """generate() on labels (default: all of self.labels), batch by batch under fixed seeds;
        images clamped to [-1, 1], on the CPU."""
        labels = self.labels if labels is None else labels
        out = []
        with torch.random.fork_rng(devices=_fork_rng_devices(self.device)):
            for i, lab in enumerate(labels.split(self.batch)):
                torch.manual_seed(self.seed * NOISE_SEED_STRIDE + stream * STREAM_STRIDE + i)
                images = generate(self.onehot(lab))
                if images.shape != (len(lab), 3, *lab.shape[-2:]):
                    raise ValueError(f"generate returned {tuple(images.shape)} for {len(lab)} label maps "
                                     f"of {tuple(lab.shape[-2:])}; expected [B, 3, H, W]")
                out.append(images.detach().float().clamp(-1, 1).cpu())
        return torch.cat(out)

    def scores(self, images: torch.Tensor) -> tuple[float, torch.Tensor]:
        """(mIoU, per-class IoU) of segment(images) against self.labels."""
        target = self.labels if self.ignore is None else self.labels.masked_fill(self.labels == self.ignore, -1)
        return M.miou(M.confusion(self.segment(images), target, self.n_classes))

    def real_miou(self) -> float:
        """The segmenter's mIoU on the real images of these label maps: the ceiling."""
        if self._real_miou is None:
            self._real_miou = self.scores(self.real_images)[0]
        return self._real_miou

    def metrics(self, generate) -> dict:
        return {self.miou_name: self.scores(self.generate(generate))[0]}

    def colorize(self, labels: torch.Tensor) -> torch.Tensor:
        return (palette(self.n_classes)[labels.long()] * 2 - 1).movedim(-1, -3)

    def grid(self, generate, n: int = 8) -> torch.Tensor:
        """[3, H', W'] in [0, 1]: colorized label maps, real images, generated images (rows)."""
        n = min(n, len(self.labels))
        lab = self.labels[:n]
        rows = torch.cat([self.colorize(lab), self.real_images[:n], self.generate(generate, lab, stream=1)])
        return make_grid(rows, nrow=n, normalize=True, value_range=(-1, 1), padding=1)


def _load_program(path: Path, device):
    """A ``torch.export`` program (.pt2) or a TorchScript archive: neither is a pickle."""
    import warnings

    if path.suffix == ".pt2":
        return torch.export.load(str(path)).module().to(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in favour of torch.export
        return torch.jit.load(str(path), map_location=device).eval()


def load_segmenter(path, n_classes: int, size: int, device="cpu") -> Callable:
    """A user segmenter saved with ``torch.export.save`` (.pt2, batch dimension dynamic) or
    ``torch.jit.save``: images [B, 3, H, W] in [-1, 1] -> logits [B, n_classes, h, w]
    (resized to H x W here). Checked once on a dummy batch, so a wrong file is a one-line
    error before training."""
    from raygan.errors import UserError

    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(path, "segmenter not found: expected a torch.export (.pt2) or TorchScript file mapping "
                              "images [B, 3, H, W] in [-1, 1] to class logits [B, C, h, w]")
    try:
        net = _load_program(path, device)
        with torch.no_grad():
            out = net(torch.zeros(2, 3, size, size, device=device))
    except Exception as e:  # any failure to load or run the user's file is a user error
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else ""
        raise UserError(path, f"not a working segmenter for {size}x{size} images ({type(e).__name__}: {first})") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 4 or out.shape[1] != n_classes:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise UserError(path, f"segmenter returns {shape}; expected logits [B, {n_classes}, h, w] "
                              f"for this dataset's {n_classes} classes")

    @torch.no_grad()
    def segment(images: torch.Tensor, batch: int = 100) -> torch.Tensor:
        ids = []
        for b in images.split(batch):
            logits = net(b.to(device))
            if logits.shape[-2:] != b.shape[-2:]:
                logits = F.interpolate(logits, size=b.shape[-2:], mode="bilinear", align_corners=False)
            ids.append(logits.argmax(1).cpu())
        return torch.cat(ids)

    return segment


def packed_evaluator(eval_root, segmenter, n_samples: int, seed: int = 0, device="cpu") -> LabelMapEvaluator:
    """The first ``n_samples`` pairs of a packed held-out split (``raygan data pack ... --split val
    --ratio 1``) scored with the segmenter at ``segmenter``: ``miou_<file stem>``."""
    from raygan.data.layouts import DONTCARE
    from raygan.data.semipaired import load_part, read_split

    info = read_split(eval_root)
    part = load_part(Path(eval_root) / "paired")
    labels, images = part["label"][:n_samples], part["image"][:n_samples]
    segment = load_segmenter(segmenter, info["n_classes"], info["size"], device)
    ignore = DONTCARE if info["layout"] != "scenes" else None
    return LabelMapEvaluator(labels, images, segment, info["n_classes"], f"miou_{Path(segmenter).stem}",
                             seed=seed, device=device, ignore=ignore)


class SceneEvaluator(LabelMapEvaluator):
    """The embedded scenes: SegNet (trained on real scenes, cached) on ``n_samples`` held-out
    label maps; adds ``miou_rare`` (IoU of ``scenes.RARE``) and ``fd_segnet`` (Fréchet
    distance to held-out real scenes in SegNet's feature space). ``net`` / ``cache_dir`` /
    ``n_reference`` override the cached full-recipe SegNet and reference statistics (tests)."""

    def __init__(self, n_samples: int, size: int, seed: int = 0, device="cpu", *, net=None,
                 cache_dir=None, n_reference: int | None = None, batch: int = 200):
        if n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 (a covariance needs two samples), got {n_samples}")
        self.size = size
        self.net = (net if net is not None else M.load_segnet(size, cache_dir=cache_dir, device=device)).to(device).eval()
        real_images, labels = held_out(n_samples, size, seed=seed)
        super().__init__(labels, real_images, lambda x: M.segment(x, self.net, batch), N_CLASSES, M.MIOU_NAME,
                         seed=seed, device=device, batch=batch)
        self.mu, self.sigma = M.scene_reference_stats(self.net, size, n_reference or M.N_REFERENCE,
                                                      cache_dir=cache_dir)

    def metrics(self, generate) -> dict:
        """{"miou_segnet", "miou_rare", "fd_segnet"} of generate() on the held-out label maps.
        miou_rare is the mean IoU of scenes.RARE classes (NaN if none appears in these label
        maps nor in the predictions)."""
        images = self.generate(generate)
        m, iou = self.scores(images)
        rare = iou[RARE]
        rare = rare[~torch.isnan(rare)]
        mu, sigma = feature_stats(M.segnet_features(images, self.net, self.batch).numpy())
        return {M.MIOU_NAME: m,
                M.FD_NAME: frechet_distance(mu, sigma, self.mu, self.sigma),
                M.RARE_NAME: rare.mean().item() if len(rare) else math.nan}
