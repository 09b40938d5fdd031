"""Training curves of any method (few-shot adaptation or label-to-image) on the embedded
data, one process per run, runs one after another.

Each run is the plain training loop (raygan.train.loop.run) of one method with knob
overrides; every evaluation's metrics go to <out>/<run>.jsonl as they come, with
the EMA generator kept at each evaluation (<out>/<run>_step<k>.pt, g_ema only)
so that the curves can be rescored later with `raygan eval`, and the sample grid
of the last evaluation (<out>/<run>.png; few-shot: top G_s, bottom G_t, same z;
label-to-image: label maps, real scenes, generated).

    python benchmarks/adaptation_curves.py --out /tmp/curves --steps 1000 --eval-every 250 \\
        tgan:seed=0 tgan:train.train_noise_strengths=true dcl:method.d_cl2=min
    python benchmarks/adaptation_curves.py --out /tmp/label_curves --steps 3000 --eval-every 250 \\
        --eval-samples 200 semipaired:data.ratio=0.05 oasis:data.ratio=0.05
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml


def parse(spec: str) -> tuple[str, dict]:
    """'dcl:method.d_cl2=min,train.seed=1' -> ('dcl', {'method': {'d_cl2': 'min'}, 'train': {'seed': 1}})."""
    method, _, rest = spec.partition(":")
    over: dict = {}
    for item in filter(None, rest.split(",")):
        key, value = item.split("=", 1)
        section, name = key.split(".", 1) if "." in key else ("train", key)
        over.setdefault(section, {})[name] = yaml.safe_load(value)
    return method, over


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*", help="method:section.knob=value,... (section defaults to train)")
    ap.add_argument("--plot", nargs="+", metavar="METRIC",
                    help="afterwards, draw these metrics of every run in --out (<out>/*.jsonl) to <out>/curves.png")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--eval-samples", type=int, default=500)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from raygan.train.loop import Hooks, prepare, run
    from raygan.cache import save_atomic

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for spec in args.runs:
        method, over = parse(spec)
        name = spec.replace(":", "_").replace(",", "_").replace("=", "-").replace("method.", "").replace("train.", "")
        cfg = {"method": {"name": method, **over.get("method", {})},
               "data": over.get("data", {}), "model": over.get("model", {}),
               "train": {"steps": args.steps, "eval_every": args.eval_every, "eval_samples": args.eval_samples,
                         **over.get("train", {})}}
        prepare(cfg, [method], spec, progress=lambda line: None)
        log = (out / f"{name}.jsonl").open("w")
        t0 = time.time()

        def report(metrics, state, name=name, log=log, t0=t0):
            rec = {"run": spec, "wall_s": round(time.time() - t0, 1), **metrics}
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rec.items()
                              if not k.startswith("loss/")}), flush=True)
            if state is not None:
                save_atomic({"g_ema": state["g_ema"], "g_config": state["g_config"],
                             **({"latent_compression": state["latent_compression"]}
                                if "latent_compression" in state else {})},
                            out / f"{name}_step{metrics['step']}.pt")

        run(cfg, Hooks(report=report, log_dir=str(out / name)))
        (out / name / "samples.png").replace(out / f"{name}.png")
        log.close()
    if args.plot:
        plot(out, args.plot)


def plot(out: Path, metrics: list[str]) -> None:
    """Every run's curves in <out>, one panel per metric, one line per run (the report's plot)."""
    from raygan.report.plots import curves

    histories = []
    for log in sorted(out.glob("*.jsonl")):
        reports = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        if reports:  # labelled by file name: rename a run's .jsonl to relabel it
            histories.append({"trial": log.stem, "method": log.stem, "reports": reports})
    (out / "curves.png").write_bytes(curves(histories, metrics, by_method=True))
    print(f"curves of {len(histories)} run(s): {out / 'curves.png'}")


if __name__ == "__main__":
    main()
