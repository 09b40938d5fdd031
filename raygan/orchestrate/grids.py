"""Pictures for people who would rather look than read."""
from __future__ import annotations

from pathlib import Path

LABEL_WIDTH = 72


def comparison_grid(rows: list[tuple[str, Path]], out: Path, shared: tuple[str, ...] = ("source",)) -> Path | None:
    """Stack trials' ``samples.png`` into one picture. Each is ``len(shared) + 1``
    equal strips: the ``shared`` ones (e.g. the source G_s, or label maps and real
    images) are the same in every trial and shown once, labelled; then each
    trial's last strip (its samples), labelled with the trial."""
    from PIL import Image, ImageDraw

    images = [(label, Image.open(p).convert("RGB")) for label, p in rows if Path(p).is_file()]
    if not images:
        return None
    w, h = images[0][1].size
    n = len(shared) + 1
    strip = h // n
    crop = lambda im, i: im.resize((w, h)).crop((0, i * strip, w, (i + 1) * strip))  # noqa: E731
    strips = [(name, crop(images[0][1], i)) for i, name in enumerate(shared)]
    strips += [(label, crop(im, n - 1)) for label, im in images]
    canvas = Image.new("RGB", (LABEL_WIDTH + w, strip * len(strips)), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (label, im) in enumerate(strips):
        canvas.paste(im, (LABEL_WIDTH, i * strip))
        draw.text((6, i * strip + strip // 2 - 6), label, fill="black")
    canvas.save(out)
    return out
