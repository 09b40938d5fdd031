"""Seed noise: a configuration's value over its seeds, and whether two configurations differ.

Pure functions. A search with ``search.repeats: k`` trains each configuration on k seeds
(orchestrate/replicates.py); each evaluation is reported as the seeds' statistic (what the
searcher and the schedulers see), its standard error and the per-seed values
(``seed<i>/<metric>``). The final ranking (orchestrate/results.py) marks a configuration
*tied* with rank 1 unless Welch's t-test says it is worse, one-sided, at ``search.tie_alpha``.
With 3 seeds that test has little power: "tied" means "not shown different", as it should.
"""
from __future__ import annotations

import math
import statistics

SEM = "/sem"  # <metric>/sem: the standard error of the seeds' mean
STATISTICS = ("mean", "median", "pessimistic")


def seed_key(i: int, metric: str) -> str:
    """The reported key of replicate i's own value of ``metric``."""
    return f"seed{i}/{metric}"


def sem(values: list[float]) -> float:
    """Standard error of the mean (NaN for fewer than two values)."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan


def over_seeds(values: list[float], kind: str = "mean", mode: str = "min") -> float:
    """The seeds' statistic: their mean, median, or (pessimistic) the mean one standard error
    towards worse (higher for mode min). NaN if any seed has no value (a NaN metric means "none
    yet", e.g. diversity_at_saturation; a configuration is only as far as its slowest seed)."""
    if not values or any(not math.isfinite(v) for v in values):
        return math.nan
    if kind == "median":
        return statistics.median(values)
    mean = statistics.fmean(values)
    if kind == "pessimistic":
        err = sem(values)
        return mean + (0.0 if math.isnan(err) else err) * (1 if mode == "min" else -1)
    return mean


def aggregate(per_seed: list[dict], objectives: list[tuple[str, str]], kind: str = "mean") -> dict:
    """One report from the k replicates' reports of the same evaluation: every metric as the seeds'
    mean (each objective as ``kind``), ``<metric>/sem`` and ``seed<i>/<metric>``; losses as the mean."""
    modes = dict(objectives)
    steps = {r["step"] for r in per_seed}
    if len(steps) != 1:
        raise ValueError(f"replicates reported different steps {sorted(steps)}")
    out = {"step": steps.pop()}
    keys = [k for k in per_seed[0] if k != "step" and all(_number(r.get(k)) for r in per_seed)]
    for k in keys:
        values = [float(r[k]) for r in per_seed]
        out[k] = over_seeds(values, kind, modes[k]) if k in modes else over_seeds(values)
        if k.startswith("loss/") or k == "sec_per_step":
            continue
        out[k + SEM] = sem(values) if all(math.isfinite(v) for v in values) else math.nan
        out.update({seed_key(i, k): v for i, v in enumerate(values)})
    return out


def seed_values(metrics: dict, metric: str) -> list[float]:
    """The per-seed values of ``metric`` in a report (``seed<i>/<metric>``, i = 0, 1, ...)."""
    out, i = [], 0
    while seed_key(i, metric) in metrics:
        out.append(float(metrics[seed_key(i, metric)]))
        i += 1
    return out


def trailing_mean(values: list[float], window: int) -> list[float]:
    """Each value replaced by the mean of it and the ``window - 1`` before it (fewer at the start)."""
    out = []
    for i in range(len(values)):
        part = values[max(0, i - window + 1): i + 1]
        out.append(statistics.fmean(part) if all(math.isfinite(v) for v in part) else math.nan)
    return out


def worse_than(first: list[float], other: list[float], mode: str, alpha: float) -> tuple[bool | None, float]:
    """Is ``other`` worse than ``first`` (rank 1)? Welch's t-test, one-sided. Returns (separated,
    p); separated is None when it cannot be tested (fewer than 2 seeds on a side, or no spread)."""
    from scipy.stats import ttest_ind

    first = [v for v in first if math.isfinite(v)]
    other = [v for v in other if math.isfinite(v)]
    if len(first) < 2 or len(other) < 2:
        return None, math.nan
    if statistics.pvariance(first) == 0 and statistics.pvariance(other) == 0:
        return (None, math.nan) if first[0] == other[0] else (True, 0.0)
    p = float(ttest_ind(other, first, equal_var=False, alternative="greater" if mode == "min" else "less").pvalue)
    return p < alpha, p


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def intensify(values: dict[str, list[float]], run, mode: str, alpha: float, seeds_per_round: int,
              rounds: int, kind: str = "mean", log=print) -> tuple[list[str], dict[str, list[float]]]:
    """The confirmation stage, as SMAC's intensification: the configurations ``values`` (name ->
    per-seed values from the search) are run again on fresh seeds, ``run(names, round) -> {name:
    values}``, and each one's values pooled with what it had. After each round a configuration
    shown worse than the leader (``worse_than``) drops out; the stage ends when only the leader
    is left or after ``rounds`` rounds. Returns the ranking by the pooled statistic (best
    first; the dropped ones after the rest, in the order they dropped out, reversed) and the
    pooled values."""
    pooled = {k: list(v) for k, v in values.items()}
    sign = 1 if mode == "min" else -1
    rank = lambda names: sorted(names, key=lambda n: sign * over_seeds(pooled[n], kind, mode))  # noqa: E731
    alive, dropped = rank(list(pooled)), []
    for r in range(rounds):
        if len(alive) < 2:
            break
        for name, new in run(alive, r).items():
            pooled[name].extend(new)
        alive = rank(alive)
        leader, kept = alive[0], [alive[0]]
        for name in alive[1:]:
            separated, p = worse_than(pooled[leader], pooled[name], mode, alpha)
            (dropped if separated else kept).append(name)
            if separated:
                log(f"confirmation round {r + 1}: {name} is worse than {leader} (p={p:.2g}, "
                    f"{len(pooled[name])} vs {len(pooled[leader])} seeds)")
        alive = kept
    return alive + rank(dropped), pooled
