"""End to end: `raygan tune` on a micro space runs Optuna trials through Ray Train."""
import csv
import json
import os
import textwrap

import pytest
import torch

from raygan.cli import main
from raygan.search_space import load_experiment

MICRO = """
name: micro
method:
  name: dcl
  lambda1: {loguniform: [0.5, 5.0]}
  tau: {uniform: [0.05, 0.2]}
train:
  steps: 4
  batch_size: 2
  eval_every: 2
  eval_samples: 20
search:
  num_samples: 3      # > max_concurrent: the third trial runs in a reused Tune actor
  max_concurrent: 2
  searcher: tpe
scaling:
  cpus_per_worker: 0.5
"""


def tune(tmp_path, monkeypatch, capsys, name: str, text: str):
    """`raygan tune` on ``text`` as <tmp>/<name>.yaml; returns (yaml, results dir, stdout)."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / f"{name}.yaml"
    space.write_text(textwrap.dedent(text))
    out = tmp_path / "results"
    assert main(["tune", str(space), "--output", str(out)]) == 0
    return space, out, capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tune_micro_space_end_to_end(local_ray, tmp_path, capsys, monkeypatch):
    space, out, printed = tune(tmp_path, monkeypatch, capsys, "micro", MICRO)
    exp_dir = out / "micro"
    assert f"tensorboard --logdir {exp_dir}" in printed

    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    for r in rows:  # Optuna sampled inside the bounds; metrics came back from the trials
        assert 0.5 <= float(r["method.lambda1"]) <= 5.0 and 0.05 <= float(r["method.tau"]) <= 0.2
        assert 0.0 <= float(r["realism"]) <= 1.0 and float(r["diversity"]) >= 0
        # search.scope best (the default): the row is the trial's best evaluation after step 0
        (folder,) = exp_dir.glob(f"_trial_{r['trial']}_*")
        history = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        trained = [h for h in history if h["step"] > 0]
        best = min(trained, key=lambda h: h["fd_shapesnet"])
        assert (float(r["fd_shapesnet"]), int(r["step"])) == (pytest.approx(best["fd_shapesnet"]), best["step"])
        assert (folder / "best" / "samples.png").is_file()
        kept = torch.load(folder / "best" / "state.pt", weights_only=True)  # the state of that evaluation
        (same,) = [c for c in folder.glob("checkpoint_*/state.pt")
                   if torch.load(c, weights_only=True)["step"] == best["step"]]
        theirs = torch.load(same, weights_only=True)["g_ema"]
        assert kept["step"] == best["step"] and all(torch.equal(v, theirs[k]) for k, v in kept["g_ema"].items())
    fds = [float(r["fd_shapesnet"]) for r in rows]
    assert fds == sorted(fds)  # ranked, best (lowest) first

    best = load_experiment(exp_dir / "best_config.yaml")  # a runnable experiment file
    assert best.trial_config["method"]["lambda1"] == pytest.approx(float(rows[0]["method.lambda1"]))

    states = [f for f in os.listdir(exp_dir) if f.startswith("searcher-state")]
    assert states and b"optuna" in (exp_dir / states[0]).read_bytes().lower()

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trial_dirs = [p for p in exp_dir.iterdir() if p.is_dir() and p.name.startswith("_trial")]
    assert len(trial_dirs) == 3
    # one worker: every trial trained in its own Tune process (checkpoints in its folder), no Ray Train run
    assert not (exp_dir / "_train").exists() and all(list(d.glob("checkpoint_*/state.pt")) for d in trial_dirs)
    for d in trial_dirs:
        acc = EventAccumulator(str(d), size_guidance={"images": 0})
        acc.Reload()
        images = acc.Images("samples/source_vs_adapted")
        assert [i.step for i in images] == [0, 2, 4]  # the source first (step 0), then every evaluation
        assert "fd_shapesnet" in acc.Tags()["scalars"]
        assert (d / "samples.png").stat().st_size > 0

    # Running again does not overwrite the finished experiment.
    assert main(["tune", str(space), "--output", str(out)]) == 2
    assert "already exist" in capsys.readouterr().err


GRID = """
name: grid
method:
  name: {grid: [freezed, cdc]}
train:
  steps: 2
  batch_size: 2
  eval_every: 2
  eval_samples: 20
  seed: {grid: [0, 1]}
search:
  num_samples: 1
  max_concurrent: 2
scaling:
  cpus_per_worker: 0.5
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_method_grid_gives_the_comparison_table(local_ray, tmp_path, capsys, monkeypatch):
    _, out, printed = tune(tmp_path, monkeypatch, capsys, "grid", GRID)
    assert "4 trials (grid of 4 x 1)" in printed and "comparison (mean ± std over seeds" in printed
    rows = list(csv.DictReader(open(out / "grid" / "comparison.csv")))
    assert sorted((r["method"], r["seed"]) for r in rows) == [("cdc", "0"), ("cdc", "1"),
                                                              ("freezed", "0"), ("freezed", "1")]
    for r in rows:
        assert r["status"] == "ok" and 0.0 <= float(r["scs_sobel"]) <= 1.0 and float(r["fd_shapesnet"]) > 0
    table = printed[printed.index("comparison (mean"):]
    assert all(m in table for m in ("freezed", "cdc")) and "±" in table
    assert (out / "grid" / "comparison.png").stat().st_size > 0


STREAMED = """
name: streamed
method: {name: semipaired, lambda_cyc: {loguniform: [0.5, 2.0]}}
data: {dataset: packed, root: PACKED, shuffle_buffer: 16, in_memory_mib: 0}   # streamed from the shards
model: {g_base: 8, d_base: 8, z_dim: 8}
train: {steps: 4, batch_size: 4, eval_every: 2, eval_samples: 40}
search: {num_samples: 2, metric: miou_segnet, mode: max, max_concurrent: 2}
scaling: {cpus_per_worker: 0.6}   # 2 trials x 0.6 would leave less than the CPU kept for Ray Data
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_semipaired_search_streams_packed_unpaired_sets(local_ray, tmp_path, capsys, monkeypatch):
    packed = tmp_path / "packed"
    assert main(["data", "pack", "scenes", str(packed), "--n", "240", "--ratio", "0.1"]) == 0
    _, out, printed = tune(tmp_path, monkeypatch, capsys, "streamed", STREAMED.replace("PACKED", str(packed)))
    assert "1 trial(s) at a time fit 2 CPUs" in printed  # one CPU is left to Ray Data's read tasks
    rows = list(csv.DictReader(open(out / "streamed" / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert 0.0 <= float(r["miou_segnet"]) <= 1.0 and float(r["fd_segnet"]) > 0
    progress = [json.loads(line) for d in (out / "streamed").glob("_trial_*") for line in open(d / "result.json")]
    assert {p["data/streamed_rows"] for p in progress if p["step"] == 4} == {2 * 4 * 4}  # 4 steps x 2 sets x 4 rows

    # `raygan eval` on a trial folder rebuilds the trial's own evaluation (its sampled knobs,
    # the checkpoint of its best evaluation, best/state.pt: search.scope best)
    trial = min((out / "streamed").glob("_trial_*"))
    reports = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    best = reports[-1]["best/miou_segnet"]
    assert best == pytest.approx(max(r["miou_segnet"] for r in reports if r["step"] > 0))
    assert main(["eval", str(trial), "--samples", "40"]) == 0  # the trial evaluated on 40
    (written,) = trial.rglob("eval_*.json")
    scores = {s["metric"]: s["value"] for s in json.loads(written.read_text())["scores"]}
    assert scores["miou_segnet"] == pytest.approx(best)
