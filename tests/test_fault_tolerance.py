"""Fault tolerance: a killed Train worker or trial process resumes from its last checkpoint, a
diverged trial stops with its reason while the search goes on (that checkpoints are written
atomically: test_checkpoint.py)."""
import json
import os
import textwrap

import pytest
import torch

ray = pytest.importorskip("ray")

MICRO = """
name: ft
method: {name: dcl}
train: {steps: 6, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}
scaling: {cpus_per_worker: 0.5}
"""


@pytest.fixture(scope="module")
def ray_local(local_ray):
    """The suite's shared instance, with every run of this module traced and its rank 0 killed
    once. Both reach the runs from this process: raygan hands its RAYGAN_* variables to every
    trial and Train worker (orchestrate/train.py driver_env), as to runs on an instance that a
    user started elsewhere. (The instance serves its dashboard, as `raygan tune`'s does: Train's
    PlacementGroupCleaner asks the State API there whether the controller lives; without one, seen
    once under load (#26), it took a live controller for dead and removed the run's placement
    group.)"""
    from raygan.orchestrate.diagnostics import KILL_ENV, TRACE_ENV

    saved = {k: os.environ.get(k) for k in ("RAY_ADDRESS", TRACE_ENV, KILL_ENV)}
    os.environ.pop("RAY_ADDRESS", None)
    # Every run traces what its ranks do, and every run's rank 0 dies (SIGKILL) once, as it is
    # about to report step 4.
    os.environ[TRACE_ENV] = "1"
    os.environ[KILL_ENV] = "4"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _trace(folder, rank=0):
    return [json.loads(line) for line in open(folder / "worker_trace" / f"rank{rank}.jsonl")]


def _attempts(events):
    """Split a rank's trace at each (re)start of its worker process."""
    out = []
    for e in events:
        if e["event"] == "start":
            out.append([])
        out[-1].append(e)
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_killed_worker_resumes_from_its_last_checkpoint(ray_local, tmp_path, monkeypatch):
    from raygan.train.loop import prepare
    from raygan.orchestrate.diagnostics import KILL_ENV
    from raygan.orchestrate.train import fit_trial
    from raygan.runs import STATE_FILE
    from raygan.search_space import load_experiment

    space = tmp_path / "ft.yaml"
    space.write_text(textwrap.dedent(MICRO))
    exp = load_experiment(space)
    assert exp.scaling.max_failures == 2  # the default
    prepare(exp.trial_config, ["dcl"], exp.path)
    assert os.environ[KILL_ENV] == "4"  # the worker dies (SIGKILL) as it is about to report step 4
    log = tmp_path / "log"
    result = fit_trial(exp.trial_config, exp.scaling, name="ft", storage=str(tmp_path / "train"), log_dir=str(log))

    assert result.metrics["step"] == 6
    with result.checkpoint.as_directory() as d:
        assert torch.load(os.path.join(d, STATE_FILE), weights_only=True)["step"] == 6
    first, second = _attempts(_trace(log))
    assert first[0]["restored_step"] is None and second[0]["restored_step"] == 2
    assert first[0]["pid"] != second[0]["pid"]  # a new worker process
    assert [e["step"] for e in first if e["event"] == "report"] == [0, 2]  # killed before reporting 4
    assert [e["step"] for e in second if e["event"] == "report"] == [4, 6]
    # two gradient syncs (D, G) per step: 4 steps before the kill, then steps 3..6 again, not 1..6
    assert [sum(e["event"] == "sync" for e in a) for a in (first, second)] == [8, 8]


DIVERGES = """
name: diverges
method: {name: dcl}
train:
  steps: 4
  batch_size: 2
  eval_every: 2
  eval_samples: 20
  torch_threads: 1
  r1: {grid: [1.0, 1.0e+38]}   # an R1 weight of 1e38 makes D's parameters NaN in the first step
search: {num_samples: 1, max_concurrent: 2}
scaling: {cpus_per_worker: 0.5}
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_diverged_trial_stops_with_its_reason_and_a_killed_one_resumes(ray_local, tmp_path, monkeypatch, capsys):
    import csv
    import re

    from raygan.cli import main
    from raygan.orchestrate.train import STOP_FILE

    space = tmp_path / "diverges.yaml"
    space.write_text(textwrap.dedent(DIVERGES))
    assert main(["tune", str(space), "--output", str(tmp_path / "out")]) == 0  # one trial succeeded
    printed = capsys.readouterr().out
    exp_dir = tmp_path / "out" / "diverges"
    ok, stopped = list(csv.DictReader(open(exp_dir / "results.csv")))  # finished trials rank first
    assert ok["status"] == "ok" and float(ok["train.r1"]) == 1.0 and int(ok["step"]) in (2, 4)  # its best evaluation (scope best)
    assert float(stopped["train.r1"]) == 1e38
    assert re.fullmatch(r"stopped: loss/\w+(, loss/\w+)* became non-finite at step 1", stopped["status"])
    assert stopped["status"] in printed and "Traceback" not in printed
    # not retried: the diverged trial's worker started once, trained to its first evaluation, and left its reason
    folders = {d.name: d for d in exp_dir.glob("_trial_*")}
    (diverged,) = [d for d in folders.values() if (d / STOP_FILE).exists()]
    assert (diverged / STOP_FILE).read_text() == stopped["status"].removeprefix("stopped: ")
    events = _trace(diverged)
    assert [e["event"] for e in events].count("start") == 1
    # the D and G updates of steps 1 and 2: the loss is checked on the device and read at the
    # evaluation of step 2, which names step 1 (train/loop.py LossWatch)
    assert sum(e["event"] == "sync" for e in events) == 4
    # the other trial trains in its own Tune process (one worker, no Ray Train), which died
    # as it was about to report step 4: Tune restarted it from its checkpoint of step 2
    (finished,) = [d for d in folders.values() if d != diverged]
    first, second = _attempts(_trace(finished))
    assert first[0]["restored_step"] is None and second[0]["restored_step"] == 2
    assert [e["step"] for e in first if e["event"] == "report"] == [0, 2]
    assert [e["step"] for e in second if e["event"] == "report"] == [4]
