"""`raygan tune` killed (SIGKILL) mid-search, its results folder moved, then `raygan tune
--resume` on the moved folder: finished trials are kept as they were, the interrupted one
continues from its last checkpoint, in the same Optuna study (the moved folder's)."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from optuna_study import check_trials, read_study
from ray_processes import kill_leftovers

from raygan.cli import main
from raygan.search_space import load_experiment

pytest.importorskip("ray")

SPACE = """
name: resumed
method: {name: dcl, lambda1: {loguniform: [0.5, 5.0]}}
train: {steps: 20, batch_size: 2, eval_every: 4, eval_samples: 20, torch_threads: 1}
search: {num_samples: 2, max_concurrent: 1}
scaling: {cpus_per_worker: 0.5}
"""


def _trial_states(exp_dir) -> list:
    """(trial json, run metadata json) of every trial, as the last saved experiment state has them."""
    files = sorted(exp_dir.glob("experiment_state-*.json"))
    try:
        return json.loads(files[-1].read_text())["trial_data"] if files else []
    except ValueError:  # caught while being written
        return []


def _statuses(exp_dir) -> dict:
    """trial id -> status."""
    return {t["trial_id"]: t["status"] for t in (json.loads(entry[0]) for entry in _trial_states(exp_dir))}


def _trial_dir(exp_dir, trial_id):
    (d,) = exp_dir.glob(f"_trial_{trial_id}_*")
    return d


def _has_checkpoint(exp_dir, trial_id) -> bool:
    """Whether the saved state knows a checkpoint of the trial (what a resumed trial restarts from).
    One-worker trials train in their own Tune process and checkpoint to Tune."""
    from ray.tune.trainable.metadata import _TrainingRunMetadata

    for trial, metadata in _trial_states(exp_dir):
        if json.loads(trial)["trial_id"] == trial_id:
            manager = _TrainingRunMetadata.from_json_state(metadata).checkpoint_manager
            return manager is not None and manager.latest_checkpoint_result is not None
    return False


def _trace(trial_dir):
    return [json.loads(line) for line in open(trial_dir / "worker_trace" / "rank0.jsonl")]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_killed_tune_driver_resumes_from_a_moved_folder_without_rerunning_finished_trials(tmp_path, capsys, ray_tmp):
    import optuna

    from raygan.orchestrate.diagnostics import TRACE_ENV
    from raygan.orchestrate.study import STUDY_FILE

    space = tmp_path / "resumed.yaml"
    space.write_text(textwrap.dedent(SPACE))
    out, moved = tmp_path / "out", tmp_path / "moved"
    exp_dir = out / "resumed"

    # --resume with nothing to resume: a one-line error, nothing written
    assert main(["tune", str(space), "--output", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no search to resume" in err and not out.exists()

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), RAY_TRAIN_HEALTH_CHECK_INTERVAL_S="0.2", **{TRACE_ENV: "1"})
    cmd = [sys.executable, "-m", "raygan.cli", "tune", str(space)]
    try:
        driver = subprocess.Popen(cmd + ["--output", str(out)], env=env, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Kill once one trial has finished (in the saved state) and the other has a checkpoint.
        deadline = time.time() + 400
        while True:
            assert driver.poll() is None, "the search ended before it could be interrupted"
            assert time.time() < deadline, "no trial finished in time"
            states = _statuses(exp_dir)
            done = [t for t, s in states.items() if s == "TERMINATED"]
            running = [t for t, s in states.items() if s == "RUNNING"]
            if done and running and _has_checkpoint(exp_dir, running[0]):
                break
            time.sleep(0.2)
        seen = time.time()  # the searcher's state is saved with the experiment's, every 2 s
        while not any(f.stat().st_mtime > seen for f in exp_dir.glob("searcher-state-*.pkl")):
            assert time.time() < seen + 10, "the searcher's state was not saved"
            time.sleep(0.1)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        time.sleep(1)
        kill_leftovers(ray_tmp)
        (finished,), (interrupted,) = done, running
        before = (_trial_dir(exp_dir, finished) / "result.json").read_bytes()
        assert not (exp_dir / "results.csv").exists()
        study_before = read_study(exp_dir, "resumed")
        assert sorted(t.state.name for t in study_before.trials) == ["COMPLETE", "RUNNING"]

        shutil.move(str(out), str(moved))
        exp_dir = moved / "resumed"
        resumed = subprocess.run(cmd + ["--output", str(moved), "--resume"], env=env, capture_output=True,
                                 text=True, timeout=400)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert "raygan: Ray: a new local instance" in resumed.stdout
    finally:
        kill_leftovers(ray_tmp)

    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    assert sorted(r["trial"] for r in rows) == sorted([finished, interrupted])  # the same two trials, no new ones
    assert all(r["status"] == "ok" for r in rows)  # (step: each trial's best evaluation, scope best)
    # the finished trial was not run again: its results are untouched, its worker started once
    assert (_trial_dir(exp_dir, finished) / "result.json").read_bytes() == before
    assert [e["event"] for e in _trace(_trial_dir(exp_dir, finished))].count("start") == 1
    # the interrupted one continued from a checkpoint its first run had reported
    events = _trace(_trial_dir(exp_dir, interrupted))
    starts = [e for e in events if e["event"] == "start"]
    reported = [e["step"] for e in events if e["event"] == "report"]
    assert len(starts) == 2 and starts[0]["restored_step"] is None
    assert starts[1]["restored_step"] in reported and 2 <= starts[1]["restored_step"] < 20
    assert reported[-1] == 20
    # ... and trained on from it: the second run's reports continue after the restored step (a
    # restart that ignored the checkpoint would report step 0 again)
    second = [e["step"] for e in events[events.index(starts[1]):] if e["event"] == "report"]
    assert second and second[0] > starts[1]["restored_step"] and second == sorted(second), second

    # the same Optuna study continued, the moved folder's; nothing written where the folder was
    assert not out.exists()
    study = read_study(exp_dir, "resumed")
    assert [t.number for t in study.trials] == [t.number for t in study_before.trials]
    done = next(t for t in study_before.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert study.trials[done.number].values == done.values  # the finished trial, as it was
    assert study.trials[done.number].datetime_complete == done.datetime_complete
    check_trials(study, load_experiment(space), exp_dir)
    assert (exp_dir / STUDY_FILE).is_file()
