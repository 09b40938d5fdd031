"""After a search: the ranked table, results.csv and best_config.yaml; with the
method as a search dimension also the comparison table (comparison.csv)."""
from __future__ import annotations

import csv
import math
import statistics
from pathlib import Path

import yaml

from raygan.search_space import Experiment, family_of, resolve


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
    return (k in ("step", "realism", "fd_shapesnet", "sec_per_step")
            or k.startswith(("intra_", "fd_", "scs_", "miou_")))


def _write_csv(path: Path, rows: list[dict], cols: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in cols} for r in rows)


def _print_table(rows: list[dict], cols: list[str], numbered: bool = True) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols}
    lead = lambda x: [str(x).rjust(2)] if numbered else []
    print("\n" + "  ".join(lead("#") + [c.ljust(widths[c]) for c in cols]))
    for i, r in enumerate(rows, 1):
        print("  ".join(lead(i) + [_fmt(r.get(c, "")).ljust(widths[c]) for c in cols]))


def comparison(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per trial (method, seed, metrics) and per method (mean ± std over seeds)."""
    per_trial = [{"method": r["_params"].get("method.name"), "seed": r["_params"].get("train.seed", 0),
                  **{k: v for k, v in r.items() if _is_result_metric(k) and k not in ("step", "sec_per_step")},
                  "status": r["status"], "_path": r["_path"]} for r in rows]
    per_trial.sort(key=lambda r: (str(r["method"]), r["seed"]))
    metrics = list(dict.fromkeys(k for r in per_trial for k in r if k not in ("method", "seed", "status", "_path")))
    per_method = []
    for method in dict.fromkeys(r["method"] for r in per_trial):
        ok = [r for r in per_trial if r["method"] == method and r["status"] == "ok"]
        row = {"method": method, "seeds": len(ok)}
        for m in metrics:
            vals = [r[m] for r in ok if isinstance(r.get(m), (int, float))]
            if vals:
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                row[m] = f"{statistics.mean(vals):.4g} ± {sd:.2g}"
        per_method.append(row)
    return per_trial, per_method


def write_comparison(rows: list[dict], exp_dir: Path) -> list[dict]:
    from raygan.report.grids import comparison_grid

    per_trial, per_method = comparison(rows)
    cols = [k for k in dict.fromkeys(k for r in per_trial for k in r) if not k.startswith("_")]
    _write_csv(exp_dir / "comparison.csv", per_trial, cols)
    print("\ncomparison (mean ± std over seeds; per-trial values in comparison.csv):")
    _print_table(per_method, list(dict.fromkeys(k for r in per_method for k in r)), numbered=False)
    first_seed = {}  # each method's first successful seed, for the picture
    for r in per_trial:
        if r["status"] == "ok" and r["_path"] and r["method"] not in first_seed:
            first_seed[r["method"]] = (f"{r['method']} s{r['seed']}", Path(r["_path"]) / "samples.png")
    shared = getattr(family_of(per_trial[0]["method"]), "GRID_SHARED_ROWS", ("source",)) if per_trial else ()
    if comparison_grid(list(first_seed.values()), exp_dir / "comparison.png", shared):
        print(f"raygan: samples side by side (shared rows: {', '.join(shared)}): {exp_dir / 'comparison.png'}")
    return per_method


def write_summary(results, exp: Experiment, exp_dir: Path) -> list[dict]:
    rows = ranked_rows(results, exp)
    cols = [c for c in dict.fromkeys(k for r in rows for k in r if not k.startswith("_"))]
    _write_csv(exp_dir / "results.csv", rows, cols)
    _print_table(rows, cols)
    if "method.name" in exp.space:
        write_comparison(rows, exp_dir)
    best = rows[0] if rows and rows[0]["status"] == "ok" else None
    if best is not None:
        cfg = resolve(exp.trial_config, best["_params"])
        doc = {"name": f"{exp.name}_best", "method": cfg.pop("method"), **cfg}
        (exp_dir / "best_config.yaml").write_text(
            f"# best trial of {exp.path} by {exp.search.metric} ({exp.search.mode}): "
            f"{_fmt(best.get(exp.search.metric))}\n" + yaml.safe_dump(doc, sort_keys=False))
    return rows
