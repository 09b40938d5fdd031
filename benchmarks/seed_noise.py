"""The noise floor of a search's objective: seeds of fixed configurations, scored as a trial is.

Reads the curves that benchmarks/adaptation_curves.py writes (one folder per configuration,
one <run>.jsonl per seed) and prints, for each objective and each way of scoring a run
(scope last; scope best over a window of w evaluations, raygan.train.best), each
configuration's per-seed values, mean ± std, and the seed spread against the spread of the
configuration means; and how often two seeds rank the configurations alike (Kendall tau).

    python benchmarks/seed_noise.py /tmp/noise/A /tmp/noise/B --windows 1 2 3
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

from raygan.train.best import BestEvaluation

OBJECTIVES = {"fd_shapesnet": "min", "realism": "max", "diversity": "max"}


def run_value(reports: list[dict], metric: str, mode: str, scope: str, window: int) -> float:
    if scope == "last":
        return reports[-1][metric]
    best = BestEvaluation([(metric, mode)], None, window=window)
    for r in reports:
        best.update(r)
    return best.best[metric]


def main() -> None:
    from scipy.stats import kendalltau

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("configs", nargs="+", help="folders of <run>.jsonl, one folder per configuration")
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 2, 3])
    args = ap.parse_args()
    runs = {}
    for folder in args.configs:
        logs = sorted(Path(folder).glob("*.jsonl"), key=lambda p: int(p.stem.rsplit("seed-", 1)[1]))
        runs[Path(folder).name] = [[json.loads(x) for x in p.read_text().splitlines() if x.strip()] for p in logs]
    n_seeds = min(len(v) for v in runs.values())
    scorings = [("last", 1)] + [("best", w) for w in args.windows]
    for metric, mode in OBJECTIVES.items():
        print(f"\n## {metric} ({mode}), {n_seeds} seeds per configuration")
        for scope, w in scorings:
            name = "last" if scope == "last" else f"best, window {w}"
            table = {c: [run_value(r, metric, mode, scope, w) for r in rs[:n_seeds]] for c, rs in runs.items()}
            means = [statistics.fmean(v) for v in table.values()]
            seed_sd = statistics.fmean([statistics.stdev(v) for v in table.values()])
            between = statistics.stdev(means) if len(means) > 1 else float("nan")
            taus = []
            if len(table) > 2:  # how alike two seeds rank the configurations
                for a, b in itertools.combinations(range(n_seeds), 2):
                    taus.append(kendalltau([v[a] for v in table.values()], [v[b] for v in table.values()])[0])
            print(f"{name:16s} " + "  ".join(f"{c}: {statistics.fmean(v):.4g} ± {statistics.stdev(v):.2g} "
                                               f"[{', '.join(f'{x:.4g}' for x in v)}]" for c, v in table.items())
                  + f"  | seed sd {seed_sd:.3g}, sd of config means {between:.3g}"
                  + (f", Kendall tau between seeds {statistics.fmean(taus):.2f}" if taus else ""))


if __name__ == "__main__":
    main()
