"""Image folders the tests paint: two domains of simple scenes (not the embedded sketches)."""
import numpy as np
from PIL import Image, ImageDraw


def scene(rng, style: str, wh=(80, 64)) -> Image.Image:
    """'ink': 1-3 dark outlines of discs and boxes on pale paper; 'filled': such shapes filled
    with colour on a coloured ground (a photo-to-sketch-like pair of domains)."""
    g = int(rng.integers(225, 250))
    im = Image.new("RGB", wh, (g, g - 5, g - 15) if style != "filled" else tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(im)
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(15, 65), rng.uniform(12, 52), rng.uniform(6, 18)
        box = [cx - r, cy - r, cx + r, cy + r]
        if style == "filled":
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        else:
            ink = int(rng.integers(10, 70))
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, outline=(ink, ink, ink + 10), width=3)
    return im


def write_scenes(folder, n, seed, style, fmt="png", quality=90):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        scene(rng, style).save(folder / f"{style}_{i:03d}.{fmt}", **({"quality": quality} if fmt == "jpg" else {}))
    return folder
