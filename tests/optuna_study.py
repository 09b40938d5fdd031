"""What the tests that read a search's Optuna study share: the study, read with Optuna alone,
and the check that every finished Tune trial is in it with its values and knobs."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest


def read_study(exp_dir: Path, name: str):
    """The study, read with Optuna alone (no raygan, no Ray)."""
    from raygan.orchestrate.study import STUDY_FILE

    url = f"sqlite:///{exp_dir / STUDY_FILE}"
    assert optuna.study.get_all_study_names(url) == [name]  # one study, named after the experiment
    return optuna.load_study(study_name=name, storage=url)


def _last_results(exp_dir: Path) -> dict:
    """trial id -> the trial's last result (what Tune gave the searcher when the trial ended)."""
    last = {}
    for f in exp_dir.glob("_trial_*/result.json"):
        lines = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
        last[lines[-1]["trial_id"]] = lines[-1]
    return last


def _searched_keys(exp):
    from raygan.orchestrate.tune import tune_metric

    keys = tune_metric(exp.search)
    return keys if isinstance(keys, list) else [keys]


def check_trials(study, exp, exp_dir: Path) -> None:
    """Every finished Tune trial is in the study, complete, with its values and knobs."""
    from raygan.orchestrate.study import TUNE_TRIAL_ATTR

    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    last = _last_results(exp_dir)
    by_tune = {t.user_attrs[TUNE_TRIAL_ATTR]: t for t in study.trials}
    assert len(by_tune) == len(study.trials)  # one Optuna trial per Tune trial
    assert sorted(by_tune) == sorted(r["trial"] for r in rows) == sorted(last)
    keys = _searched_keys(exp)
    for tune_id, result in last.items():
        t = by_tune[tune_id]
        assert t.state == optuna.trial.TrialState.COMPLETE
        assert t.values == pytest.approx([result[k] for k in keys], rel=1e-12)
        assert t.params == pytest.approx(_flat(result["config"]))  # the knobs the trial ran with
    for r in rows:  # results.csv's knobs and objectives are the study's
        t = by_tune[r["trial"]]
        for name in exp.space:
            assert float(r[name]) == pytest.approx(t.params[name], rel=1e-9)
        assert [float(r[m]) for m, _ in exp.search.objectives] == pytest.approx(t.values, rel=1e-9)


def _flat(config: dict, prefix: str = "") -> dict:
    """Tune's config as OptunaSearch names its parameters (nested keys joined by '/')."""
    out = {}
    for k, v in config.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = v
    return out
