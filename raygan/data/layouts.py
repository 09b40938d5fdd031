"""Loaders for the real label-to-image datasets, in their published folder layouts.

Class spaces follow OASIS (boschresearch/OASIS, dataloaders/*Dataset.py and models/losses.py),
which all use "don't care" = class 0 (its weight in the class-balanced loss is zeroed):

- Cityscapes: `gtFine_labelIds` PNGs hold labelIds 0..33 (0 = "unlabeled" = don't care),
  used as they are; label_nc 34 + 1 don't-care slot -> 35 classes (id 34 never occurs).
- ADE20K (ADEChallengeData2016): annotation PNGs hold 0..150 with 0 = "other" = don't care,
  used as they are; label_nc 150 + 1 -> 151 classes.
- COCO-stuff: label PNGs hold 0..181 and 255 = unlabeled; OASIS maps v -> v + 1 and
  255 -> 0 (don't care); label_nc 182 + 1 -> 183 classes.

Images are resized bicubic (as OASIS), label maps nearest, so resized labels hold only ids
that were in the original. A Layout item is (image uint8 [H, W, 3], label uint8 [H, W]) with
labels already mapped to the class space above.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from raygan.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DONTCARE = 0  # the don't-care class index in all three class spaces


def _lut(pairs: dict[int, int] | None = None, identity_upto: int | None = None) -> np.ndarray:
    """A 256-entry raw-value -> class lookup table; -1 marks values that are not allowed."""
    lut = np.full(256, -1, np.int16)
    if identity_upto is not None:
        lut[:identity_upto + 1] = np.arange(identity_upto + 1)
    for raw, cls in (pairs or {}).items():
        lut[raw] = cls
    return lut


@dataclass(frozen=True)
class LayoutSpec:
    kind: str
    n_classes: int          # one-hot channels, don't care included (OASIS semantic_nc)
    dontcare: int           # class index of "don't care"
    lut: np.ndarray         # raw label value -> class index, -1 = invalid
    expected_ids: str       # for error messages
    splits: dict            # user split name -> folder split name
    layout_hint: str        # for error messages


LAYOUTS: dict[str, LayoutSpec] = {
    "cityscapes": LayoutSpec(
        "cityscapes", 35, DONTCARE, _lut(identity_upto=33),
        "labelIds 0..33", {"train": "train", "val": "val", "test": "test"},
        "<root>/leftImg8bit/<split>/<city>/<name>_leftImg8bit.png and "
        "<root>/gtFine/<split>/<city>/<name>_gtFine_labelIds.png"),
    "ade20k": LayoutSpec(
        "ade20k", 151, DONTCARE, _lut(identity_upto=150),
        "0..150 (0 = other/don't care)",
        {"train": "training", "training": "training", "val": "validation", "validation": "validation"},
        "[<root>/]ADEChallengeData2016/images/<training|validation>/*.jpg and "
        "annotations/<training|validation>/*.png"),
    "cocostuff": LayoutSpec(
        "cocostuff", 183, DONTCARE, _lut({**{v: v + 1 for v in range(182)}, 255: 0}),
        "0..181 or 255 (unlabeled)", {"train": "train", "val": "val"},
        "<root>/<train|val>_img/*.jpg and <root>/<train|val>_label/*.png"),
}


# ---- reading one pair ---------------------------------------------------------------------------

def _why(e: Exception) -> str:
    """What PIL said, in a few words (its UnidentifiedImageError repeats the path)."""
    if isinstance(e, UnidentifiedImageError):
        return "not an image file PIL recognises"
    first = (str(e).strip().splitlines() or [""])[0][:80]
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _read_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError (truncated), ValueError, ...
        raise UserError(path, f"unreadable or corrupt image ({_why(e)}); expected a complete JPEG or PNG "
                              "file") from None


def _read_label(path: Path, spec: LayoutSpec) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            raw = np.asarray(im)
    except Exception as e:
        raise UserError(path, f"unreadable or corrupt label map ({_why(e)}); expected a complete single-channel "
                              f"PNG of {spec.kind} ids ({spec.expected_ids})") from None
    if raw.ndim != 2:
        raise UserError(path, f"label map has mode {mode}; expected a single-channel PNG of {spec.kind} ids "
                              f"({spec.expected_ids})")
    raw = raw.astype(np.int64)
    mapped = spec.lut[np.clip(raw, 0, 255)]
    bad = raw[(mapped < 0) | (raw < 0) | (raw > 255)]
    if bad.size:
        vals = ", ".join(str(v) for v in np.unique(bad)[:6])
        raise UserError(path, f"label values {vals} outside the {spec.kind} id range (expected {spec.expected_ids})")
    return mapped.astype(np.uint8)


def _target_size(size, native: tuple[int, int]) -> tuple[int, int]:
    """(width, height) for PIL. size: None (keep), int (square) or (height, width)."""
    if size is None:
        return native
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return w, h


class Layout:
    """A dataset split in one of the LAYOUTS. layout[i] -> (image uint8 [H, W, 3], label uint8
    [H, W] of class ids in 0..n_classes-1), resized to `size` (int: square; (h, w); None: native)."""

    def __init__(self, spec: LayoutSpec, root: Path, split: str, size, pairs: list[tuple[Path, Path]]):
        self.spec, self.root, self.split, self.size = spec, root, split, size
        self.pairs = pairs

    kind = property(lambda self: self.spec.kind)
    n_classes = property(lambda self: self.spec.n_classes)
    dontcare = property(lambda self: self.spec.dontcare)

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return f"Layout({self.kind!r}, root={str(self.root)!r}, split={self.split!r}, n={len(self)}, size={self.size})"

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} items")
        img_path, lab_path = self.pairs[i]
        image = _read_image(img_path)
        label = _read_label(lab_path, self.spec)
        if image.size != (label.shape[1], label.shape[0]):
            raise UserError(lab_path, f"label map is {label.shape[1]}x{label.shape[0]} but its image "
                                      f"{img_path.name} is {image.size[0]}x{image.size[1]}")
        wh = _target_size(self.size, image.size)
        if wh != image.size:
            image = image.resize(wh, Image.BICUBIC)
            label = np.asarray(Image.fromarray(label).resize(wh, Image.NEAREST))
        return np.array(image, np.uint8), np.array(label, np.uint8)   # writable copies

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]


# ---- listing files ------------------------------------------------------------------------------

def _need_dir(path: Path, spec: LayoutSpec) -> Path:
    if not path.is_dir():
        raise UserError(path, f"missing folder (expected {spec.kind} layout {spec.layout_hint})")
    return path


def _images_in(folder: Path, pattern: str = "*") -> list[Path]:
    return sorted(p for p in folder.glob(pattern)
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def _pair(img: Path, lab: Path) -> tuple[Path, Path]:
    if not lab.is_file():
        raise UserError(img, f"image without its label file (expected {lab})")
    return img, lab


def _list_cityscapes(root: Path, split: str, spec: LayoutSpec) -> list[tuple[Path, Path]]:
    img_dir = _need_dir(root / "leftImg8bit" / split, spec)
    lab_dir = _need_dir(root / "gtFine" / split, spec)
    images = [p for p in _images_in(img_dir, "*/*") if p.name.endswith("_leftImg8bit.png")]
    if not images:
        raise UserError(img_dir, "no images found (expected <city>/<name>_leftImg8bit.png)")
    return [_pair(p, lab_dir / p.parent.name / p.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png"))
            for p in images]


def _list_ade20k(root: Path, split: str, spec: LayoutSpec) -> list[tuple[Path, Path]]:
    base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
    img_dir = _need_dir(base / "images" / split, spec)
    lab_dir = _need_dir(base / "annotations" / split, spec)
    images = _images_in(img_dir)
    if not images:
        raise UserError(img_dir, "no images found (expected *.jpg)")
    return [_pair(p, lab_dir / (p.stem + ".png")) for p in images]


def _list_cocostuff(root: Path, split: str, spec: LayoutSpec) -> list[tuple[Path, Path]]:
    img_dir = _need_dir(root / f"{split}_img", spec)
    lab_dir = _need_dir(root / f"{split}_label", spec)
    images = _images_in(img_dir)
    if not images:
        raise UserError(img_dir, "no images found (expected *.jpg)")
    return [_pair(p, lab_dir / (p.stem + ".png")) for p in images]


_LISTERS = {"cityscapes": _list_cityscapes, "ade20k": _list_ade20k, "cocostuff": _list_cocostuff}


def open_layout(kind: str, root, split: str = "train", size=256) -> Layout:
    """Open a dataset split. kind: one of LAYOUTS; split: "train" or "val" (ADE20K also accepts
    "training"/"validation"); size: int (square), (height, width) or None (native). Checks the
    folders and that every image has its label file; images and labels are read per item."""
    spec = LAYOUTS.get(kind)
    if spec is None:
        raise UserError("dataset", f"unknown layout {kind!r} (expected one of {', '.join(LAYOUTS)})")
    if split not in spec.splits:
        raise UserError("dataset", f"unknown {kind} split {split!r} (expected one of {', '.join(spec.splits)})")
    root = Path(root)
    if not root.is_dir():
        raise UserError(root, f"no such dataset folder (expected {kind} layout {spec.layout_hint})")
    _target_size(size, (1, 1))                                       # validate early
    pairs = _LISTERS[kind](root, spec.splits[split], spec)
    return Layout(spec, root, split, size, pairs)


def to_tensors(image: np.ndarray, label: np.ndarray, n_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 [H, W, 3], uint8 [H, W]) -> (float [3, H, W] in [-1, 1], int64 [H, W])."""
    img = torch.tensor(np.asarray(image, np.uint8)).permute(2, 0, 1).float() / 127.5 - 1.0
    lab = torch.tensor(np.asarray(label), dtype=torch.int64)
    if lab.numel() and (lab.min() < 0 or lab.max() >= n_classes):
        raise ValueError(f"label ids must be in 0..{n_classes - 1}, got {lab.min().item()}..{lab.max().item()}")
    return img, lab
