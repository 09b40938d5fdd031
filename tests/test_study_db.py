"""The Optuna study of an Optuna-searched run is kept in SQLite in its results folder
(optuna.db): Optuna alone opens it and finds every finished trial with its values, and
`raygan tune --resume` continues the same study."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from ray_processes import kill_leftovers

from raygan.cli import main
from raygan.errors import UserError
from raygan.search_space import load_experiment

optuna = pytest.importorskip("optuna")
pytest.importorskip("ray")

TWO_OBJECTIVES = """
name: mo
method:
  name: dcl
  lambda1: {loguniform: [0.5, 5.0]}
  tau: {uniform: [0.05, 0.2]}
train: {steps: 4, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}
search:
  metric: [fd_shapesnet, realism]
  mode: [min, max]
  num_samples: 3      # > max_concurrent: the third trial is suggested after two were told
  max_concurrent: 2
scaling: {cpus_per_worker: 0.5}
"""

RESUMED = """
name: resumed_study
method: {name: dcl, lambda1: {loguniform: [0.5, 5.0]}}
train: {steps: 16, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}
search: {num_samples: 2, max_concurrent: 1}
scaling: {cpus_per_worker: 0.5}
"""


def _study(exp_dir: Path, name: str):
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


def _check_trials(study, exp, exp_dir: Path) -> None:
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


def test_a_new_search_refuses_a_folder_that_holds_a_study(tmp_path):
    from raygan.orchestrate.study import STUDY_FILE
    from raygan.orchestrate.tune import _searcher

    space = tmp_path / "mo.yaml"
    space.write_text(textwrap.dedent(TWO_OBJECTIVES))
    exp = load_experiment(space)
    _searcher(exp, study_dir=tmp_path / "mo")
    assert (tmp_path / "mo" / STUDY_FILE).is_file()
    with pytest.raises(UserError, match="already holds an Optuna study"):
        _searcher(exp, study_dir=tmp_path / "mo")


def _searcher_on(folder: Path, metric="m", mode="min"):
    from ray import tune

    from raygan.orchestrate.study import StudySearch, StudyStorage, study_url

    folder.mkdir(parents=True, exist_ok=True)
    s = StudySearch(metric=metric, mode=mode, study_name="s", storage=StudyStorage(study_url(folder)))
    s.set_search_properties(None, None, {"p": tune.uniform(0, 1)})
    return s


def test_a_diverged_trial_fails_in_the_study_with_its_reason(tmp_path):
    """Optuna refuses NaN values: without care the trial would stay RUNNING in the study."""
    from raygan.orchestrate.results import STOPPED
    from raygan.orchestrate.study import STUDY_FILE

    for metric, mode in (("m", "min"), (["m", "n"], ["min", "max"])):
        folder = tmp_path / str(len(mode))
        s = _searcher_on(folder, metric, mode)
        s.suggest("ok")
        s.on_trial_complete("ok", {"m": 1.0, "n": 2.0})
        s.suggest("nan")
        s.on_trial_complete("nan", {"m": float("nan"), "n": float("nan"), STOPPED: "loss/d_adv became non-finite"})
        ok, nan = optuna.load_study(study_name="s", storage=f"sqlite:///{folder / STUDY_FILE}").trials
        assert ok.state.name == "COMPLETE" and ok.values == ([1.0] if mode == "min" else [1.0, 2.0])
        assert nan.state.name == "FAIL" and nan.user_attrs[STOPPED] == "loss/d_adv became non-finite"
        assert nan.user_attrs["tune_trial_id"] == "nan"


def test_a_restored_searcher_continues_the_study_of_the_folder_it_is_resumed_in(tmp_path, monkeypatch):
    """Tune pickles the searcher with the db's absolute path: a moved folder's study is the one
    continued, and nothing is written where the folder was; a missing db is a one-line error."""
    from raygan.orchestrate.study import StudySearch, StudyStorage, resume_study_in
    from raygan.orchestrate.study import STUDY_FILE

    monkeypatch.setattr(StudyStorage, "moved", {})
    s = _searcher_on(tmp_path / "a")
    s.suggest("t1")
    s.on_trial_complete("t1", {"m": 1.0})
    s.suggest("t2")  # running when the driver dies
    s.save(str(tmp_path / "a" / "searcher-state-1.pkl"))
    shutil.move(str(tmp_path / "a"), str(tmp_path / "b"))
    exp = SimpleNamespace(path="e.yaml")
    resume_study_in(exp, tmp_path / "b")
    restored = StudySearch(metric="m", mode="min")
    restored.restore(str(tmp_path / "b" / "searcher-state-1.pkl"))
    restored.on_trial_result("t2", {"m": 2.5, "training_iteration": 1})
    restored.on_trial_complete("t2", {"m": 2.0})
    restored.suggest("t3")
    restored.on_trial_complete("t3", {"m": 3.0})
    assert not (tmp_path / "a").exists()
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'b' / STUDY_FILE}").trials
    assert [(t.number, t.state.name, t.values, t.user_attrs["tune_trial_id"]) for t in trials] == [
        (0, "COMPLETE", [1.0], "t1"), (1, "COMPLETE", [2.0], "t2"), (2, "COMPLETE", [3.0], "t3")]
    assert trials[1].intermediate_values == {1: 2.5}

    (tmp_path / "b" / STUDY_FILE).unlink()
    with pytest.raises(UserError, match=f"--resume: {tmp_path / 'b' / STUDY_FILE} is missing"):
        resume_study_in(exp, tmp_path / "b")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_finished_trial_is_in_the_sqlite_study_with_all_its_values(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / "mo.yaml"
    space.write_text(textwrap.dedent(TWO_OBJECTIVES))
    out = tmp_path / "results"
    assert main(["tune", str(space), "--output", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    ray_line = next(i for i, line in enumerate(printed) if line.startswith("raygan: Ray: "))
    assert all(line.startswith("raygan: ") for line in printed[:ray_line])  # before Tune's first output

    exp, exp_dir = load_experiment(space), out / "mo"
    study = _study(exp_dir, "mo")
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert len(study.trials) == 3
    _check_trials(study, exp, exp_dir)


def _statuses(exp_dir: Path) -> dict:
    """trial id -> status, as the last saved experiment state has them."""
    files = sorted(exp_dir.glob("experiment_state-*.json"))
    try:
        data = json.loads(files[-1].read_text())["trial_data"] if files else []
    except ValueError:  # caught while being written
        return {}
    return {t["trial_id"]: t["status"] for t in (json.loads(entry[0]) for entry in data)}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resume_continues_the_same_study_from_a_moved_folder(tmp_path):
    """Killed (SIGKILL) while its second trial runs, then resumed from another folder (the
    results moved): the resumed search completes that trial in the same study, which is
    the moved folder's, and adds no other."""
    from raygan.orchestrate.study import STUDY_FILE

    space = tmp_path / "resumed_study.yaml"
    space.write_text(textwrap.dedent(RESUMED))
    first, moved = tmp_path / "first", tmp_path / "moved"
    ray_tmp = tempfile.mkdtemp(prefix="rg", dir="/tmp")  # short: Ray's socket paths live under it
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=ray_tmp)
    cmd = [sys.executable, "-m", "raygan.cli", "tune", str(space)]
    exp_dir = first / "resumed_study"
    try:
        driver = subprocess.Popen(cmd + ["--output", str(first)], env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 400
        while True:  # the first trial finished and told, the second suggested and running
            assert driver.poll() is None, "the search ended before it could be interrupted"
            assert time.time() < deadline, "no trial finished in time"
            states = _statuses(exp_dir)
            if sorted(states.values()) == ["RUNNING", "TERMINATED"]:
                break
            time.sleep(0.2)
        time.sleep(3)  # the searcher's state is saved with the experiment's, every 2 s
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        time.sleep(1)
        kill_leftovers(ray_tmp)
        before = _study(exp_dir, "resumed_study")
        states = [t.state for t in before.trials]
        assert sorted(s.name for s in states) == ["COMPLETE", "RUNNING"]

        shutil.move(str(first), str(moved))
        exp_dir = moved / "resumed_study"
        resumed = subprocess.run(cmd + ["--output", str(moved), "--resume"], env=env, capture_output=True,
                                 text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "raygan: Ray: a new local instance" in resumed.stdout
    finally:
        kill_leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)

    assert not first.exists()  # nothing written where the folder was
    study = _study(exp_dir, "resumed_study")
    assert len(study.trials) == 2 and [t.number for t in study.trials] == [t.number for t in before.trials]
    done = next(t for t in before.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert study.trials[done.number].values == done.values  # the finished trial, as it was
    assert study.trials[done.number].datetime_complete == done.datetime_complete
    _check_trials(study, load_experiment(space), exp_dir)
    assert (exp_dir / STUDY_FILE).is_file()
