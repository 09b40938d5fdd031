"""After a search: the ranked table, results.csv and best_config.yaml; with
several objectives the Pareto front (pareto.csv); with the method as a search
dimension also the comparison table (comparison.csv). ``read_trials`` reads a
finished (or interrupted) run back from its folder, for ``raygan report``."""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from raygan.pareto import finite, pareto_ranks
from raygan.runs import (BEST_FOLDER, ERROR_FILE, EXPERIMENT_COPY, PARAMS_FILE, RESULT_FILE, SEED_FOLDER,
                         STATE_FILE, best_checkpoint, seed_checkpoints, trial_folders)
from raygan.registry import family_of
from raygan.search_space import Experiment, resolve

STOPPED = "stopped"  # the result key saying why a trial stopped early (e.g. a loss became non-finite)


NOISE = "vs_rank1"  # the ranking's column: is this configuration shown worse than rank 1 (raygan.stats)?


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "-" if math.isnan(v) else str(v)
    return str(v)


def ranked_rows(results, exp: Experiment) -> list[dict]:
    """One row per trial: params, metrics, status; best first. The metrics are those of the
    trial's best evaluation under ``search.scope: best`` (its ``best/`` keys, train/best.py;
    a trial that diverged after it is ranked by it too), else of its last report. With several
    objectives: by Pareto rank (``pareto_rank``, 1 = the front), then by the first."""
    from raygan.train.best import best_of

    objectives = exp.search.objectives
    (metric, mode), multi = objectives[0], len(objectives) > 1
    sign = 1 if mode == "min" else -1
    rows = []
    for r in results:
        last = r.metrics or {}
        m = last
        if exp.search.scope == "best":  # (a run from before scope was a knob has no best/ keys)
            m = best_of(last) or ({} if last.get(STOPPED) else last)
        params = {k: v for k, v in (r.config or {}).items() if k in exp.space}
        row = {"trial": last.get("trial_id", "?"), **({"pareto_rank": ""} if multi else {}),
               **params, **{k: v for k, v in m.items() if _is_result_metric(k)},
               **{k: v for k, v in m.items() if any(k.endswith("/" + o) for o, _ in objectives)}}
        row["status"] = ("error: " + str(r.error).strip().splitlines()[-1][:80] if r.error
                         else f"stopped: {last[STOPPED]}" if last.get(STOPPED) else "ok")
        row["_params"], row["_path"] = params, r.path
        diverged_after_best = last.get(STOPPED) and m is not last and all(finite(m.get(k)) for k, _ in objectives)
        row["_ranked"] = not r.error and (row["status"] == "ok" or bool(diverged_after_best))
        rows.append(row)
    if multi:
        ranked = [r for r in rows if r["_ranked"] and all(finite(r.get(k)) for k, _ in objectives)]
        if ranked:
            ranks = pareto_ranks([[r[k] for k, _ in objectives] for r in ranked], [d for _, d in objectives])
            for r, k in zip(ranked, ranks):
                r["pareto_rank"] = k

    def key(row):  # ranked trials by (Pareto rank and) metric, then those without finite metrics, then the rest
        if not row["_ranked"]:
            return (2, 0, 0)
        if multi:
            return (0, row["pareto_rank"], sign * row[metric]) if row["pareto_rank"] != "" else (1, 0, 0)
        v = row.get(metric)
        return (0, 0, sign * v) if finite(v) else (1, 0, 0)
    rows = sorted(rows, key=key)
    if not multi:
        mark_ties(rows, metric, mode, exp.search.tie_alpha)
    return rows


def mark_ties(rows: list[dict], metric: str, mode: str, alpha: float) -> None:
    """Each ranked row's ``vs_rank1``: "tied (p=…)" unless Welch's one-sided t-test on the seeds'
    values (``seed<i>/<metric>``) says it is worse than rank 1 at ``alpha``, then "worse (p=…)";
    empty where it cannot be told (one seed per configuration)."""
    from raygan import stats

    ranked = [r for r in rows if r["_ranked"] and finite(r.get(metric))]
    if not ranked:
        return
    first = stats.seed_values(ranked[0], metric)
    ranked[0][NOISE] = "rank 1" if len(first) > 1 else ""
    for r in ranked[1:]:
        separated, p = stats.worse_than(first, stats.seed_values(r, metric), mode, alpha)
        r[NOISE] = "" if separated is None else f"{'worse' if separated else 'tied'} (p={p:.2g})"


def noise_summary(rows: list[dict], exp: Experiment) -> str:
    """The ranking's closing line: which ranks are within seed noise of rank 1, in words."""
    if exp.search.multi_objective:
        return ""
    ranked = [r for r in rows if r.get(NOISE)]
    if not ranked:
        return ("raygan: one seed per configuration: this ranking cannot tell real differences from seed noise "
                "(set search.repeats, e.g. 3)")
    tied = [i for i, r in enumerate(rows, 1) if r.get(NOISE, "").startswith("tied")]
    from raygan.stats import seed_values

    counts = sorted({len(seed_values(r, exp.search.objectives[0][0])) for r in ranked})
    seeds = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    how = f"Welch's t-test, one-sided, alpha {exp.search.tie_alpha:g}, {seeds} seeds each"
    if any("confirmed_seeds" in r for r in rows):
        how += ", after the confirmation stage"
    if not tied:
        return f"raygan: rank 1 is ahead of every other configuration beyond seed noise ({how})"
    if tied == list(range(2, len(tied) + 2)):
        span = f"ranks 1-{tied[-1]}" if len(tied) > 1 else "ranks 1-2"
    else:
        span = "rank 1 and ranks " + ", ".join(map(str, tied))
    return f"raygan: {span} are within seed noise of each other ({how}): the search cannot tell them apart"


def _is_result_metric(k: str) -> bool:
    from raygan.evaluation.fewshot import METRICS
    from raygan.evaluation.saturation import DIVERSITY_AT_SATURATION, SATURATED_AT
    from raygan.stats import SEM

    k = k[: -len(SEM)] if k.endswith(SEM) else k
    return (k in ("step", "sec_per_step", "diversity", DIVERSITY_AT_SATURATION, SATURATED_AT, *METRICS)
            or k.startswith(("intra_", "fd_", "scs_", "miou_")))  # scs_<edges>; miou_<segmenter>, fd_segnet


def _write_csv(path: Path, rows: list[dict], cols: list[str]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows({c: r.get(c, "") for c in cols} for r in rows)


def _with_sem(row: dict, cols: list[str]) -> dict:
    """A row for printing: each metric with its standard error as "value ± sem"."""
    from raygan.stats import SEM

    out = dict(row)
    for c in cols:
        err = row.get(c + SEM)
        if finite(row.get(c)) and finite(err):
            out[c] = f"{_fmt(row[c])} ± {err:.2g}"
    return out


def _print_table(rows: list[dict], cols: list[str], numbered: bool = True) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c, ""))) for r in rows)) for c in cols}
    lead = lambda x: [str(x).rjust(2)] if numbered else []
    print("\n" + "  ".join(lead("#") + [c.ljust(widths[c]) for c in cols]))
    for i, r in enumerate(rows, 1):
        print("  ".join(lead(i) + [_fmt(r.get(c, "")).ljust(widths[c]) for c in cols]))


def _varying_knobs(rows: list[dict]) -> list[str]:
    """The knobs besides the method and the seed whose values differ between the trials."""
    return sorted(k for k in dict.fromkeys(k for r in rows for k in r["_params"])
                  if k not in ("method.name", "train.seed") and len({repr(r["_params"].get(k)) for r in rows}) > 1)


def comparison(rows: list[dict]) -> tuple[list[dict], list[dict]]:
    """Per trial (method, seed, metrics) and per variant (mean ± std over seeds). A variant is a
    method with the values of every other knob that differs between the trials (a grid over
    ``data.ratio`` besides the methods gives one row per method and ratio)."""
    varying = _varying_knobs(rows)
    per_trial = [{"method": r["_params"].get("method.name"), **{k: r["_params"].get(k) for k in varying},
                  "seed": r["_params"].get("train.seed", 0),
                  **{k: v for k, v in r.items() if _is_result_metric(k) and k not in ("step", "sec_per_step")},
                  "status": r["status"], "_path": r["_path"]} for r in rows]
    variant = lambda r: (str(r["method"]), *(repr(r[k]) for k in varying))
    per_trial.sort(key=lambda r: (variant(r), r["seed"]))
    metrics = list(dict.fromkeys(k for r in per_trial for k in r
                                 if k not in ("method", "seed", "status", "_path", *varying)))
    per_method = []
    for key in dict.fromkeys(variant(r) for r in per_trial):
        members = [r for r in per_trial if variant(r) == key]
        ok = [r for r in members if r["status"] == "ok"]
        row = {"method": members[0]["method"], **{k: members[0][k] for k in varying}, "seeds": len(ok)}
        for m in metrics:
            vals = [r[m] for r in ok if finite(r.get(m))]
            if vals:
                sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
                row[m] = f"{statistics.mean(vals):.4g} ± {sd:.2g}"
        per_method.append(row)
    return per_trial, per_method


def write_comparison(rows: list[dict], exp_dir: Path) -> list[dict]:
    from raygan.orchestrate.grids import comparison_grid

    per_trial, per_method = comparison(rows)
    cols = [k for k in dict.fromkeys(k for r in per_trial for k in r) if not k.startswith("_")]
    _write_csv(exp_dir / "comparison.csv", per_trial, cols)
    print("\ncomparison (mean ± std over seeds; per-trial values in comparison.csv):")
    _print_table(per_method, list(dict.fromkeys(k for r in per_method for k in r)), numbered=False)
    first_seed = {}  # each variant's first successful seed, for the picture
    varying = _varying_knobs(rows)
    for r in per_trial:
        label = " ".join([str(r["method"]), *(f"{k.split('.')[-1]}={r[k]}" for k in varying)])
        if r["status"] == "ok" and r["_path"] and label not in first_seed:
            first_seed[label] = (f"{label} s{r['seed']}", Path(r["_path"]) / "samples.png")
    shared = family_of(per_trial[0]["method"]).grid_shared_rows if per_trial else ()
    if comparison_grid(list(first_seed.values()), exp_dir / "comparison.png", shared):
        print(f"raygan: samples side by side (shared rows: {', '.join(shared)}): {exp_dir / 'comparison.png'}")
    return per_method


def trial_yaml(exp: Experiment, params: dict, name: str, comment: str) -> str:
    """One trial as an experiment file (its sampled knobs as constants, and the
    search's scaling): ``raygan train`` on it reruns that trial."""
    import dataclasses

    cfg = resolve(exp.trial_config, params)
    doc = {"name": name, "method": cfg.pop("method"), **cfg, "scaling": dataclasses.asdict(exp.scaling)}
    return f"# {comment}\n" + yaml.safe_dump(doc, sort_keys=False)


def save_experiment(exp: Experiment, exp_dir: Path) -> Path:
    """Keep the experiment file beside its results (``raygan report`` reads it),
    verbatim, plus its name when that came from the file's own name."""
    text = Path(exp.path).read_text()
    doc = yaml.safe_load(text)
    if not doc.get("name") and not (doc.get("output") or {}).get("name"):
        text = (f"name: {exp.name}\n" + text if not text.lstrip().startswith("{")
                else yaml.safe_dump({"name": exp.name, **doc}, sort_keys=False))
    exp_dir.mkdir(parents=True, exist_ok=True)
    out, tmp = exp_dir / EXPERIMENT_COPY, exp_dir / f".{EXPERIMENT_COPY}.tmp"
    tmp.write_text(f"# {exp.path}, as run by raygan tune\n" + text, encoding="utf-8")
    os.replace(tmp, out)
    return out


def write_summary(results, exp: Experiment, exp_dir: Path, rows: list[dict] | None = None) -> list[dict]:
    """The ranked table, results.csv, best_config.yaml (...); ``rows``: a ranking made already
    (the confirmation stage's), else ``ranked_rows`` of the results."""
    from raygan.stats import SEM

    rows = ranked_rows(results, exp) if rows is None else rows
    cols = [c for c in dict.fromkeys(k for r in rows for k in r if not k.startswith("_"))]
    _write_csv(exp_dir / "results.csv", rows, cols)
    shown = [c for c in cols if not c.endswith(SEM) and "/" not in c]  # sem beside its value; seeds in the csv
    _print_table([_with_sem(r, shown) for r in rows], shown)
    summary = noise_summary(rows, exp)
    if summary:
        print("\n" + summary)
    if not (exp_dir / EXPERIMENT_COPY).exists():  # run_search keeps it from the start
        save_experiment(exp, exp_dir)
    if exp.search.multi_objective:
        front = [r for r in rows if r["pareto_rank"] == 1]
        _write_csv(exp_dir / "pareto.csv", front, cols)
        names = " and ".join(f"{m} ({d})" for m, d in exp.search.objectives)
        print(f"\nraygan: Pareto front of {names}: {len(front)} trial(s) "
              f"({', '.join(r['trial'] for r in front)}) in {exp_dir / 'pareto.csv'}")
    if "method.name" in exp.space:
        write_comparison(rows, exp_dir)
    best = rows[0] if rows and rows[0]["_ranked"] else None
    if best is not None:
        metric = exp.search.objectives[0][0]
        how = (f"first of the Pareto front by {metric}" if exp.search.multi_objective
               else f"best trial by {exp.search.describe()}")

        kept = best_checkpoint(best["_path"]) if exp.search.scope == "best" and best["_path"] else None
        if kept is None and exp.search.scope == "best" and best["_path"] and seed_checkpoints(best["_path"]):
            kept = (f"{len(seed_checkpoints(best['_path']))} seeds' states, "
                    f"{Path(best['_path']) / SEED_FOLDER.format('<i>') / BEST_FOLDER / STATE_FILE}")
        where = (f"\n# its best evaluation, step {best.get('step')}: {kept} (train.steps {best.get('step')} "
                 "stops this run there)" if kept else "")
        tied = [r["trial"] for r in rows if r.get(NOISE, "").startswith("tied")]
        if tied:
            where += f"\n# tied with it within seed noise: trial(s) {', '.join(tied)} (results.csv, {NOISE})"
        elif not best.get(NOISE):
            where += "\n# one seed per configuration: not tested against seed noise (search.repeats)"
        (exp_dir / "best_config.yaml").write_text(trial_yaml(
            exp, best["_params"], f"{exp.name}_best",
            f"{how}, of {exp.path}: {metric} = {_fmt(best.get(metric))} (trial {best['trial']}){where}"))
    return rows


@dataclass
class TrialRecord:
    """One trial read back from its folder; has what ``ranked_rows`` reads of a Tune Result."""
    path: str
    config: dict
    metrics: dict  # the last report
    error: str | None
    history: list[dict] = field(default_factory=list)  # every report, in order


def read_trials(exp_dir: Path) -> list[TrialRecord]:
    """Tune's per-trial files: params.json (the sampled knobs), result.json (one
    JSON report per line), error.txt (appended at each failure; one after the
    last report is the trial's status)."""
    out = []
    for d in trial_folders(exp_dir):
        params_file, result_file, error_file = d / PARAMS_FILE, d / RESULT_FILE, d / ERROR_FILE
        if not params_file.is_file():
            continue
        history = []
        if result_file.is_file():
            history = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        error = None
        if error_file.is_file() and (not history or error_file.stat().st_mtime >= result_file.stat().st_mtime):
            error = error_file.read_text().strip() or "failed"
        metrics = dict(history[-1]) if history else {"trial_id": d.name.split("_")[2]}
        out.append(TrialRecord(str(d), json.loads(params_file.read_text()), metrics, error, history))
    return out
