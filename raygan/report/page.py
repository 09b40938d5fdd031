"""``raygan report RUN_DIR``: one self-contained HTML page of a search.

It reads the run back from Tune's per-trial files (results.read_trials) and the
experiment file kept beside them, and writes RUN_DIR/report/: index.html with
every picture embedded (data URIs), the same pictures as PNGs, and configs/,
one experiment file per trial. A second report replaces the files the first
one wrote (listed in report/.raygan-report) and nothing else.
"""
from __future__ import annotations

import base64
import html
import warnings
from pathlib import Path

from raygan.errors import UserError
from raygan.orchestrate.confirm import confirmed, read_confirmation
from raygan.orchestrate.results import _fmt, ranked_rows, read_trials, trial_yaml
from raygan.pareto import finite, pareto_ranks
from raygan.runs import BEST_FOLDER, BEST_SAMPLES, EXPERIMENT_COPY, PARAMS_FILE, TRIAL_PREFIX

MANIFEST = ".raygan-report"
SAMPLE_GRIDS = 4  # best trials whose samples are shown


def load_run(run_dir: Path, space: str | None):
    """(experiment, trial records) of a results folder, or a one-line UserError."""
    from raygan.search_space import load_experiment

    if not run_dir.is_dir():
        raise UserError(run_dir, "no such folder (expected a raygan tune results folder, e.g. raygan_results/dcl)")
    trials = read_trials(run_dir)
    if not trials:
        raise UserError(run_dir, f"not a raygan tune results folder (no {TRIAL_PREFIX}*/{PARAMS_FILE} in it)")
    path = Path(space) if space else run_dir / EXPERIMENT_COPY
    if not space and not path.is_file():
        raise UserError(run_dir, f"no {EXPERIMENT_COPY} (a run from an older raygan): name its experiment file "
                                 "with --space")
    exp = load_experiment(path)
    extra = sorted({k for t in trials for k in t.config} - set(exp.space))
    if extra:
        raise UserError(path, f"the trials in {run_dir} searched {', '.join(extra)}, which this file does not "
                              "(expected the experiment file of that run)")
    return exp, trials


def importances(rows: list[dict], exp) -> tuple[dict, str]:
    """Optuna's hyperparameter importance per objective ({objective: {knob:
    importance}}), from a study rebuilt from the finished trials; or a note why not."""
    import optuna

    from raygan.orchestrate.distributions import to_optuna

    objectives = exp.search.objectives
    done = [r for r in rows if r["status"] == "ok" and all(finite(r.get(m)) for m, _ in objectives)]
    knobs = {k: d for k, d in exp.space.items() if len({str(v) for v in d.args}) > 1}  # a 1-option choice is no knob
    if len(done) < 2 or not knobs:
        return {}, (f"Hyperparameter importance needs at least 2 finished trials and a searched knob; "
                    f"this run has {len(done)} finished trial(s).")

    dists = {k: to_optuna(d) for k, d in knobs.items()}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize" if m == "min" else "maximize" for _, m in objectives])
    for r in done:
        study.add_trial(optuna.trial.create_trial(params={k: r["_params"][k] for k in dists},
                                                  distributions=dists, values=[r[m] for m, _ in objectives]))
    out = {}
    for i, (metric, mode) in enumerate(objectives):
        sign = 1.0 if mode == "min" else -1.0  # Optuna's default evaluator (PED-ANOVA) rewards low targets
        with warnings.catch_warnings():  # its reminder that it ranks low targets: the sign above sees to that
            warnings.simplefilter("ignore", UserWarning)
            out[metric] = optuna.importance.get_param_importances(study, target=lambda t, i=i, s=sign: s * t.values[i])
    return out, (f"Optuna's get_param_importances (its default evaluator, PED-ANOVA) over {len(done)} finished "
                 "trials, normalised to sum to 1 per objective; with few trials it is a rough guide.")


def _axes(exp, rows) -> tuple[str, str, str] | None:
    """(x, y, caption) of the trade-off plot: the first two objectives of a
    Pareto search, else diversity vs realism when the family reports both."""
    objectives = exp.search.objectives
    if len(objectives) > 1:
        (x, _), (y, _) = objectives[:2]
        more = f" (objectives beyond these two: {', '.join(m for m, _ in objectives[2:])})" if objectives[2:] else ""
        return x, y, f"Pareto front of {exp.search.describe().removesuffix(', Pareto front')}{more}"
    keys = list(dict.fromkeys(k for r in rows for k in r))
    diversity = next((k for k in keys if k == "diversity" or k.startswith("intra_")), None)
    if diversity and "realism" in keys:
        return diversity, "realism", (f"realism vs diversity; ringed: the trials no other trial beats on both "
                                      f"(the search itself optimised {exp.search.describe()})")
    return None


def _trade_off(exp, rows):
    from raygan.report.plots import scatter_front

    axes = _axes(exp, rows)
    if axes is None:
        return None, "No trade-off plot: this run has neither two objectives nor realism and diversity metrics."
    x, y, caption = axes
    pts = [r for r in rows if r["status"] == "ok" and finite(r.get(x)) and finite(r.get(y))]
    if not pts:
        return None, f"No trade-off plot: no finished trial reported both {x} and {y}."
    if exp.search.multi_objective and not exp.search.objectives[2:]:
        front = [r.get("pareto_rank") == 1 for r in pts]
    else:  # both maximised: realism and diversity (or a 3-objective front seen in two)
        modes = [dict(exp.search.objectives).get(k, "max") for k in (x, y)]
        front = [k == 1 for k in pareto_ranks([[r[x], r[y]] for r in pts], modes)]
    points = [{x: r[x], y: r[y], "trial": r["trial"], "method": _method(r, exp), "front": f}
              for r, f in zip(pts, front)]
    return scatter_front(points, x, y), caption


def _seed_ranking(exp, rows):
    from raygan.report.plots import seed_ranking
    from raygan.stats import seed_values

    metric = exp.search.objectives[0][0]
    ranked = [r for r in rows if r["_ranked"] and finite(r.get(metric))]
    if exp.search.multi_objective:
        return None, "No ranking over seeds: a Pareto search ranks by its front (above and below)."
    if not any(len(seed_values(r, metric)) > 1 for r in ranked):
        return None, ("No ranking over seeds: one seed per configuration, so the ranking cannot tell real "
                      "differences from seed noise (set search.repeats, e.g. 3).")
    confirmed_note = (" Pooled over the search's seeds and the confirmation stage's fresh ones."
                      if any("confirmed_seeds" in r for r in ranked) else "")
    caption = (f"Each configuration's {metric} on each seed and the seeds' mean ± standard error; "
               f"red: worse than rank 1 by Welch's one-sided t-test at {exp.search.tie_alpha}, "
               f"grey: tied with it.{confirmed_note}")
    return seed_ranking(ranked, metric), caption


def _method(row, exp) -> str:
    return str(row["_params"].get("method.name", exp.method))


def _curves(exp, rows, trials):
    from raygan.report.plots import curves

    history = {t.metrics.get("trial_id"): t.history for t in trials}
    keys = list(dict.fromkeys(k for h in history.values() for r in h for k in r))
    wanted = ["realism", *[k for k in keys if k == "diversity" or k.startswith("intra_")],
              *[m for m, _ in exp.search.objectives]]
    metrics = [m for m in dict.fromkeys(wanted) if m in keys]
    if not metrics:
        return None, "No curves: the trials reported none of realism, diversity or the objectives."
    hs = [{"trial": r["trial"], "method": _method(r, exp), "reports": history.get(r["trial"], [])} for r in rows]
    by_method = len({h["method"] for h in hs}) > 1
    points = max((len(h["reports"]) for h in hs), default=0)
    caption = (f"{', '.join(metrics)} at each evaluation (every train.eval_every = "
               f"{exp.trial_config['train'].get('eval_every', '?')} steps; up to {points} points per trial), "
               f"one line per trial, coloured by {'method' if by_method else 'trial'}.")
    return curves(hs, metrics, by_method), caption


def _knobs(exp, rows):
    from raygan.report.plots import knob_scatter

    scale = {"loguniform": "log", "uniform": "linear", "int": "linear"}
    knobs = {k: scale.get(d.kind, "categorical") for k, d in exp.space.items()}
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None, "No per-knob plots: no trial finished."
    keys = list(dict.fromkeys(k for r in ok for k in r))
    metrics = [m for m, _ in exp.search.objectives]
    metrics += [k for k in ("realism", next((k for k in keys if k == "diversity" or k.startswith("intra_")), ""))
                if k in keys]
    return (knob_scatter(ok, knobs, list(dict.fromkeys(metrics))),
            "Each searched knob against the objectives (and realism and diversity), one point per finished trial.")


def _img(png: bytes, alt: str) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode()}">')


def _table(rows: list[dict]) -> str:
    cols = [c for c in dict.fromkeys(k for r in rows for k in r) if not c.startswith("_")]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in ["#", *cols])
    body = []
    for i, r in enumerate(rows, 1):
        cells = [str(i)] + [html.escape(_fmt(r.get(c, ""))) for c in cols]
        cells[1] = f'<a href="#trial-{html.escape(str(r["trial"]))}">{cells[1]}</a>'
        front = ' class="front"' if r.get("pareto_rank") == 1 else ""
        body.append(f"<tr{front}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.82em; } td, th { padding: 3px 8px; border-bottom: 1px solid #eee; }
th { text-align: left; background: #f4f4f4; } tr.front td { background: #fff7d6; }
img { max-width: 100%; border: 1px solid #eee; } figure { margin: 1em 0; } figcaption { color: #555; font-size: 0.9em; }
pre, code { background: #f6f6f6; font-size: 0.85em; } pre { padding: 0.6em; overflow-x: auto; }
.grids { display: flex; flex-wrap: wrap; gap: 1em; } .grids figure { margin: 0; max-width: 48%; }
"""


def write_report(run_dir, space: str | None = None) -> Path:
    """Write RUN_DIR/report/index.html (+ PNGs and configs/); returns the page."""
    run_dir = Path(run_dir).expanduser().resolve()
    exp, trials = load_run(run_dir, space)
    out = run_dir / "report"
    previous = _own_previous_report(out)
    rows = ranked_rows(trials, exp)
    if record := read_confirmation(run_dir):  # the confirmation stage's order and pooled seeds
        rows = confirmed(exp, rows, record)
    files: dict[str, bytes] = {}  # report-relative path -> content
    sections = [_trials_section(exp, rows)]
    imp, note = importances(rows, exp)
    if imp:
        from raygan.report.plots import importance_bars

        imp = importance_bars(imp)
    for key, title, (png, caption) in (
            ("seeds", "Ranking over seeds", _seed_ranking(exp, rows)),
            ("pareto", "Pareto front" if exp.search.multi_objective else "Trade-off", _trade_off(exp, rows)),
            ("curves", "Adaptation curves", _curves(exp, rows, trials)),
            ("importance", "Hyperparameter importance", (imp or None, note)),
            ("knobs", "Each knob against the objectives", _knobs(exp, rows))):
        if png:
            files[f"{key}.png"] = png
        body = (f"<figure>{_img(png, title)}<figcaption>{html.escape(caption)}</figcaption></figure>" if png
                else f"<p>{html.escape(caption)}</p>")
        sections.append(f'<h2 id="{key}">{html.escape(title)}</h2>{body}')
    sections.append(_samples_section(rows, files))
    experiment = Path(space).resolve() if space else run_dir / EXPERIMENT_COPY
    sections.append(_reproduce_section(exp, rows, run_dir, experiment, files))
    name = html.escape(run_dir.name)
    page = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="generator" content="raygan report"><title>raygan report: {name}</title>'
            f"<style>{STYLE}</style></head><body><h1>raygan search '{name}': {html.escape(exp.method)}</h1>"
            f"<p>{html.escape(str(run_dir))}; searched {html.escape(', '.join(exp.space))}.</p>"
            + "".join(sections) + "</body></html>\n")
    files["index.html"] = page.encode()
    _write(out, files, previous)
    return out / "index.html"


def _trials_section(exp, rows) -> str:
    ok = sum(r["status"] == "ok" for r in rows)
    how = " (Pareto rank, then the first objective; highlighted: the front)" if exp.search.multi_objective else ""
    if any("confirmed_seeds" in r for r in rows):
        how += (", in the confirmation stage's order (the top configurations rerun on fresh seeds, "
                "confirmed_seeds seeds each)")
    return (f'<h2 id="trials">Trials, ranked</h2><p>{len(rows)} trials, {ok} finished; ranked by '
            f"{html.escape(exp.search.describe())}{how}. Trial ids link to their configuration.</p>{_table(rows)}")


def _samples_section(rows, files) -> str:
    grids = []
    for i, r in enumerate(rows, 1):
        best = Path(r["_path"] or "") / BEST_FOLDER / BEST_SAMPLES  # scope best: the best evaluation's grid
        png = best if best.is_file() else Path(r["_path"] or "") / "samples.png"
        if r["_ranked"] and png.is_file() and len(grids) < SAMPLE_GRIDS:
            trial = str(r["trial"])
            files[f"samples_{trial}.png"] = png.read_bytes()
            grids.append(f"<figure>{_img(files[f'samples_{trial}.png'], 'samples of trial ' + trial)}"
                         f"<figcaption>#{i} trial {html.escape(trial)}</figcaption></figure>")
    if not grids:
        return '<h2 id="samples">Samples of the best trials</h2><p>No sample grids found.</p>'
    return ('<h2 id="samples">Samples of the best trials</h2><p>Each trial\'s sample grid at the evaluation '
            'it is ranked by (best/samples.png under scope best, else samples.png; the same z in every '
            f'trial).</p><div class="grids">{"".join(grids)}</div>')


def _reproduce_section(exp, rows, run_dir: Path, experiment: Path, files) -> str:
    """The command for the whole search, and per trial its command and experiment file."""
    parts = [f"<p>The whole search, into a new folder: <code>raygan tune {html.escape(str(experiment))} "
             "--output NEW_DIR</code>. One trial: <code>raygan train</code> on its file in "
             "<code>report/configs/</code> (the sampled knobs as constants, the same scaling).</p>"]
    for i, r in enumerate(rows, 1):
        text = trial_yaml(exp, r["_params"], f"{run_dir.name}_{r['trial']}",
                          f"trial {r['trial']} of {run_dir} (#{i}, {r['status']})")
        rel = f"configs/{run_dir.name}_{r['trial']}.yaml"
        files[rel] = text.encode()
        tid = html.escape(str(r["trial"]))
        parts.append(f'<details id="trial-{tid}"><summary>#{i} trial {tid} ({html.escape(r["status"])})</summary>'
                     f"<pre>raygan train {html.escape(str(run_dir / 'report' / rel))}</pre>"
                     f"<pre>{html.escape(text)}</pre></details>")
    return '<h2 id="reproduce">Reproduce</h2>' + "".join(parts)


def _own_previous_report(out: Path) -> set[str]:
    """The files an earlier report wrote; refuses a report/ folder raygan did not write."""
    if not out.exists():
        return set()
    manifest = out / MANIFEST
    if not out.is_dir() or (not manifest.is_file() and any(out.iterdir())):
        raise UserError(out, "exists and was not written by raygan report (move it away to write the report)")
    return set(manifest.read_text().split("\n")) - {""} if manifest.is_file() else set()


def _write(out: Path, files: dict[str, bytes], previous: set[str]) -> None:
    for rel, content in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    for rel in previous - set(files):  # the earlier report's files this one does not rewrite
        stale = out / rel
        if stale.is_file() and out in stale.resolve().parents:
            stale.unlink()
    (out / MANIFEST).write_text("\n".join(sorted(files)) + "\n")
