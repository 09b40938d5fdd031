"""The Optuna study of an Optuna-searched run is kept in SQLite in its results folder
(optuna.db): Optuna alone opens it and finds every finished trial with its values, and
`raygan tune --resume` continues the same study (tests/test_resume.py kills and resumes a
search; tests/test_report_e2e.py runs a real search and checks its study)."""
import shutil
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

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
