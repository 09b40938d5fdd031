"""`raygan report` of a real two-objective search through Ray Tune + Optuna (the page itself,
on fake runs: test_report.py)."""
import textwrap

import pytest

from raygan.cli import main

from test_report import check_page


MICRO_PARETO = """
name: micro_pareto
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
  metric: [diversity, realism]
  mode: [max, max]
  num_samples: 2     # both at once: importance needs 2 finished trials
  max_concurrent: 2
scaling:
  cpus_per_worker: 0.5
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pareto_search_then_its_report(local_ray, tmp_path, capsys, monkeypatch):
    """`raygan tune` with two objectives through Ray Tune + Optuna, then `raygan report` on it."""
    import csv

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / "micro_pareto.yaml"
    space.write_text(textwrap.dedent(MICRO_PARETO))
    out = tmp_path / "results"
    assert main(["tune", str(space), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    run = out / "micro_pareto"
    assert "optimising diversity (max) and realism (max), Pareto front" in printed
    assert f"raygan: raygan report {run}" in printed
    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    front = [r["trial"] for r in csv.DictReader(open(run / "pareto.csv"))]
    assert front == [r["trial"] for r in rows if r["pareto_rank"] == "1"] and front
    assert all(r["pareto_rank"] in ("1", "2") for r in rows)

    assert main(["report", str(run)]) == 0
    page = run / "report" / "index.html"
    assert "up to 3 points per trial" in page.read_text()  # steps 0, 2 and 4 of each trial
    check_page(page, tmp_path, expect_images=4 + 2)  # pareto, curves, importance, knobs + 2 sample grids
