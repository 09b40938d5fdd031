"""The report's figures, each rendered to PNG bytes (matplotlib's object API: no
pyplot state, no display needed). Inputs are plain rows and histories; what to
plot is decided in page.py."""
from __future__ import annotations

import io

from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from raygan.pareto import finite
from raygan.stats import seed_values, sem

METHOD_COLOURS = "tab10"


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _colours(n: int):
    from matplotlib import colormaps

    cmap = colormaps[METHOD_COLOURS]
    return [cmap(i % cmap.N) for i in range(n)]


def scatter_front(points: list[dict], x: str, y: str) -> bytes:
    """Trials as points of (x, y), coloured by method; those with ``front`` set
    are ringed, labelled with their trial id and joined in x order.
    ``points``: dicts with x, y, ``method``, ``trial``, ``front``."""
    fig = Figure(figsize=(6.4, 4.6))
    ax = fig.subplots()
    methods = list(dict.fromkeys(p["method"] for p in points))
    for method, colour in zip(methods, _colours(len(methods))):
        mine = [p for p in points if p["method"] == method]
        ax.scatter([p[x] for p in mine], [p[y] for p in mine], color=colour, label=method, s=36, zorder=3)
    front = sorted((p for p in points if p["front"]), key=lambda p: p[x])
    if front:
        ax.scatter([p[x] for p in front], [p[y] for p in front], s=150, facecolors="none", edgecolors="black",
                   linewidths=1.4, label="Pareto front", zorder=4)
        ax.plot([p[x] for p in front], [p[y] for p in front], color="black", lw=0.8, ls="--", zorder=2)
        for p in front:
            ax.annotate(p["trial"], (p[x], p[y]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.set_title(f"{y} vs {x}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def curves(histories: list[dict], metrics: list[str], by_method: bool) -> bytes:
    """One panel per metric, metric vs step, one line per trial. ``histories``:
    dicts with ``trial``, ``method`` and ``reports`` (the trial's reports in
    order). Lines are coloured by method, or by trial when only one method ran; a trial trained on
    several seeds (search.repeats) draws its mean and, shaded, the range of its seeds."""
    fig = Figure(figsize=(5.2 * len(metrics), 4.0))
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    keys = list(dict.fromkeys(h["method"] if by_method else h["trial"] for h in histories))
    colour = dict(zip(keys, _colours(len(keys))))
    for ax, metric in zip(axes, metrics):
        labelled = set()
        for h in histories:
            pts = [(r["step"], r[metric]) for r in h["reports"] if finite(r.get(metric)) and "step" in r]
            if not pts:
                continue
            key = h["method"] if by_method else h["trial"]
            ax.plot(*zip(*pts), marker="o", ms=3, lw=1.2, alpha=0.85, color=colour[key],
                    label=None if key in labelled else key)
            labelled.add(key)
            # A replicated trial (search.repeats) reports each seed: its curve carries their range.
            spread = [(r["step"], min(v), max(v)) for r in h["reports"] if "step" in r
                      for v in [seed_values(r, metric)] if len(v) > 1 and all(finite(x) for x in v)]
            if spread:
                steps, low, high = zip(*spread)
                ax.fill_between(steps, low, high, color=colour[key], alpha=0.15, lw=0)
        ax.set_xlabel("step")
        ax.set_title(metric, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2 if len(keys) > 8 else 1)
    return _png(fig)


def seed_ranking(rows: list[dict], metric: str) -> bytes:
    """The ranking over seeds: one row per configuration (rank 1 on top), each seed's value a
    dot, the seeds' mean ± standard error a bar; red where the configuration is worse than rank 1
    (``vs_rank1``), grey where it is tied. ``rows``: ranked rows with ``trial``, ``vs_rank1`` and
    ``seed<i>/<metric>``."""
    fig = Figure(figsize=(6.4, 0.8 + 0.42 * len(rows)))
    ax = fig.subplots()
    for y, r in enumerate(rows):
        values = [v for v in seed_values(r, metric) if finite(v)]
        if not values:
            continue
        worse = str(r.get("vs_rank1", "")).startswith("worse")
        colour = "#c44e52" if worse else ("#4c72b0" if y == 0 else "#8c8c8c")
        ax.scatter(values, [y] * len(values), s=16, color=colour, alpha=0.7, zorder=3)
        mean = sum(values) / len(values)
        err = sem(values)
        ax.errorbar([mean], [y], xerr=[[0 if err != err else err]] * 2, fmt="|", ms=14, color=colour,
                    capsize=4, lw=1.6, zorder=4)
    ax.set_yticks(range(len(rows)), [f"{i}. {r['trial']}  {r.get('vs_rank1', '')}" for i, r in enumerate(rows, 1)],
                  fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(metric)
    ax.set_title(f"{metric} per seed (dots), mean ± sem (bar)", fontsize=10)
    ax.grid(alpha=0.3, axis="x")
    return _png(fig)


def importance_bars(importances: dict[str, dict[str, float]]) -> bytes:
    """Horizontal bars per objective: {objective: {knob: importance}}."""
    fig = Figure(figsize=(5.0 * len(importances), 0.5 + 0.45 * max(len(v) for v in importances.values())))
    axes = fig.subplots(1, len(importances), squeeze=False)[0]
    for ax, (objective, values) in zip(axes, importances.items()):
        knobs = list(values)[::-1]  # most important on top
        ax.barh(knobs, [values[k] for k in knobs], color="#4c72b0")
        ax.set_xlim(0, 1)
        ax.set_title(f"for {objective}", fontsize=10)
        ax.tick_params(labelsize=8)
    return _png(fig)


def knob_scatter(rows: list[dict], knobs: dict[str, str], metrics: list[str]) -> bytes:
    """A grid of panels, knob (column) vs metric (row), one point per trial.
    ``knobs``: knob -> "log" | "linear" | "categorical"."""
    fig = Figure(figsize=(3.0 * len(knobs) + 0.6, 2.6 * len(metrics) + 0.4))
    axes = fig.subplots(len(metrics), len(knobs), squeeze=False)
    for j, (knob, scale) in enumerate(knobs.items()):
        values = [r.get(knob) for r in rows]
        if scale == "categorical":
            options = list(dict.fromkeys(str(v) for v in values if v is not None))
            xs = [options.index(str(v)) if v is not None else None for v in values]
        else:
            xs = values
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            pts = [(x, r.get(metric)) for x, r in zip(xs, rows) if x is not None and finite(r.get(metric))]
            if pts:
                ax.scatter(*zip(*pts), s=18, color="#4c72b0")
            if scale == "log":
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap on a short range
            if scale == "categorical":
                ax.set_xticks(range(len(options)), options, fontsize=7, rotation=20)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if i == len(metrics) - 1:
                ax.set_xlabel(knob, fontsize=8)
            if j == 0:
                ax.set_ylabel(metric, fontsize=8)
    fig.tight_layout()
    return _png(fig)
