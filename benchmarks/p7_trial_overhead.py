"""P7: fixed cost per trial of `raygan tune` (start-up + teardown), and its share of a default trial.

Runs the same small DCL config (a) in-process through the plain loop and (b) as
`raygan tune` trials (run_search), one at a time; the difference per trial is the
fixed cost. A one-worker trial trains in its own Tune process, which Tune reuses;
before commit e0fdb7e every trial was a Ray Train run (a controller and a worker
process per trial): to measure that, run this script from a checkout of 4bb317b.
Usage: python benchmarks/p7_trial_overhead.py [--trials 3] [--steps 20]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from _common import machine_line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--no-default-trial", action="store_true",
                    help="skip timing one default search_spaces/dcl.yaml trial in-process (for the share)")
    args = ap.parse_args()

    import ray
    import torch

    from raygan.train.loop import Hooks, run
    from raygan.orchestrate.tune import run_search, set_ray_env
    from raygan.search_space import load_experiment

    tmp = Path(tempfile.mkdtemp())
    doc = {"name": "overhead", "method": {"name": "dcl", "lambda1": {"loguniform": [1.0, 3.0]}},
           "train": {"steps": args.steps, "eval_every": args.steps, "eval_samples": 100, "torch_threads": 1},
           "search": {"num_samples": args.trials, "max_concurrent": 1, "searcher": "random"},
           "output": {"dir": str(tmp / "results")}}
    (tmp / "overhead.yaml").write_text(yaml.safe_dump(doc))
    exp = load_experiment(tmp / "overhead.yaml")

    torch.set_num_threads(1)
    run(exp.trial_config, Hooks(report=lambda m, s: None))  # warm caches and imports
    bare = []
    for _ in range(args.trials):
        t0 = time.perf_counter()
        run(exp.trial_config, Hooks(report=lambda m, s: None))
        bare.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    set_ray_env()  # what raygan tune sets before it starts Ray (the env var set by hand wins)
    ray.init(address="local", include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False)
    t_init = time.perf_counter() - t0
    t0 = time.perf_counter()
    results, _ = run_search(exp)
    t_search = time.perf_counter() - t0
    in_tune = [r.metrics["time_total_s"] for r in results]
    ray.shutdown()

    per_trial = t_search / args.trials
    fixed = per_trial - statistics.median(bare)
    print(machine_line())
    print(f"bare loop, {args.steps} steps + 1 evaluation: median {statistics.median(bare):.1f} s  {[round(b, 1) for b in bare]}")
    print(f"trial time inside Tune (time_total_s): median {statistics.median(in_tune):.1f} s")
    print(f"ray.init: {t_init:.1f} s; search wall: {t_search:.1f} s for {args.trials} sequential trials")
    print(f"fixed cost per trial: {fixed:.1f} s (wall per trial {per_trial:.1f} s - bare {statistics.median(bare):.1f} s)")
    if not args.no_default_trial:  # a default trial: dcl.yaml's 150 steps, evaluations at 50, 100, 150 on 500 samples
        default = load_experiment(Path(__file__).resolve().parent.parent / "search_spaces" / "dcl.yaml")
        t0 = time.perf_counter()
        run(default.trial_config, Hooks(report=lambda m, s: None))
        t_default = time.perf_counter() - t0
        print(f"default dcl.yaml trial in-process: {t_default:.1f} s; fixed cost's share of a default trial: "
              f"{fixed / (t_default + fixed):.1%}")


if __name__ == "__main__":
    main()
