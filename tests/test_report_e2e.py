"""A real two-objective search through Ray Tune + Optuna: its Optuna study kept in SQLite in the
results folder (tests/test_study_db.py: the study's other checks), then `raygan report` on it
(the page itself, on fake runs: test_report.py)."""
import csv
import textwrap

import pytest
from optuna_study import check_trials, read_study

from raygan.cli import main
from raygan.search_space import load_experiment

from test_report import check_page
from test_study_db import TWO_OBJECTIVES


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_two_objective_search_keeps_every_trial_in_its_sqlite_study_and_reports_its_pareto_front(
        local_ray, tmp_path, capsys, monkeypatch):
    import optuna

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    space = tmp_path / "mo.yaml"
    space.write_text(textwrap.dedent(TWO_OBJECTIVES))
    out = tmp_path / "results"
    assert main(["tune", str(space), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    ray_line = next(i for i, line in enumerate(lines) if line.startswith("raygan: Ray: "))
    assert all(line.startswith("raygan: ") for line in lines[:ray_line])  # before Tune's first output
    run = out / "mo"
    assert "optimising fd_shapesnet (min) and realism (max), Pareto front" in printed
    assert f"raygan: raygan report {run}" in printed

    # every finished trial is in the study, with all its values (Optuna alone opens it)
    study = read_study(run, "mo")
    assert study.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert len(study.trials) == 3
    check_trials(study, load_experiment(space), run)

    rows = list(csv.DictReader(open(run / "results.csv")))
    assert len(rows) == 3 and all(r["status"] == "ok" for r in rows)
    front = [r["trial"] for r in csv.DictReader(open(run / "pareto.csv"))]
    assert front == [r["trial"] for r in rows if r["pareto_rank"] == "1"] and front
    ranks = [int(r["pareto_rank"]) for r in rows]
    assert ranks == sorted(ranks) and set(ranks) == set(range(1, max(ranks) + 1))  # ranked, no rank skipped

    assert main(["report", str(run)]) == 0
    page = run / "report" / "index.html"
    assert "up to 3 points per trial" in page.read_text()  # steps 0, 2 and 4 of each trial
    check_page(page, tmp_path, expect_images=4 + 3)  # pareto, curves, importance, knobs + 3 sample grids
