"""Cost of the realism classifier C of a folder target (raygan.metrics.domainnet), issue #28.

At 32 px and 256 px: training C once with the default recipe (DEFAULT_STEPS) on painted scenes
(12 target images, ink outlines on paper, against 48 non-target images, filled shapes), its
held-out checks, then scoring realism on 500 images; at 256 px also drawing the SOURCE_SAMPLES
G_s samples C trains against when no data.source_images are given (a config-f generator, random
weights: the cost does not depend on them). The images are painted at the size they are used
at (no upsampling).
Usage: python benchmarks/domainnet_cost.py [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from _common import machine_line


def painted(n: int, seed: int, style: str, size: int) -> torch.Tensor:
    """n scenes in [-1, 1]: 'ink' (dark outlines on pale paper) or 'filled' (coloured shapes)."""
    rng, out = np.random.default_rng(seed), []
    for _ in range(n):
        g = int(rng.integers(225, 250))
        ground = (g, g - 5, g - 15) if style == "ink" else tuple(int(v) for v in rng.integers(0, 256, 3))
        im = Image.new("RGB", (size, size), ground)
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy, r = rng.uniform(0.2, 0.8) * size, rng.uniform(0.2, 0.8) * size, rng.uniform(0.1, 0.25) * size
            shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
            if style == "ink":
                ink = int(rng.integers(10, 70))
                shape([cx - r, cy - r, cx + r, cy + r], outline=(ink, ink, ink + 10), width=max(2, size // 24))
            else:
                shape([cx - r, cy - r, cx + r, cy + r], fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
        out.append(np.asarray(im))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 127.5 - 1


def cost(size: int) -> dict:
    from raygan.metrics import domainnet as C
    from raygan.metrics.realism import realism

    target, other = painted(16, 0, "ink", size), painted(64, 1, "filled", size)
    (target, target_out), (other, other_out) = C.split(target), C.split(other)
    t0 = time.perf_counter()
    net = C.train_domainnet(target, other, C.DEFAULT_STEPS)
    row = {"train_s": time.perf_counter() - t0, "steps": C.DEFAULT_STEPS, "resolution": net.resolution}
    row["checks"] = C.heldout_checks(net, target_out, other_out)
    fresh = painted(500, 7, "ink", size)
    t0 = time.perf_counter()
    row["realism_fresh_target"] = realism(fresh, net)
    row["realism_500_s"] = time.perf_counter() - t0
    row["realism_fresh_other"] = realism(painted(200, 8, "filled", size), net)
    if size == 256:
        from raygan.evaluation.sampling import eval_codes, generate
        from raygan.models.stylegan2 import Generator

        torch.manual_seed(0)
        g = Generator(256, 512, 8, channel_multiplier=2).eval()
        t0 = time.perf_counter()
        generate(g, eval_codes(C.SOURCE_SAMPLES, 512, 5_000), 5_000, 50)
        row[f"g_s_{C.SOURCE_SAMPLES}_samples_s"] = time.perf_counter() - t0
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    print(machine_line(), flush=True)
    rows = {}
    for size in (32, 256):
        rows[f"{size} px"] = cost(size)
        print(f"{size} px: {json.dumps(rows[f'{size} px'])}", flush=True)
    print(machine_line(), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
