"""Cost of one few-shot evaluation, per metric, on this machine (issue #14).

Times what a trial's evaluation does at one evaluation: generating the samples, then each
metric on them, through the trials' own code (evaluation.trials.Evaluator and
evaluation.fewshot.Run). The published networks get stand-in weights of their exact architectures
(random values; the cost does not depend on them), written to a temporary $RAYGAN_WEIGHTS.
Two settings: the embedded 32-px source with its default metrics, and a 256-px config-f
generator (the papers' FFHQ source) with fid, intra_lpips and scs (sobel).
Usage: python benchmarks/eval_cost.py [--samples-256 100] [--samples-32 500] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from _common import machine_line


def stand_in_weights(folder: Path) -> None:
    import torchvision

    from raygan import weights as W
    from raygan.metrics.inception import FIDInception

    torch.save(FIDInception().state_dict(), folder / W.KNOWN["inception"].file)
    vgg = torchvision.models.vgg16(weights=None).features
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, folder / W.KNOWN["vgg16"].file)


def reference_folder(folder: Path, n: int, size: int) -> Path:
    import numpy as np
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def time_evaluation(g_source, shots, n, metrics, run_options=None, source=None) -> dict:
    """Seconds: building the evaluator (first call: caches), generating, and each metric."""
    from raygan.evaluation.trials import Evaluator

    t0 = time.perf_counter()
    ev = Evaluator(g_source, shots, n, metrics=metrics, run_options=run_options, source=source)
    out = {"setup_s": time.perf_counter() - t0}
    t0 = time.perf_counter()
    images = ev.generate(g_source)
    out["generate_s"] = time.perf_counter() - t0
    for name in metrics:
        ev.names = (name,)  # score one metric at a time on the same images
        t0 = time.perf_counter()
        ev.score(images)
        out[f"{name}_s"] = time.perf_counter() - t0
    out["evaluation_s"] = out["generate_s"] + sum(out[f"{m}_s"] for m in metrics)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples-256", type=int, default=100)
    ap.add_argument("--samples-32", type=int, default=500)
    ap.add_argument("--out")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    print(machine_line(), flush=True)

    from raygan.data.synthetic import few_shot_target
    from raygan.evaluation.fewshot import EvalOptions
    from raygan.models.checkpoint import SourceModel, load_source
    from raygan.models.stylegan2 import Generator

    rows = {}
    src = load_source()
    shots = few_shot_target(size=32, n_shots=10, seed=0)
    rows["embedded 32 px, default metrics"] = dict(samples=args.samples_32, **time_evaluation(
        src.generator(), shots, args.samples_32, ("realism", "diversity", "fd_shapesnet", "scs")))
    print(rows, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "weights").mkdir()
        stand_in_weights(tmp / "weights")
        os.environ["RAYGAN_WEIGHTS"] = str(tmp / "weights")
        os.environ["RAYGAN_CACHE"] = str(tmp / "cache")
        ref = reference_folder(tmp / "reference", 300, 256)
        torch.manual_seed(0)
        g = Generator(256, 512, 8, channel_multiplier=2).eval()
        source = SourceModel("config-f 256", g.state_dict(), g.config, None, {}, None)
        shots = torch.rand(10, 3, 256, 256) * 2 - 1
        opts = EvalOptions(samples=args.samples_256, reference=str(ref))
        rows["config-f 256 px, fid + intra_lpips + scs"] = dict(samples=args.samples_256, **time_evaluation(
            g, shots, args.samples_256, ("fid", "intra_lpips", "scs"), run_options=opts, source=source))
    for name, r in rows.items():
        per = {k: f"{v:.1f}" for k, v in r.items() if k.endswith("_s")}
        print(f"{name}: {r['samples']} samples: {per}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
