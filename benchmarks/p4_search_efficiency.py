"""P4: compute TPE + ASHA needs to get within 5 % of the best objective random search reaches
with 4x as many trials (target <= 35 %), on the embedded DCL task.

Both searches use raygan's own searcher and scheduler (raygan.orchestrate.tune:
Optuna TPE / random behind Tune's ConcurrencyLimiter, Tune's ASHA with
time_attr=step, reduction factor 2) over the space of search_spaces/dcl.yaml
(λ1, λ2, τ, lr), minimising fd_shapesnet. Each trial runs raygan.train.loop.run in its
Tune process (as `raygan tune`'s one-worker trials do, without their checkpoints),
with --steps steps, an evaluation every --eval-every steps on --eval-samples
samples. Compute is counted in training steps consumed.

Per seed s (search.seed = train.seed = s):
  R  = random search, 4N trials, FIFO (every trial runs all steps); R* = the best objective it
       returns (each trial's last value, as raygan ranks trials);
  T  = TPE + ASHA, N trials; walk its reports in time order, adding each trial's steps as
       they are reported, until the best of its trials' latest values is <= 1.05 R*;
  share = steps T consumed by then / steps R consumed in all.
Note: Optuna's TPESampler samples its first 10 trials at random (n_startup_trials=10,
raygan keeps the default), so with N <= 10 the "TPE" arm is random + ASHA.
Besides the issue's 5 %, it prints the share for 1 % and 0 % (reaching random's best
itself), when random search itself got there, and the same with "best" = the best value
seen at any evaluation (fd often worsens as a trial adapts, so a trial's best is often
not its last). --reanalyse summarises searches already run from their folders.
Usage: python benchmarks/p4_search_efficiency.py [--trials 4] [--seeds 0] [--steps 40] [--eval-every 10]
The issue's protocol: --trials 16 --seeds 0 1 2 --steps 150 --eval-every 50 --eval-samples 500.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import yaml

from _common import machine_line, median


def experiment(args, seed: int, searcher: str, scheduler: str, trials: int):
    from raygan.search_space import load_experiment

    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "search_spaces" / "dcl.yaml").read_text())
    doc["name"] = f"p4_{searcher}_{scheduler}_{seed}"
    doc["train"].update(steps=args.steps, eval_every=args.eval_every, eval_samples=args.eval_samples,
                        seed=seed, torch_threads=1)
    doc["search"].update(num_samples=trials, searcher=searcher, scheduler=scheduler, seed=seed,
                         max_concurrent=args.concurrent, grace_period=1)
    doc["output"] = {"dir": tempfile.mkdtemp(prefix="raygan_p4_")}
    path = Path(doc["output"]["dir"]) / "p4.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_experiment(path)


def _trainable(params, base):
    import time as _time

    from ray import tune

    from raygan.train.loop import Hooks, run
    from raygan.search_space import resolve

    run(resolve(base, params), Hooks(report=lambda m, s: tune.report({**m, "t_report": _time.time()})))


def search(exp) -> list[dict]:
    """Run the search; every report as {trial, step, value, t}."""
    from ray import tune

    from raygan.orchestrate.distributions import to_tune
    from raygan.orchestrate.tune import _scheduler, _searcher

    trainable = tune.with_resources(tune.with_parameters(_trainable, base=exp.trial_config), {"cpu": 1})
    tuner = tune.Tuner(trainable, param_space={k: to_tune(d) for k, d in exp.space.items()},
                       tune_config=tune.TuneConfig(search_alg=_searcher(exp), scheduler=_scheduler(exp),
                                                   num_samples=exp.search.num_samples, reuse_actors=True),
                       run_config=tune.RunConfig(name=exp.name, storage_path=exp.output.dir, verbose=0))
    rows = []
    for r in tuner.fit():
        df = r.metrics_dataframe
        rows += [{"trial": r.metrics["trial_id"], "step": int(s), "value": float(v), "t": float(t)}
                 for s, v, t in zip(df["step"], df[exp.search.metric], df["t_report"])]
    return sorted(rows, key=lambda row: row["t"])


def rows_from_dir(exp_dir, metric: str = "fd_shapesnet") -> list[dict]:
    """The reports of a finished search, read back from its Tune folder (progress.csv per trial)."""
    import csv

    rows = []
    for progress in Path(exp_dir).glob("*/progress.csv"):
        rows += [{"trial": r["trial_id"], "step": int(r["step"]), "value": float(r[metric]), "t": float(r["t_report"])}
                 for r in csv.DictReader(open(progress))]
    return sorted(rows, key=lambda row: row["t"])


def final_values(rows) -> dict:
    last = {}
    for row in rows:
        if row["step"] >= last.get(row["trial"], {"step": -1})["step"]:
            last[row["trial"]] = row
    return last


def steps_to_reach(rows, goal: float, latest_only: bool) -> int | None:
    """Steps consumed, walking the reports in time order, when the search's best first is <= goal.
    latest_only: the best of each trial's latest value (what the search would return if stopped
    then; raygan ranks trials by their last report); else the best value seen at any evaluation."""
    consumed, latest, best = {}, {}, float("inf")
    for row in rows:
        consumed[row["trial"]] = row["step"]
        latest[row["trial"]] = row["value"]
        best = min(latest.values()) if latest_only else min(best, row["value"])
        if best <= goal:
            return sum(consumed.values())
    return None


def summarise(seed, rnd, tpe, within: float) -> float:
    """Print one seed's result; returns the issue's share: TPE+ASHA within `within` of random
    search's best, "best" being what each search returns (every trial's last value)."""
    rnd_final, tpe_final = final_values(rnd), final_values(tpe)
    rnd_steps = sum(r["step"] for r in rnd_final.values())
    print(f"seed {seed}: random search {len(rnd_final)} trials, {rnd_steps} steps; TPE+ASHA {len(tpe_final)} trials, "
          f"{sum(r['step'] for r in tpe_final.values())} steps (trials' last steps "
          f"{sorted(r['step'] for r in tpe_final.values())})")
    share = float("inf")
    for latest_only, what in ((True, "returned (last values)"), (False, "seen at any evaluation")):
        best_rnd = min(r["value"] for r in (rnd_final.values() if latest_only else rnd))
        best_tpe = min(r["value"] for r in (tpe_final.values() if latest_only else tpe))
        print(f"  best {what}: random {best_rnd:.2f}, TPE+ASHA {best_tpe:.2f}")
        for tol in sorted({within, 0.01, 0.0}, reverse=True):
            goal = best_rnd * (1 + tol)
            reached = steps_to_reach(tpe, goal, latest_only)
            by_random = steps_to_reach(rnd, goal, latest_only)
            line = "never" if reached is None else f"after {reached} steps: share {reached / rnd_steps:.3f}"
            print(f"    within {tol:.0%} (goal {goal:.2f}): TPE+ASHA {line}; random search itself after {by_random} steps")
            if latest_only and tol == within:
                share = float("inf") if reached is None else reached / rnd_steps
    return share


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4, help="N: TPE+ASHA trials; random search gets 4N")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--eval-samples", type=int, default=100)
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--within", type=float, default=0.05)
    ap.add_argument("--reanalyse", nargs="+", metavar="DIR",
                    help="no search: summarise finished ones, given as RANDOM_DIR TPE_DIR pairs in seed order "
                         "(the Tune folders p4_random_fifo_<seed> and p4_tpe_asha_<seed>)")
    args = ap.parse_args()
    if args.reanalyse:
        dirs = args.reanalyse
        shares = [summarise(Path(r).name.rsplit("_", 1)[-1], rows_from_dir(r), rows_from_dir(t), args.within)
                  for r, t in zip(dirs[::2], dirs[1::2])]
        print(f"share of random search's compute, median over seeds: {median(shares):.3f}  {[round(s, 3) for s in shares]}")
        return

    import os

    os.environ.pop("RAY_ADDRESS", None)
    import ray

    ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
    print(machine_line())
    print(f"N = {args.trials} TPE+ASHA trials vs {4 * args.trials} random trials; {args.steps} steps per trial, "
          f"evaluation every {args.eval_every} on {args.eval_samples} samples; seeds {args.seeds}")
    from raygan.orchestrate.tune import prepare_shared_assets

    prepare_shared_assets(experiment(args, 0, "random", "fifo", 1))  # shapesnet + statistics cached once
    shares = []
    for seed in args.seeds:
        t0 = time.perf_counter()
        rnd = search(experiment(args, seed, "random", "fifo", 4 * args.trials))
        t1 = time.perf_counter()
        tpe = search(experiment(args, seed, "tpe", "asha", args.trials))
        print(f"seed {seed}: wall {t1 - t0:.0f} s random, {time.perf_counter() - t1:.0f} s TPE+ASHA")
        shares.append(summarise(seed, rnd, tpe, args.within))
    print(f"share of random search's compute, median over seeds: {median(shares):.3f}  {[round(s, 3) for s in shares]}")
    ray.shutdown()


if __name__ == "__main__":
    main()
