"""search.repeats: each configuration trained on k seeds; every report is over the seeds."""
import csv
import json
import math
import statistics

import pytest
import torch

from tests.test_tune_e2e import tune

REPEATED = """
name: repeated
method:
  name: dcl
  lambda1: {loguniform: [0.5, 5.0]}
train:
  steps: 4
  batch_size: 2
  eval_every: 2
  eval_samples: 20
search:
  num_samples: 2
  max_concurrent: 1
  searcher: random
  repeats: 2
scaling:
  cpus_per_worker: 0.5
"""


def test_a_trial_reports_its_seeds_mean_and_keeps_every_seed(tmp_path, capsys, monkeypatch):
    space, out, printed = tune(tmp_path, monkeypatch, capsys, "repeated", REPEATED)
    exp_dir = out / "repeated"
    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    for r in rows:
        (folder,) = exp_dir.glob(f"_trial_{r['trial']}_*")
        history = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [h["step"] for h in history] == [0, 2, 4]
        for h in history:  # the reported value is the two seeds' mean, with its standard error
            seeds = [h["seed0/fd_shapesnet"], h["seed1/fd_shapesnet"]]
            assert seeds[0] != seeds[1]  # two seeds, two runs
            assert h["fd_shapesnet"] == pytest.approx(statistics.fmean(seeds))
            assert h["fd_shapesnet/sem"] == pytest.approx(statistics.stdev(seeds) / math.sqrt(2))
        best = min((h for h in history if h["step"] > 0), key=lambda h: h["fd_shapesnet"])
        assert float(r["fd_shapesnet"]) == pytest.approx(best["fd_shapesnet"])
        for i in (0, 1):  # every seed's state at the configuration's best step, and its own logs
            state = torch.load(folder / f"seed_{i}" / "best" / "state.pt", weights_only=True)
            assert state["step"] == best["step"]
            assert list((folder / f"seed_{i}").glob("events.out.tfevents*"))
        assert (folder / "best" / "samples.png").is_file()
    # the ranked table shows each objective's spread, and the closing line says what is within noise
    assert "fd_shapesnet" in printed and " ± " in printed and "2 seeds each" in printed
    assert "seeds' states" in (exp_dir / "best_config.yaml").read_text()


CONFIRMED = REPEATED.replace("name: repeated", "name: confirmed").replace(
    "  repeats: 2\n", "  repeats: 2\n  confirm_top: 2\n  confirm_seeds: 2\n  confirm_rounds: 1\n")


def test_the_confirmation_stage_reruns_the_top_configurations_on_fresh_seeds(tmp_path, capsys, monkeypatch):
    space, out, printed = tune(tmp_path, monkeypatch, capsys, "confirmed", CONFIRMED)
    exp_dir = out / "confirmed"
    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    trials = sorted(exp_dir.glob("confirm_1/_trial_*"))
    assert len(trials) == 2  # both configurations, once each, in the round's own folder
    for folder in trials:
        history = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        state = torch.load(folder / "seed_0" / "best" / "state.pt", weights_only=True)
        assert state["step"] > 0
        assert [h["step"] for h in history] == [0, 2, 4]
    for r in rows:  # each confirmed configuration pools the search's 2 seeds and the round's 2
        assert r["confirmed_seeds"] == "4" and r["seed3/fd_shapesnet"] != ""
        seeds = [float(r[f"seed{i}/fd_shapesnet"]) for i in range(4)]
        assert float(r["fd_shapesnet"]) == pytest.approx(statistics.fmean(seeds))
        assert not set(seeds[:2]) & set(seeds[2:])  # fresh seeds (train.seed + 1000 on), not the search's again
    assert "after the confirmation stage" in printed
