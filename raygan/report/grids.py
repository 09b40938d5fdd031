"""Pictures for people who would rather look than read."""
from __future__ import annotations

from pathlib import Path

LABEL_WIDTH = 72


def comparison_grid(rows: list[tuple[str, Path]], out: Path) -> Path | None:
    """Stack trials' ``samples.png`` (top row G_s, bottom row G_t, same z) into one
    picture: the source row once, then each labelled adapted row."""
    from PIL import Image, ImageDraw

    images = [(label, Image.open(p).convert("RGB")) for label, p in rows if Path(p).is_file()]
    if not images:
        return None
    w, h = images[0][1].size
    half = h // 2
    canvas = Image.new("RGB", (LABEL_WIDTH + w, half * (len(images) + 1)), "white")
    draw = ImageDraw.Draw(canvas)
    strips = [("source", images[0][1].crop((0, 0, w, half)))]
    strips += [(label, im.resize((w, h)).crop((0, h - half, w, h))) for label, im in images]
    for i, (label, strip) in enumerate(strips):
        canvas.paste(strip, (LABEL_WIDTH, i * half))
        draw.text((6, i * half + half // 2 - 6), label, fill="black")
    canvas.save(out)
    return out
