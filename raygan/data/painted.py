"""A second pair of procedural domains, painted with PIL (not the embedded sketches): 'ink', 1-3
dark outlines of circles and boxes on cream paper, and 'filled', such shapes filled with colour
on a coloured ground — a photo-to-sketch-like pair that differs in style. The tests make folder
targets from them; benchmarks/folder_target_example.py writes the README's folder-target example."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

STYLES = ("ink", "filled")


def scene(rng: np.random.Generator, style: str, wh=(80, 64)) -> Image.Image:
    """One scene of ``style`` on a canvas of ``wh`` pixels (the shapes scale with it)."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    w, h = wh
    g = int(rng.integers(225, 250))
    ground = (g, g - 5, g - 15) if style == "ink" else tuple(int(v) for v in rng.integers(0, 256, 3))
    im = Image.new("RGB", wh, ground)
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(15, 65) * w / 80, rng.uniform(12, 52) * h / 64, rng.uniform(6, 18) * h / 64
        box = [cx - r, cy - r, cx + r, cy + r]
        if style == "filled":
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        else:
            ink = int(rng.integers(10, 70))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, outline=(ink, ink, ink + 10),
                                                                     width=max(2, round(3 * h / 64)))
    return im


def write_scenes(folder, n: int, seed: int, style: str, wh=(80, 64)) -> Path:
    """``n`` scenes as PNGs ``<style>_000.png`` ... in ``folder`` (created); scene i of a seed
    is the same whatever n."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        scene(rng, style, wh).save(folder / f"{style}_{i:03d}.png")
    return folder


def render(n: int, seed: int, style: str, size: int) -> torch.Tensor:
    """``n`` square scenes [n, 3, size, size] in [-1, 1], painted at that size."""
    rng = np.random.default_rng(seed)
    x = np.stack([np.asarray(scene(rng, style, (size, size))) for _ in range(n)])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1
