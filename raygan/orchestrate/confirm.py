"""The confirmation stage (``search.confirm_top: n``), after the search.

The search's best n configurations run again on fresh seeds, round by round, until rank 1 is
separated from the others or the stage's budget (``confirm_rounds``) ends: SMAC's
intensification (raygan.stats.intensify). Each round is one Tune run of the configurations
still in the race (a grid over them), each trained on ``confirm_seeds`` seeds
(orchestrate/replicates.py), in ``<results>/confirm_<round>/``. Round r's seeds start at
train.seed + 1000 r, so none repeats a seed of the search. The confirmed ranking (each
configuration's values pooled over the search's seeds and the fresh ones) is what the final
table, the closing line, best_config.yaml and the report give: the stage's outcome is kept in
``<results>/confirmation.json`` (``read_confirmation``, ``confirmed``).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from raygan import stats
from raygan.pareto import finite

SEED_STRIDE = 1000
CONFIRMATION = "confirmation.json"  # in the experiment folder: {"metric", "order", "pooled"}


def confirm(exp, rows: list[dict], exp_dir: Path) -> list[dict]:
    """Run the stage on ``ranked_rows``' rows; returns them in the confirmed order."""
    s = exp.search
    metric, mode = s.objectives[0]
    top = [r for r in rows if r["_ranked"] and finite(r.get(metric))][: s.confirm_top]
    if len(top) < 2:
        print(f"raygan: confirmation: {len(top)} ranked configuration(s), nothing to confirm", flush=True)
        return rows
    by_trial = {r["trial"]: r for r in top}
    values = {r["trial"]: stats.seed_values(r, metric) or [r[metric]] for r in top}
    print(f"raygan: confirmation: trials {', '.join(by_trial)} on {s.confirm_seeds} fresh seeds a round, "
          f"at most {s.confirm_rounds} round(s)", flush=True)
    order, pooled = stats.intensify(
        values, lambda names, r: _round(exp, [by_trial[n] for n in names], r, exp_dir), mode, s.tie_alpha,
        s.confirm_seeds, s.confirm_rounds, s.statistic, log=lambda line: print(f"raygan: {line}", flush=True))
    record = {"metric": metric, "order": order, "pooled": pooled}
    tmp = exp_dir / f".{CONFIRMATION}.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(exp_dir / CONFIRMATION)
    return confirmed(exp, rows, record)


def read_confirmation(exp_dir: Path) -> dict | None:
    """The stage's outcome, if the experiment ran one."""
    path = Path(exp_dir) / CONFIRMATION
    return json.loads(path.read_text()) if path.is_file() else None


def confirmed(exp, rows: list[dict], record: dict) -> list[dict]:
    """``ranked_rows``' rows in the confirmed order: each confirmed configuration's objective
    pooled over all its seeds (the search's and the stage's), ties marked against the new rank 1."""
    from raygan.orchestrate.results import mark_ties

    s = exp.search
    metric, mode = record["metric"], s.objectives[0][1]
    by_trial = {r["trial"]: r for r in rows}
    out = []
    for name in record["order"]:
        pooled = record["pooled"][name]
        row = {k: v for k, v in by_trial[name].items() if not k.startswith("seed")}
        row[metric], row[metric + stats.SEM] = stats.over_seeds(pooled, s.statistic, mode), stats.sem(pooled)
        row.update({stats.seed_key(i, metric): v for i, v in enumerate(pooled)})
        row["confirmed_seeds"] = len(pooled)
        out.append(row)
    out += [r for r in rows if r["trial"] not in record["order"]]
    mark_ties(out, metric, mode, s.tie_alpha)
    return out


def _round(exp, rows: list[dict], round_: int, exp_dir: Path) -> dict[str, list[float]]:
    """One round: every configuration of ``rows`` on confirm_seeds fresh seeds; their values."""
    import ray
    from ray import tune

    from raygan.orchestrate.train import driver_env
    from raygan.orchestrate.tune import CANDIDATE, _trial, fit_concurrency, trial_resources
    from raygan.train.best import best_of

    s = exp.search
    search = dataclasses.replace(s, repeats=s.confirm_seeds)
    base = json.loads(json.dumps(exp.trial_config))
    base["train"]["seed"] += SEED_STRIDE * (round_ + 1)
    name = f"confirm_{round_ + 1}"
    cpus, gpus = (ray.cluster_resources().get(k, 0) for k in ("CPU", "GPU"))
    trainable = tune.with_resources(
        tune.with_parameters(_trial, base=base, scaling=exp.scaling, exp_dir=str(exp_dir / name), search=search,
                             env=driver_env()),
        trial_resources(exp.scaling, search.repeats))
    tuner = tune.Tuner(
        trainable, param_space={CANDIDATE: tune.grid_search([r["_params"] for r in rows])},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True,
                                    max_concurrent_trials=fit_concurrency(dataclasses.replace(exp, search=search),
                                                                          cpus, gpus)),
        run_config=tune.RunConfig(name=name, storage_path=str(exp_dir), verbose=1))
    metric = s.objectives[0][0]
    key = lambda params: json.dumps(params, sort_keys=True)  # noqa: E731
    trial_of = {key(r["_params"]): r["trial"] for r in rows}
    out = {}
    for result in tuner.fit():
        m = result.metrics or {}
        m = best_of(m) if s.scope == "best" else m
        got = stats.seed_values(m, metric) or ([m[metric]] if finite(m.get(metric)) else [])
        out[trial_of[key(result.config[CANDIDATE])]] = got
    return out
