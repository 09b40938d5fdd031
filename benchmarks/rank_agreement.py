"""Rank agreement of a replicated search run twice on different base seeds (issue #25).

Reads the results.csv of two or more `raygan tune` runs of the same space with
`search.repeats` (each run's own seeds in its ``seed<i>/<metric>`` columns) and prints,
for the configurations they share: each run's ranking and its tie marks, Kendall's tau
between the runs' rankings, the ranking that one seed alone would have given (every seed
of every run taken on its own, tau over all pairs of such seeds), and the ranking over
all the runs' seeds pooled, with raygan's tie test (Welch, one-sided, alpha 0.05).

    python benchmarks/rank_agreement.py RESULTS_1/dcl RESULTS_2/dcl --metric fd_shapesnet --mode min
"""
from __future__ import annotations

import argparse
import csv
import itertools
import statistics
from pathlib import Path

from raygan.stats import worse_than  # raygan's tie test, as the closing lines use it

KNOBS = ("train.lr", "method.lambda1", "method.lambda2", "method.tau")


def read_run(folder: Path, metric: str) -> dict[tuple, dict]:
    """configuration (its knob values, rounded) -> {"seeds": [...], "mark": vs_rank1}."""
    out = {}
    for row in csv.DictReader(open(folder / "results.csv")):
        key = tuple(round(float(row[k]), 6) for k in KNOBS if row.get(k))
        seeds = [float(row[c]) for c in sorted(row) if c.startswith("seed") and c.endswith("/" + metric)]
        out[key] = {"seeds": seeds, "mark": row["vs_rank1"], "trial": row["trial"]}
    return out


def ranking(values: dict[tuple, float], mode: str) -> list[tuple]:
    return sorted(values, key=lambda k: values[k], reverse=(mode == "max"))


def tau(a: list, b: list) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau([a.index(k) for k in a], [b.index(k) for k in a]).statistic)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path, help="experiment folders holding results.csv")
    ap.add_argument("--metric", default="fd_shapesnet")
    ap.add_argument("--mode", choices=("min", "max"), default="min")
    args = ap.parse_args()
    runs = [read_run(r, args.metric) for r in args.runs]
    shared = sorted(set.intersection(*(set(r) for r in runs)))
    names = {k: runs[0][k]["trial"] for k in shared}
    rankings = []
    for path, run in zip(args.runs, runs):
        means = {k: statistics.fmean(run[k]["seeds"]) for k in shared}
        rankings.append(ranking(means, args.mode))
        print(f"{path}: " + "; ".join(f"{names[k]} {means[k]:.1f} [{', '.join(f'{v:.1f}' for v in run[k]['seeds'])}]"
                                     f" {run[k]['mark']}" for k in rankings[-1]))
    for (i, a), (j, b) in itertools.combinations(enumerate(rankings), 2):
        same = "the same" if a[0] == b[0] else "different"
        print(f"runs {i + 1} vs {j + 1}: Kendall tau {tau(a, b):+.2f}; rank 1 {same}")
    singles = [ranking({k: run[k]["seeds"][s] for k in shared}, args.mode)
               for run in runs for s in range(min(len(run[k]["seeds"]) for k in shared))]
    taus = [tau(a, b) for a, b in itertools.combinations(singles, 2)]
    top = sum(a[0] == b[0] for a, b in itertools.combinations(singles, 2))
    print(f"one seed per configuration ({len(singles)} seeds): mean Kendall tau {statistics.fmean(taus):+.2f} over "
          f"{len(taus)} pairs of seeds; the same rank 1 in {top} of {len(taus)}")
    pooled = {k: [v for run in runs for v in run[k]["seeds"]] for k in shared}
    order = ranking({k: statistics.fmean(v) for k, v in pooled.items()}, args.mode)
    best = pooled[order[0]]
    for k in order:
        v = pooled[k]
        sem = statistics.stdev(v) / len(v) ** 0.5
        separated, p = worse_than(best, v, args.mode, 0.05)
        mark = "rank 1" if k == order[0] else f"{'worse' if separated else 'tied'} (p={p:.2g})"
        print(f"pooled: {names[k]} {statistics.fmean(v):.1f} ± {sem:.1f} (sem, {len(v)} seeds) {mark}")


if __name__ == "__main__":
    main()
