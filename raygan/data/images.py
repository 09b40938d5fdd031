"""Image folders: the user's target shots and reference sets.

A folder holds images only (png, jpg/jpeg, webp, bmp; hidden files such as ``.DS_Store`` are
skipped); anything else in it, an image that does not decode, or too few images is a one-line
``UserError`` naming the file, raised before any training starts.

Shots are prepared as rosinality's ``prepare_data.py`` does for the LMDBs the public few-shot
code trains on: RGB, the shorter side resized to the generator's size with a Lanczos filter,
then a centre crop to a square.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from raygan.errors import UserError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def image_files(folder, at_least: int = 2, what: str = "images") -> list[Path]:
    """The image files of ``folder``, sorted by name; refuses other files and too few images."""
    p = Path(folder).expanduser()
    if not p.is_dir():
        raise UserError(folder, f"no such folder (expected a folder of {what})")
    files = []
    for f in sorted(p.iterdir()):
        if f.name.startswith("."):
            continue
        if f.is_dir() or f.suffix.lower() not in IMAGE_EXTS:
            kind = "a folder" if f.is_dir() else "not an image file"
            raise UserError(f, f"{kind} (expected only {', '.join(IMAGE_EXTS)} files in {p})")
        files.append(f)
    if len(files) < at_least:
        raise UserError(p, f"expected at least {at_least} {what} ({', '.join(IMAGE_EXTS)}), found {len(files)}")
    return files


def _open_rgb(f: Path) -> Image.Image:
    try:
        with Image.open(f) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f, f"not a readable image ({type(e).__name__}: {str(e)[:80]})") from None


def resize_crop(im: Image.Image, size: int) -> Image.Image:
    """Shorter side to ``size`` (Lanczos), then the centre ``size`` x ``size`` square."""
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.LANCZOS)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def choose(files: list[Path], n: int, seed: int) -> list[Path]:
    """``n`` of ``files`` chosen by ``seed`` (all of them, in name order, when n covers the folder)."""
    if n >= len(files):
        return list(files)
    return sorted(random.Random(seed).sample(files, n))


def read_folder(files: list[Path], size: int) -> np.ndarray:
    """uint8 [N, size, size, 3] of image files prepared as the module docstring says."""
    return np.stack([np.asarray(resize_crop(_open_rgb(f), size), dtype=np.uint8) for f in files])


def load_shots(folder, n: int | None, seed: int, size: int) -> tuple[torch.Tensor, list[Path]]:
    """(shots [n, 3, size, size] in [-1, 1], their files): ``n`` images of ``folder`` chosen by
    ``seed`` (None: all), prepared as the module docstring says."""
    files = image_files(folder, at_least=1, what="target images")
    if n is not None and len(files) < n:
        raise UserError(folder, f"data.shots is {n}: expected at least {n} images, found {len(files)}")
    chosen = choose(files, len(files) if n is None else n, seed)
    return read_images(chosen, size), chosen


def read_images(files: list[Path], size: int) -> torch.Tensor:
    """``read_folder`` as float [N, 3, size, size] in [-1, 1]."""
    return torch.from_numpy(read_folder(files, size)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def check_folder(folder, at_least: int, what: str) -> list[Path]:
    """``image_files`` and every file decoded once: a truncated or mislabelled image fails here,
    before training, naming the file."""
    files = image_files(folder, at_least=at_least, what=what)
    for f in files:
        _open_rgb(f)
    return files


def target_shots(data, size: int) -> tuple[torch.Tensor, str]:
    """(shots in [-1, 1], a description) of a DataConfig: the embedded procedural sketches, or
    ``data.shots`` images of the folder ``data.target`` chosen by ``data.seed`` (0: all of them)."""
    if data.embedded:
        from raygan.data.synthetic import few_shot_target

        return (few_shot_target(size=size, n_shots=data.shots, seed=data.seed),
                f"embedded {data.shots} target shots (seed {data.seed})")
    shots, files = load_shots(data.target, data.shots or None, data.seed, size)
    return shots, f"{len(files)} shots from {Path(data.target).expanduser().resolve()} (seed {data.seed})"
