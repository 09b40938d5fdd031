"""After a search: the ranked table, results.csv and best_config.yaml."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import yaml

from raygan.search_space import Experiment, resolve


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def ranked_rows(results, exp: Experiment) -> list[dict]:
    """One row per trial: params, final metrics, status; best first."""
    metric, sign = exp.search.metric, (1 if exp.search.mode == "min" else -1)
    rows = []
    for r in results:
        m = r.metrics or {}
        params = {k: v for k, v in (r.config or {}).items() if k in exp.space}
        row = {"trial": m.get("trial_id", "?"),
               **params, **{k: v for k, v in m.items() if _is_result_metric(k)}}
        row["status"] = "error: " + str(r.error).strip().splitlines()[-1][:80] if r.error else "ok"
        row["_params"], row["_path"] = params, r.path
        rows.append(row)

    def key(row):  # finished trials by metric, then those without a finite metric, then errors
        v = row.get(metric)
        if row["status"] != "ok":
            return (2, 0)
        return (0, sign * v) if isinstance(v, (int, float)) and math.isfinite(v) else (1, 0)
    return sorted(rows, key=key)


def _is_result_metric(k: str) -> bool:
    return k in ("step", "realism", "fd_shapesnet", "sec_per_step") or k.startswith(("intra_", "fd_"))


def write_summary(results, exp: Experiment, exp_dir: Path) -> list[dict]:
    rows = ranked_rows(results, exp)
    cols = [c for c in dict.fromkeys(k for r in rows for k in r if not k.startswith("_"))]
    with open(exp_dir / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in cols} for r in rows)
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols}
    print("\n" + "  ".join(["#".rjust(2)] + [c.ljust(widths[c]) for c in cols]))
    for i, r in enumerate(rows, 1):
        print("  ".join([str(i).rjust(2)] + [_fmt(r.get(c, "")).ljust(widths[c]) for c in cols]))
    best = rows[0] if rows and rows[0]["status"] == "ok" else None
    if best is not None:
        cfg = resolve(exp.trial_config, best["_params"])
        doc = {"name": f"{exp.name}_best", "method": cfg.pop("method"), **cfg}
        (exp_dir / "best_config.yaml").write_text(
            f"# best trial of {exp.path} by {exp.search.metric} ({exp.search.mode}): "
            f"{_fmt(best.get(exp.search.metric))}\n" + yaml.safe_dump(doc, sort_keys=False))
    return rows
