"""The run-folder layout: where `raygan tune` writes each file, and how the other commands
(`raygan eval`, `raygan report`, `--resume`) find them. The one module that spells it.

    <output>/<experiment>/
        experiment.yaml               the experiment as run (EXPERIMENT_COPY)
        _trial_<id>_<knobs>/          one Tune trial: params.json (its sampled knobs),
                                      result.json (one report per line), error.txt,
                                      checkpoint_*/state.pt (a trial with one worker),
                                      best/ (search.scope best: state.pt, samples.png,
                                      evaluations.json), seed_<i>/ (search.repeats: seed i)
        _train/train_<id>/            the Ray Train run of a trial with several workers:
                                      checkpoint_*/state.pt
A checkpoint folder holds ``state.pt`` (the method's state_dict) and ``metrics.json`` (what it
reported). `raygan train --local` writes ``checkpoint.pt`` into its folder.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from raygan.errors import UserError

EXPERIMENT_COPY = "experiment.yaml"
TRIAL_PREFIX = "_trial_"
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
ERROR_FILE = "error.txt"
TRAIN_RUNS = "_train"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"  # beside the state: what a finished run reports again when resumed
LOCAL_CHECKPOINT = "checkpoint.pt"
BEST_FOLDER = "best"
BEST_RECORD = "evaluations.json"
BEST_SAMPLES = "samples.png"
SEED_FOLDER = "seed_{}"


def trial_folders(exp_dir: str | Path) -> list[Path]:
    """An experiment folder's Tune trial folders, in name order."""
    return sorted(p for p in Path(exp_dir).iterdir() if p.is_dir() and p.name.startswith(TRIAL_PREFIX))


def train_run_name(trial_id: str) -> str:
    """The Ray Train run name of a trial with several workers (under TRAIN_RUNS)."""
    return f"train_{trial_id}"


def best_checkpoint(trial_folder: str | Path) -> Path | None:
    """The kept state of a trial's best evaluation, if the trial kept one."""
    path = Path(trial_folder) / BEST_FOLDER / STATE_FILE
    return path if path.is_file() else None


def seed_checkpoints(trial_folder: str | Path) -> list[Path]:
    """A replicated trial's (``search.repeats``) kept states of its best evaluation, one per
    seed (``seed_<i>/best/state.pt``), in seed order; [] for any other folder."""
    out = []
    while (path := Path(trial_folder) / SEED_FOLDER.format(len(out)) / BEST_FOLDER / STATE_FILE).is_file():
        out.append(path)
    return out


def _latest(paths) -> Path | None:
    paths = sorted(paths, key=lambda p: p.parent.name)  # checkpoint_<timestamp>: names sort in time
    return paths[-1] if paths else None


def trial_id(folder: Path) -> str | None:
    """A Tune trial folder's trial id: its first report's, else its name's."""
    result = folder / RESULT_FILE
    if result.is_file():
        for line in result.read_text().splitlines()[:1]:
            try:
                return str(json.loads(line)["trial_id"])
            except (ValueError, KeyError, TypeError):
                pass
    m = re.match(r"_?trial_([0-9a-f]+)_", folder.name)
    return m.group(1) if m else None


def find_checkpoint(path) -> Path:
    """The checkpoint file a path names: a .pt file; a folder holding state.pt or checkpoint.pt
    (``raygan train --local``); a trial's best evaluation (``best/state.pt``, search.scope
    best); else the latest checkpoint_*/state.pt of a Tune trial folder (one worker), of a Ray
    Train run folder (or its ``train/``), or, for a trial with several workers, of its Train
    run in the experiment's ``_train/train_<trial id>/``."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(path, "no such file or folder (expected a checkpoint .pt, a checkpoint_* folder or a trial folder)")
    for name in (STATE_FILE, LOCAL_CHECKPOINT):
        if (p / name).is_file():
            return p / name
    if best_checkpoint(p):
        return best_checkpoint(p)
    found = _latest(p.glob(f"checkpoint_*/{STATE_FILE}")) or _latest(p.glob(f"train/checkpoint_*/{STATE_FILE}"))
    if found is None and (trial := trial_id(p)):
        found = _latest((p.parent / TRAIN_RUNS / train_run_name(trial)).glob(f"checkpoint_*/{STATE_FILE}"))
    if found is None:
        raise UserError(path, f"no checkpoint here (expected {STATE_FILE}, {LOCAL_CHECKPOINT}, checkpoint_*/{STATE_FILE}, "
                              f"or a Tune trial folder with checkpoints under ../{TRAIN_RUNS}/train_<id>/)")
    return found


def trial_folder_of(given: Path, ckpt: Path) -> Path | None:
    """The Tune trial folder behind a trial folder or one of its checkpoints
    (``<trial>/checkpoint_*/state.pt``, or ``<run>/_train/train_<trial id>/checkpoint_*/state.pt``
    for a trial with several workers)."""
    for folder in (given, *ckpt.parents[:2]):
        if (folder / PARAMS_FILE).is_file():
            return folder
    prefix = train_run_name("")
    train = next((p for p in ckpt.parents if p.name.startswith(prefix) and p.parent.name == TRAIN_RUNS), None)
    if train is None:
        return None
    found = sorted(train.parent.parent.glob(f"{TRIAL_PREFIX}{train.name[len(prefix):]}_*/{PARAMS_FILE}"))
    return found[0].parent if found else None


def new_output(given: str | None, folder: Path, stem: str, suffix: str, command: str) -> Path:
    """Where a command writes its result, never over anything: ``given`` (which must not exist),
    else ``<folder>/<stem>_<timestamp><suffix>`` (``-1``, ``-2``, ... when that exists)."""
    if given:
        out = Path(given).expanduser()
        if out.exists():
            raise UserError(out, f"already exists ({command} never overwrites; choose another --out)")
        return out
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, k = folder / f"{stem}_{stamp}{suffix}", 1
    while out.exists():
        out, k = folder / f"{stem}_{stamp}-{k}{suffix}", k + 1
    return out
