"""Seed noise: the seeds' statistic, windows over evaluations, and ties with rank 1 (raygan.stats)."""
import math
import random
import statistics

import pytest

from raygan import stats
from raygan.orchestrate.results import NOISE, mark_ties, noise_summary
from raygan.search_space import load_experiment
from raygan.train.best import BestEvaluation


def test_aggregate_is_the_seeds_mean_with_sem_and_every_seed():
    per_seed = [{"step": 100, "fd": 10.0, "realism": 0.5, "loss/g": 1.0},
                {"step": 100, "fd": 14.0, "realism": 0.7, "loss/g": 3.0}]
    out = stats.aggregate(per_seed, [("fd", "min")])
    assert out["step"] == 100 and out["fd"] == 12.0 and out["realism"] == pytest.approx(0.6)
    assert out["fd/sem"] == pytest.approx(statistics.stdev([10, 14]) / math.sqrt(2))
    assert (out["seed0/fd"], out["seed1/fd"]) == (10.0, 14.0) and out["loss/g"] == 2.0
    assert stats.aggregate(per_seed, [("fd", "min")], "pessimistic")["fd"] == pytest.approx(12 + out["fd/sem"])
    assert stats.aggregate(per_seed, [("realism", "max")], "pessimistic")["realism"] < 0.6
    with pytest.raises(ValueError):  # seeds out of step are a bug, not an average
        stats.aggregate([{"step": 1, "fd": 1.0}, {"step": 2, "fd": 1.0}], [("fd", "min")])
    # a metric one seed has no value for yet (NaN) has none for the configuration
    assert math.isnan(stats.aggregate([{"step": 1, "d": 1.0}, {"step": 1, "d": math.nan}], [])["d"])


def test_a_window_does_not_rank_a_run_by_one_lucky_evaluation():
    spike = [100, 40, 100, 100, 60, 60, 60]  # one lucky evaluation at 40; a steady 60 later
    one, three = BestEvaluation([("fd", "min")], window=1), BestEvaluation([("fd", "min")], window=3)
    for step, v in enumerate(spike, 1):
        one.update({"step": step, "fd": v})
        three.update({"step": step, "fd": v})
    assert (one.best["step"], one.best["fd"]) == (2, 40)
    assert (three.best["step"], three.best["fd"]) == (7, 60)
    # replicated: the window is taken seed by seed, then their statistic
    w = BestEvaluation([("fd", "min")], window=2)
    for step, (a, b) in enumerate([(30, 50), (20, 40), (60, 80)], 1):
        w.update(stats.aggregate([{"step": step, "fd": float(a)}, {"step": step, "fd": float(b)}], [("fd", "min")]))
    assert w.best["step"] == 2 and (w.best["seed0/fd"], w.best["seed1/fd"], w.best["fd"]) == (25, 45, 35)


def rows_for(configs: dict[str, list[float]]) -> list[dict]:
    rows = [{"trial": name, "fd": statistics.fmean(v), "_ranked": True,
             **{stats.seed_key(i, "fd"): x for i, x in enumerate(v)}} for name, v in configs.items()]
    return sorted(rows, key=lambda r: r["fd"])


def test_a_configuration_within_noise_of_rank_1_is_marked_tied():
    rows = rows_for({"a": [100, 110, 90], "b": [105, 120, 95], "c": [200, 210, 190]})
    mark_ties(rows, "fd", "min", 0.05)
    assert [r["trial"] for r in rows] == ["a", "b", "c"]
    assert rows[0][NOISE] == "rank 1" and rows[1][NOISE].startswith("tied") and rows[2][NOISE].startswith("worse")
    one_seed = rows_for({"a": [100], "b": [200]})
    mark_ties(one_seed, "fd", "min", 0.05)
    assert [r[NOISE] for r in one_seed] == ["", ""]  # nothing to test with one seed: not "tied", not "worse"


def test_the_closing_line_says_which_ranks_are_within_noise(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("method: {name: dcl, tau: {uniform: [0.05, 0.2]}}\nsearch: {repeats: 3}\n")
    exp = load_experiment(path)
    rows = rows_for({"a": [100, 110, 90], "b": [105, 120, 95], "c": [103, 111, 99], "d": [300, 310, 290]})
    mark_ties(rows, "fd", "min", 0.05)
    assert "ranks 1-3 are within seed noise" in noise_summary(rows, exp)
    single = rows_for({"a": [100], "b": [200]})
    mark_ties(single, "fd", "min", 0.05)
    assert "cannot tell" in noise_summary(single, exp)


def test_seed_noise_ties_are_calibrated_on_a_synthetic_objective():
    """Equal configurations under known noise are called worse about alpha of the time; a real
    gap of 3 noise sds with 5 seeds is found nearly always."""
    rng = random.Random(0)
    draw = lambda mean: [rng.gauss(mean, 1.0) for _ in range(5)]  # noqa: E731
    false = sum(stats.worse_than(draw(0), draw(0), "min", 0.05)[0] for _ in range(400))
    found = sum(stats.worse_than(draw(0), draw(3), "min", 0.05)[0] for _ in range(200))
    assert false / 400 < 0.1 and found / 200 > 0.9


@pytest.mark.parametrize("text, message", [
    ("search: {repeats: 2}\nscaling: {num_workers: 2}", "not supported"),
    ("search: {repeats: 2}\ntrain: {seed: {grid: [0, 1]}}", "train.seed is already a search dimension"),
    ("search: {window: 3, scope: last}", "search.window"),
    ("search: {statistic: best}", "search.statistic"),
    ("search: {confirm_top: 1}", "confirm_top"),
    ("search: {confirm_top: 2, scheduler: pbt, searcher: random}", "confirm_top"),
])
def test_bad_seed_noise_knobs_are_one_line_errors(tmp_path, text, message):
    from raygan.errors import UserError

    path = tmp_path / "bad.yaml"
    path.write_text("method: {name: dcl, tau: {uniform: [0.05, 0.2]}}\n" + text + "\n")
    with pytest.raises(UserError, match=message) as e:
        load_experiment(path)
    assert "\n" not in str(e.value) and "bad.yaml" in str(e.value)


def test_the_report_curves_shade_a_replicated_trials_seed_range():
    """The curves of a trial with per-seed values differ from the same means drawn alone."""
    from raygan.report.plots import curves

    reports = [stats.aggregate([{"step": s, "fd": 100.0 - s}, {"step": s, "fd": 140.0 - s}], [("fd", "min")])
               for s in (0, 10, 20)]
    means_only = [{"step": r["step"], "fd": r["fd"]} for r in reports]
    with_seeds = curves([{"trial": "t", "method": "dcl", "reports": reports}], ["fd"], by_method=False)
    without = curves([{"trial": "t", "method": "dcl", "reports": means_only}], ["fd"], by_method=False)
    assert with_seeds != without


def test_the_confirmation_stage_reorders_a_ranking_one_seed_got_wrong():
    """A synthetic objective with known noise (sd 1): the search's one seed put the worse
    configuration first; fresh seeds are pooled until the better one leads, and a configuration
    shown worse stops getting seeds."""
    truth = {"good": 0.0, "mid": 1.0, "bad": 5.0}
    searched = {"good": [2.5], "mid": [1.0], "bad": [4.0]}  # one unlucky seed: "mid" looks best
    assert min(searched, key=lambda n: searched[n][0]) == "mid"
    for seed in range(5):
        rng, runs = random.Random(seed), []

        def run(names, round_):
            runs.append(list(names))
            return {n: [rng.gauss(truth[n], 1.0) for _ in range(3)] for n in names}

        order, pooled = stats.intensify(searched, run, "min", 0.05, seeds_per_round=3, rounds=4,
                                        log=lambda line: None)
        assert order == ["good", "mid", "bad"]
        assert pooled["good"][0] == 2.5 and len(pooled["good"]) == 1 + 3 * len(runs)  # the search's seed pooled
        assert runs[0] == ["mid", "good", "bad"] and all("bad" not in names for names in runs[1:])
        if len(runs) < 4:  # it ended before its budget only because "mid" was shown worse
            assert stats.worse_than(pooled["good"], pooled["mid"], "min", 0.05)[0]
    # nothing to separate (equal configurations): the stage stops at its budget
    calls = []
    rng = random.Random(0)
    order, _ = stats.intensify({"a": [0.0], "b": [0.1]}, lambda names, r: calls.append(r) or
                               {n: [rng.gauss(0, 1) for _ in range(3)] for n in names}, "min", 0.001, 3, 2,
                               log=lambda line: None)
    assert calls == [0, 1] and set(order) == {"a", "b"}
