"""Realism saturation (evaluation/saturation.py), the plateau stopper, diversity_at_saturation."""
import csv
import json
import math
import textwrap

import pytest

from raygan.evaluation.saturation import DIVERSITY_AT_SATURATION, SATURATED_AT, Saturation, saturation_index


def test_rising_then_flat_saturates_where_the_window_has_no_gain():
    realism = [0.0, 0.2, 0.6, 0.9, 0.91, 0.905, 0.912, 0.95]
    # window 3: at index 6 the last three (0.91, 0.905, 0.912) gain 0.012 over the best before (0.9),
    # more than 0.01; at index 7 0.95 is a gain again: never. With tolerance 0.02: index 6.
    assert saturation_index(realism, 3, 0.01, 0.8) is None
    assert saturation_index(realism, 3, 0.02, 0.8) == 6
    assert saturation_index(realism, 2, 0.01, 0.8) == 6  # (0.905, 0.912) vs 0.91 before: +0.002


def test_a_generator_that_never_adapts_never_saturates():
    flat_low = [0.0004, 0.0005, 0.0004, 0.0005, 0.0004, 0.0004]  # the unadapted source: no gain, but no realism
    assert saturation_index(flat_low, 2, 0.01, 0.8) is None
    assert saturation_index(flat_low, 2, 0.01, 0.0) == 2  # without the floor it would count


def test_still_rising_does_not_saturate_and_a_drop_does():
    assert saturation_index([0.5, 0.82, 0.85, 0.88, 0.91, 0.94], 2, 0.01, 0.8) is None
    assert saturation_index([0.5, 0.95, 0.9, 0.85], 2, 0.01, 0.8) == 3  # falling after the peak: saturated


def test_the_stream_records_the_diversity_at_the_saturating_evaluation():
    sat = Saturation(window=2, tolerance=0.01, floor=0.8)
    stream = [(0, 0.0, 0.5), (100, 0.85, 0.3), (200, 0.95, 0.25), (300, 0.951, 0.2), (400, 0.952, 0.1),
              (500, 0.95, 0.05)]
    out = [sat.update(*e) for e in stream]
    # index 3 (step 300): the window (0.95, 0.951) gains 0.101 over 0.85: not yet; index 4 (step 400):
    # (0.951, 0.952) gains 0.002 over 0.95: saturated, and frozen from then on
    assert all(math.isnan(o[DIVERSITY_AT_SATURATION]) and math.isnan(o[SATURATED_AT]) for o in out[:4])
    assert [(o[SATURATED_AT], o[DIVERSITY_AT_SATURATION]) for o in out[4:]] == [(400, 0.1), (400, 0.1)]


def test_the_plateau_stopper_stops_on_the_trials_saturation_step():
    from raygan.orchestrate.stoppers import RealismPlateau

    stop = RealismPlateau()
    assert not stop("t", {SATURATED_AT: float("nan"), "realism": 0.99})
    assert not stop("t", {"realism": 0.99})
    assert stop("t", {SATURATED_AT: 400, "realism": 0.95}) and not stop.stop_all()


PLATEAU = """
name: plateau
method:
  name: dcl
  tau: {uniform: [0.05, 0.2]}
train:
  steps: 8
  batch_size: 2
  eval_every: 2
  eval_samples: 20
eval:
  saturation_window: 1
  saturation_tolerance: 1.0     # any change counts as no gain: saturated at the first trained evaluation
  saturation_realism: 0.0
search:
  num_samples: 2
  max_concurrent: 2
  metric: diversity_at_saturation
  mode: max
  stopper: realism_plateau
scaling:
  cpus_per_worker: 0.5
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_plateau_stopper_ends_trials_and_ranks_by_diversity_at_saturation(local_ray, tmp_path, monkeypatch, capsys):
    from raygan.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / "plateau.yaml"
    space.write_text(textwrap.dedent(PLATEAU))
    assert main(["tune", str(space), "--output", str(tmp_path / "out")]) == 0
    exp_dir = tmp_path / "out" / "plateau"
    rows = list(csv.DictReader(open(exp_dir / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    values = [float(r[DIVERSITY_AT_SATURATION]) for r in rows]
    assert values == sorted(values, reverse=True) and all(v > 0 for v in values)
    for r in rows:
        (folder,) = exp_dir.glob(f"_trial_{r['trial']}_*")
        history = [json.loads(line) for line in (folder / "result.json").read_text().splitlines()]
        assert [h["step"] for h in history] == [0, 2]  # stopped at saturation, 6 of its 8 steps unspent
        assert history[-1][SATURATED_AT] == 2 and history[-1][DIVERSITY_AT_SATURATION] == history[-1]["diversity"]
