"""P4: does TPE + ASHA find what random search with 4x the trials finds, for less compute? And
PBT against TPE at equal compute. Every arm is a real `raygan tune` search (run_search: one-worker
trials, search.scope best, checkpoints, the real evaluator) on the embedded DCL task over
search_spaces/dcl.yaml's space (λ1, λ2, τ, lr), maximising realism by default (--metric): at a
few hundred steps fd_shapesnet first worsens as G_t leaves the source and improves only later
(700 steps in the main job), while realism rises from the first steps.

Per seed s (search.seed = train.seed = s), at --steps steps per trial, an evaluation every
--eval-every steps on --eval-samples samples:
  random     random search, 4N trials, FIFO                                   (4N x steps)
  tpe_asha   TPE (first --startup trials random), N trials, ASHA on best/fd   (<= N x steps)
  tpe_fifo   TPE, N trials, FIFO                                              (N x steps)  --pbt
  pbt        PBT, population N from random draws, perturbation every --interval
             evaluations over all four knobs                                  (N x steps)  --pbt
What a search returns: its top trial under scope best (each trial's best evaluation after step 0).
share = steps TPE + ASHA consumed, walking its reports in time order, until its returned best is
within --within (relative) of random search's final one, over random search's total steps.
Compute is counted in training steps, so machine load does not change the numbers.
Usage: python benchmarks/p4_search_efficiency.py --trials 4 --seeds 0 1 2 --steps 300 --pbt
       python benchmarks/p4_search_efficiency.py --reanalyse DIR   (DIR: the --out folder)
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from _common import machine_line, median

METRICS = {"realism": "max", "fd_shapesnet": "min"}
ARMS = {"random": ("random", "fifo", 4), "tpe_asha": ("tpe", "asha", 1), "tpe_fifo": ("tpe", "fifo", 1),
        "pbt": ("random", "pbt", 1)}


def experiment_file(args, seed: int, arm: str) -> Path:
    """The arm's experiment: search_spaces/dcl.yaml with the protocol's budget and search."""
    searcher, scheduler, times = ARMS[arm]
    doc = yaml.safe_load((Path(__file__).resolve().parent.parent / "search_spaces" / "dcl.yaml").read_text())
    doc["name"] = f"p4_{arm}_{seed}"
    doc["train"].update(steps=args.steps, eval_every=args.eval_every, eval_samples=args.eval_samples, seed=seed,
                        torch_threads=1)
    doc["search"].update(num_samples=times * args.trials, searcher=searcher, scheduler=scheduler, seed=seed,
                         max_concurrent=args.concurrent, grace_period=1, startup_trials=args.startup,
                         scope="best", perturbation_interval=args.interval, metric=args.metric,
                         mode=METRICS[args.metric])
    doc["scaling"]["cpus_per_worker"] = round(1.8 / args.concurrent, 2)
    doc["output"] = {"dir": str(Path(args.out).resolve())}
    path = Path(args.out) / f"p4_{arm}_{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def reports(exp_dir: Path, metric: str) -> list[dict]:
    """Every report of every trial (result.json), in time order: trial, step and its best value so
    far, sign-flipped so that lower is better."""
    sign = 1 if METRICS[metric] == "min" else -1
    rows = []
    for d in exp_dir.glob("_trial_*"):
        for line in (d / "result.json").read_text().splitlines():
            r = json.loads(line)
            if r["step"] > 0:
                rows.append({"trial": d.name, "step": r["step"], "t": r["timestamp"],
                             "best": sign * r[f"best/{metric}"]})
    return sorted(rows, key=lambda r: (r["t"], r["step"]))


def walk(rows: list[dict]):
    """(steps consumed so far, the search's returned best so far) after each report. A PBT trial's
    steps restart from another's checkpoint: steps consumed count each trial's own training."""
    consumed, best, last_step = 0, {}, {}
    for r in rows:
        gained = r["step"] - last_step.get(r["trial"], 0)
        consumed += max(gained, 0)  # a PBT exploit jumps to the donor's step: counted from there on
        last_step[r["trial"]] = r["step"]
        best[r["trial"]] = r["best"]
        yield consumed, min(best.values())


def summary(exp_dir: Path, metric: str) -> dict:
    """Steps consumed in all and the returned best (in the metric's own sign)."""
    consumed, best = list(walk(reports(exp_dir, metric)))[-1]
    return {"steps": consumed, "best": best if METRICS[metric] == "min" else -best,
            "trials": len(list(exp_dir.glob("_trial_*")))}


def steps_to_within(exp_dir: Path, metric: str, goal: float) -> int | None:
    """Steps consumed when the search's returned best first reaches ``goal``."""
    sign = 1 if METRICS[metric] == "min" else -1
    for consumed, best in walk(reports(exp_dir, metric)):
        if best <= sign * goal:
            return consumed
    return None


def analyse(out: Path, seeds, within: float, pbt: bool, metric: str) -> None:
    shares = []
    print(f"| seed | random: returned {metric} (steps) | TPE+ASHA: returned (steps) | TPE+ASHA steps to within "
          f"{within:.0%} of random (**share**) |" + (" TPE FIFO: returned (steps) | PBT: returned (steps) |" if pbt else ""))
    print("|---|---|---|---|" + ("---|---|" if pbt else ""))
    for seed in seeds:
        rnd, tpe = summary(out / f"p4_random_{seed}", metric), summary(out / f"p4_tpe_asha_{seed}", metric)
        goal = rnd["best"] * (1 + within if METRICS[metric] == "min" else 1 - within)
        reached = steps_to_within(out / f"p4_tpe_asha_{seed}", metric, goal)
        share = reached / rnd["steps"] if reached is not None else float("inf")
        shares.append(share)
        line = (f"| {seed} | {rnd['best']:.2f} ({rnd['steps']}) | {tpe['best']:.2f} ({tpe['steps']}) | "
                f"{'never' if reached is None else f'{reached} (**{share:.1%}**)'} |")
        if pbt:
            fifo, p = summary(out / f"p4_tpe_fifo_{seed}", metric), summary(out / f"p4_pbt_{seed}", metric)
            line += f" {fifo['best']:.2f} ({fifo['steps']}) | {p['best']:.2f} ({p['steps']}) |"
        print(line)
    print(f"\nshare of random search's compute, median over seeds: {median(shares):.3f}  "
          f"{[round(s, 3) for s in shares]}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=4, help="N: TPE trials and PBT population; random search gets 4N")
    ap.add_argument("--startup", type=int, default=2, help="TPE's random trials before it models (< N)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--eval-samples", type=int, default=200)
    ap.add_argument("--interval", type=int, default=2, help="PBT: evaluations between perturbations")
    ap.add_argument("--concurrent", type=int, default=2)
    ap.add_argument("--within", type=float, default=0.05)
    ap.add_argument("--metric", default="realism", choices=sorted(METRICS))
    ap.add_argument("--pbt", action="store_true", help="also PBT vs TPE FIFO at equal compute (N x steps each)")
    ap.add_argument("--out", default="/tmp/raygan_p4")
    ap.add_argument("--reanalyse", action="store_true", help="no search: summarise the searches in --out")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.reanalyse:
        import os

        os.environ.pop("RAY_ADDRESS", None)
        import ray

        from raygan.orchestrate.tune import run_search
        from raygan.search_space import load_experiment

        ray.init(address="local", include_dashboard=False, configure_logging=False, log_to_driver=False)
        print(machine_line(), flush=True)
        arms = ["random", "tpe_asha"] + (["tpe_fifo", "pbt"] if args.pbt else [])
        for seed in args.seeds:
            for arm in arms:
                if (out / f"p4_{arm}_{seed}").exists():
                    continue  # done in an earlier run of this script
                t0 = time.perf_counter()
                run_search(load_experiment(experiment_file(args, seed, arm)))
                done = summary(out / f"p4_{arm}_{seed}", args.metric)
                print(f"seed {seed} {arm}: {time.perf_counter() - t0:.0f} s wall, {done}", flush=True)
        ray.shutdown()
    print(f"N = {args.trials}, {args.steps} steps per trial, evaluation every {args.eval_every} on "
          f"{args.eval_samples} samples, TPE startup {args.startup}")
    analyse(out, args.seeds, args.within, args.pbt, args.metric)


if __name__ == "__main__":
    main()
