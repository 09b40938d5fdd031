"""Ranking by several objectives: Pareto fronts and the front's point nearest the ideal.

Pure functions on n x k objective values with one mode ("min"/"max") per objective; used to
rank trials (orchestrate/results.py) and to pick a trial's best evaluation (train/best.py).
"""
from __future__ import annotations

import math

import numpy as np


def finite(v) -> bool:
    """A real number that is not NaN or infinite (a bool is not a metric value)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _minimised(values, modes) -> np.ndarray:
    v = np.asarray(values, dtype=float).reshape(len(values), len(modes))
    return v * np.array([1.0 if m == "min" else -1.0 for m in modes])


def pareto_ranks(values, modes) -> list[int]:
    """Non-dominated sorting (Deb et al. 2002, NSGA-II): rank 1 is the Pareto
    front, rank k+1 the front of what remains without ranks 1..k. Point a
    dominates b when it is no worse in every objective and better in one."""
    v = _minimised(values, modes)
    no_worse = (v[:, None, :] <= v[None, :, :]).all(-1)
    better = (v[:, None, :] < v[None, :, :]).any(-1)
    dominates = no_worse & better  # [a, b]: a dominates b
    ranks, left, rank = np.zeros(len(v), dtype=int), np.ones(len(v), dtype=bool), 1
    while left.any():
        front = left & ~(dominates & left[:, None]).any(0)
        ranks[front], left, rank = rank, left & ~front, rank + 1
    return ranks.tolist()


def best_index(values, modes) -> int | None:
    """The best of n points, or None when none is finite in every objective. One objective:
    the lowest (min) or highest (max), the first on ties. Several: among the Pareto front,
    the point nearest (Euclidean) the ideal point, each objective scaled to [0, 1] over
    the points (the ideal point has every objective's best value, i.e. 0 after scaling;
    an objective with one value throughout counts 0)."""
    keep = [i for i, row in enumerate(values) if all(finite(x) for x in row)]
    if not keep:
        return None
    v = _minimised([values[i] for i in keep], modes)
    if len(modes) == 1:
        return keep[int(np.argmin(v[:, 0]))]
    span = v.max(0) - v.min(0)
    scaled = (v - v.min(0)) / np.where(span > 0, span, 1.0)
    front = np.array(pareto_ranks(v.tolist(), ["min"] * len(modes))) == 1
    distance = np.where(front, np.linalg.norm(scaled, axis=1), np.inf)
    return keep[int(np.argmin(distance))]
