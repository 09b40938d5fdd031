"""The Optuna study of a search, kept in SQLite in its results folder (STUDY_FILE).

``optuna-dashboard sqlite:///<output.dir>/<name>/optuna.db`` opens it during the search
or after, and ``raygan tune --resume`` continues the same study. Each Optuna trial
carries its Tune trial's id (user attribute ``tune_trial_id``: the ``_trial_<id>_*``
folder, the ``trial`` column of results.csv).

Tune pickles the searcher with its storage (tuner.pkl, searcher-state-*.pkl). Optuna's
RDBStorage reconnects on unpickling, to the absolute path it was made with: --resume of
a moved folder would fail (that path is gone) and of a copied one would write into the
original's study. StudyStorage connects when first used instead, to the folder being
resumed when it was saved elsewhere (``resume_study_in``).
"""
from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import ClassVar

import optuna
from ray.tune.search.optuna import OptunaSearch

from raygan.errors import UserError

STUDY_FILE = "optuna.db"  # the Optuna study of a search, in its results folder (SQLite; optuna-dashboard)
TUNE_TRIAL_ATTR = "tune_trial_id"
_LIVE = ("engine", "scoped_session", "_version_manager")  # what RDBStorage builds when it connects


def study_url(exp_dir) -> str:
    return f"sqlite:///{Path(exp_dir).expanduser().resolve() / STUDY_FILE}"


class StudyStorage(optuna.storages.RDBStorage):
    """RDBStorage that, once unpickled, connects on first use: to the URL it was made
    with, or where ``moved`` says that folder's study is now."""

    moved: ClassVar[dict[str, str]] = {}  # the URL a searcher was saved with -> the folder's URL now

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for k in _LIVE:
            state.pop(k, None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)  # no connection yet: see __getattr__

    def __getattr__(self, name: str):
        if name not in _LIVE or "url" not in self.__dict__:
            raise AttributeError(name)
        self.url = StudyStorage.moved.get(self.url, self.url)
        optuna.storages.RDBStorage.__setstate__(self, dict(self.__dict__))  # connects (engine, session, schema check)
        return self.__dict__[name]


class StudySearch(OptunaSearch):
    """OptunaSearch whose Optuna trials name their Tune trial (user attribute tune_trial_id),
    and whose diverged trials (NaN objectives) fail in the study: Optuna refuses NaN values,
    and OptunaSearch only logs that, leaving the trial RUNNING there for good."""

    def suggest(self, trial_id: str):
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            ot_trial.set_user_attr(TUNE_TRIAL_ATTR, trial_id)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        from raygan.orchestrate.results import STOPPED

        keys = self.metric if isinstance(self.metric, list) else [self.metric]
        values = [(result or {}).get(k) for k in keys]
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials \
                or not any(isinstance(v, float) and math.isnan(v) for v in values):
            return super().on_trial_complete(trial_id, result=result, error=error)
        if result.get(STOPPED):
            ot_trial.set_user_attr(STOPPED, str(result[STOPPED]))
        self._ot_study.tell(ot_trial, state=optuna.trial.TrialState.FAIL)
        self._completed_trials.add(trial_id)


def resume_study_in(exp, exp_dir: Path) -> None:
    """Before Tuner.restore: the restored searcher continues the study in ``exp_dir``,
    also when the folder was elsewhere when the search began; a one-line error when its
    saved state says the study was kept there and the file is gone."""
    states = sorted(Path(exp_dir).glob("searcher-state-*.pkl"))  # Tune restores the newest
    if not states:
        return
    try:
        with open(states[-1], "rb") as f:
            saved = pickle.load(f)  # OptunaSearch.save: its __dict__; StudyStorage does not connect
    except Exception:  # Tune says what is wrong with it when it reads it
        return
    storage = saved.get("_storage") if isinstance(saved, dict) else None
    if not isinstance(storage, StudyStorage):
        return  # a grid's variant generator, or a search from before its study was kept
    db = Path(exp_dir) / STUDY_FILE
    if not db.is_file():
        raise UserError(exp.path, f"--resume: {db} is missing: the search's Optuna study was kept there "
                                  "(put the file back, or start a new search)")
    StudyStorage.moved[storage.url] = study_url(exp_dir)
