"""search.scope: a trial is ranked by its best evaluation (train/best.py), and that evaluation's
state is the one kept; several objectives pick the trial's Pareto point nearest the ideal."""
import json
import math
import textwrap
from types import SimpleNamespace

import pytest
import torch

from raygan.errors import UserError
from raygan.orchestrate.results import ranked_rows, write_summary
from raygan.pareto import best_index
from raygan.search_space import load_experiment
from raygan.runs import best_checkpoint
from raygan.train.best import BestEvaluation


def test_best_index_one_objective_skips_non_finite_and_takes_the_first_on_ties():
    assert best_index([[3.0], [1.0], [float("nan")], [1.0], [2.0]], ["min"]) == 1
    assert best_index([[3.0], [1.0], [5.0]], ["max"]) == 2
    assert best_index([[float("nan")], [float("inf")]], ["min"]) is None
    assert best_index([], ["min"]) is None


def test_best_index_several_objectives_is_the_front_point_nearest_the_ideal():
    # minimise both. Front: (0, 10), (4, 4), (10, 0); (5, 5) is dominated by (4, 4). Scaled to [0, 1]
    # the front points lie at distances 1, ~0.57, 1 from the ideal (0, 0): (4, 4) is chosen.
    values = [[0, 10], [5, 5], [4, 4], [10, 0]]
    assert best_index(values, ["min", "min"]) == 2
    # maximise the second instead: (0, 10) is best in both, the whole front, chosen whatever the scaling
    assert best_index(values, ["min", "max"]) == 0
    assert best_index([[1, 1], [2, 2]], ["min", "min"]) == 0  # a single front point wins outright


def evaluations(folder, values, objectives=(("fd_shapesnet", "min"),)):
    best = BestEvaluation(list(objectives), folder)
    news = []
    for step, v in values:
        metrics = {"step": step, "fd_shapesnet": v, "realism": step / 1000, "loss/g": 1.0}
        new = best.update(metrics)
        best.save({"step": step, "w": torch.full((2,), float(step))} if new else None)
        news.append(new)
    return best, news


def test_a_peak_is_kept_and_reported_and_the_source_is_never_chosen(tmp_path):
    # the source (step 0) scores best here; it is reported for the curves, never chosen
    best, news = evaluations(tmp_path, [(0, 50.0), (100, 140.0), (200, 110.0), (300, 180.0), (400, 200.0)])
    assert news == [False, True, True, False, False]
    assert best.reported() == {"best/step": 200, "best/fd_shapesnet": 110.0, "best/realism": 0.2}
    state = torch.load(best_checkpoint(tmp_path), weights_only=True)
    assert state["step"] == 200 and state["w"].tolist() == [200.0, 200.0]  # the peak's state, not the last
    again = BestEvaluation([("fd_shapesnet", "min")], tmp_path)  # a restarted trial continues the record
    assert again.best["step"] == 200 and len(again.evaluations) == 4
    assert not again.update({"step": 500, "fd_shapesnet": 120.0}) and again.update({"step": 600, "fd_shapesnet": 90.0})


def test_no_evaluation_yet_reports_nan_objectives(tmp_path):
    best = BestEvaluation([("fd_shapesnet", "min"), ("realism", "max")], tmp_path)
    assert all(math.isnan(v) for v in best.reported().values()) and set(best.reported()) == {
        "best/fd_shapesnet", "best/realism"}


def exp_from(tmp_path, search: str):
    p = tmp_path / "scope.yaml"
    p.write_text(textwrap.dedent(f"""
        name: scope
        method: {{name: dcl, tau: {{uniform: [0.05, 0.1]}}}}
        train: {{steps: 300, eval_every: 100}}
        search: {search}
    """))
    return load_experiment(p)


def trial(tmp_path, name, history, stopped=None):
    """A Tune-like result whose last report carries the best/ keys the trial reported."""
    folder = tmp_path / f"_trial_{name}"
    best, _ = evaluations(folder, history)
    last = {"trial_id": name, "step": history[-1][0], "fd_shapesnet": history[-1][1], **best.reported()}
    if stopped:
        last.update(fd_shapesnet=float("nan"), stopped=stopped)
    return SimpleNamespace(metrics=last, config={"method.tau": 0.07}, error=None, path=str(folder))


def test_a_trial_that_peaks_early_is_ranked_by_its_peak(tmp_path):
    early = [(0, 178.0), (100, 100.0), (200, 190.0), (300, 210.0)]  # best early, then degrades
    steady = [(0, 178.0), (100, 160.0), (200, 150.0), (300, 150.0)]
    results = [trial(tmp_path, "steady", steady), trial(tmp_path, "early", early)]
    best_rows = ranked_rows(results, exp_from(tmp_path, "{metric: fd_shapesnet, mode: min}"))
    assert [(r["trial"], r["fd_shapesnet"], r["step"]) for r in best_rows] == [("early", 100.0, 100),
                                                                             ("steady", 150.0, 200)]
    last_rows = ranked_rows(results, exp_from(tmp_path, "{metric: fd_shapesnet, mode: min, scope: last}"))
    assert [(r["trial"], r["fd_shapesnet"]) for r in last_rows] == [("steady", 150.0), ("early", 210.0)]

    exp = exp_from(tmp_path, "{metric: fd_shapesnet, mode: min}")
    write_summary(results, exp, tmp_path)
    text = (tmp_path / "best_config.yaml").read_text()
    assert "(trial early)" in text and f"step 100: {tmp_path / '_trial_early' / 'best' / 'state.pt'}" in text
    assert torch.load(tmp_path / "_trial_early" / "best" / "state.pt", weights_only=True)["step"] == 100


def test_a_trial_that_diverged_after_its_peak_is_still_ranked_by_it(tmp_path):
    diverged = trial(tmp_path, "diverged", [(100, 90.0), (200, 95.0)], stopped="loss/d became non-finite at step 250")
    ok = trial(tmp_path, "ok", [(100, 120.0), (200, 130.0)])
    rows = ranked_rows([ok, diverged], exp_from(tmp_path, "{metric: fd_shapesnet, mode: min}"))
    assert [r["trial"] for r in rows] == ["diverged", "ok"] and rows[0]["status"].startswith("stopped:")
    rows = ranked_rows([ok, diverged], exp_from(tmp_path, "{metric: fd_shapesnet, mode: min, scope: last}"))
    assert [r["trial"] for r in rows] == ["ok", "diverged"]


def test_raygan_eval_of_a_trial_folder_scores_its_best_checkpoint(tmp_path):
    from raygan.runs import find_checkpoint

    folder = tmp_path / "_trial_x"
    (folder / "checkpoint_000002").mkdir(parents=True)
    (folder / "checkpoint_000002" / "state.pt").write_bytes(b"latest")
    assert find_checkpoint(folder) == folder / "checkpoint_000002" / "state.pt"  # scope last: the latest
    evaluations(folder, [(100, 5.0)])
    assert find_checkpoint(folder) == folder / "best" / "state.pt"


@pytest.mark.parametrize("search, message", [
    ("{scheduler: pbt}", "search.scheduler: pbt explores by itself and cannot be combined with searcher tpe"),
    ("{scheduler: pbt, searcher: nsga2}", "cannot be combined with searcher nsga2"),
    ("{scheduler: pbt, searcher: random, metric: [fd_shapesnet, realism], mode: [min, max]}",
     "search.scheduler: pbt ranks trials by one metric"),
    ("{scheduler: asha, metric: diversity_at_saturation, mode: max}", "cannot compare trials by it; use fifo"),
    ("{scope: first}", "search.scope: expected one of ['best', 'last']"),
])
def test_search_combinations_refused_in_one_line(tmp_path, search, message):
    with pytest.raises(UserError) as e:
        exp_from(tmp_path, search)
    assert message in str(e.value) and "\n" not in str(e.value) and "scope.yaml" in str(e.value)


def test_pbt_mutates_every_knob_and_reads_the_latest_value(tmp_path):
    from ray.tune.schedulers import ASHAScheduler, PopulationBasedTraining

    from raygan.orchestrate.tune import _scheduler, _searcher

    p = tmp_path / "pbt.yaml"
    p.write_text(textwrap.dedent("""
        method: {name: dcl, lambda1: {loguniform: [0.5, 5.0]}, tau: {uniform: [0.05, 0.1]}}
        train: {steps: 300, eval_every: 50, lr: {loguniform: [1.0e-3, 8.0e-3]}}
        search: {scheduler: pbt, searcher: random, perturbation_interval: 3}
    """))
    exp = load_experiment(p)
    pbt = _scheduler(exp)
    assert isinstance(pbt, PopulationBasedTraining) and pbt._perturbation_interval == 150
    assert set(pbt._hyperparam_mutations) == {"method.lambda1", "method.tau", "train.lr"}
    assert pbt._metric == "fd_shapesnet"  # PBT copies the latest checkpoint: it compares latest values
    assert type(_searcher(exp)).__name__ == "BasicVariantGenerator"  # Tune refuses a searcher beside PBT
    asha = _scheduler(exp_from(tmp_path, "{scheduler: asha}"))
    assert isinstance(asha, ASHAScheduler) and asha._metric == "best/fd_shapesnet"  # promoted by its best


def test_a_restored_optimizer_trains_with_the_new_runs_lr():
    from raygan.methods.base import load_optimizer

    w = torch.nn.Parameter(torch.ones(3))
    old = torch.optim.Adam([w], lr=1e-3, betas=(0.0, 0.99))
    w.grad = torch.ones(3)
    old.step()
    new = torch.optim.Adam([w], lr=5e-3, betas=(0.0, 0.99))
    load_optimizer(new, old.state_dict())
    assert new.param_groups[0]["lr"] == 5e-3  # Optimizer.load_state_dict alone would restore 1e-3
    assert torch.equal(new.state[w]["exp_avg"], old.state[w]["exp_avg"])  # the moments came over


def test_best_record_is_plain_json(tmp_path):
    evaluations(tmp_path, [(100, 5.0), (200, 4.0)])
    record = json.loads((tmp_path / "best" / "evaluations.json").read_text())
    assert record["best"]["step"] == 200 and [e["step"] for e in record["evaluations"]] == [100, 200]
    assert all("loss/g" not in e for e in record["evaluations"])  # losses are not evaluations
