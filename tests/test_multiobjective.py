"""Searches with several objectives: parsing, the Optuna searcher, Pareto ranking."""
import csv
import functools
import textwrap
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from raygan.errors import UserError
from raygan.orchestrate.results import ranked_rows, write_summary
from raygan.orchestrate.tune import _searcher
from raygan.pareto import pareto_ranks
from raygan.search_space import load_experiment


def exp_from(tmp_path, search: str):
    p = tmp_path / "mo.yaml"
    p.write_text(textwrap.dedent(f"""
        method: {{name: dcl, tau: {{uniform: [0.05, 0.1]}}}}
        train: {{steps: 300, eval_every: 50}}
        search: {search}
    """))
    return load_experiment(p)


def test_two_objectives_parse_and_reach_optuna(tmp_path):
    exp = exp_from(tmp_path, "{metric: [intra_shapesnet, realism], mode: [max, max]}")
    assert exp.search.objectives == [("intra_shapesnet", "max"), ("realism", "max")]
    assert exp.search.multi_objective
    searcher = _searcher(exp).searcher
    # scope best (the default): Optuna reads each trial's best evaluation (train/best.py)
    assert searcher._metric == ["best/intra_shapesnet", "best/realism"] and searcher._mode == ["max", "max"]
    assert isinstance(searcher._sampler, optuna.samplers.TPESampler)

    nsga = _searcher(exp_from(tmp_path, "{metric: [fd_shapesnet, realism], mode: [min, max], searcher: nsga2, "
                                        "num_samples: 40}")).searcher
    assert isinstance(nsga._sampler, optuna.samplers.NSGAIISampler)
    assert nsga._sampler._population_size == 10  # a quarter of the budget: several generations


def test_one_element_lists_are_a_plain_search(tmp_path):
    s = exp_from(tmp_path, "{metric: [realism], mode: [max]}").search
    assert (s.metric, s.mode, s.multi_objective) == ("realism", "max", False)


@pytest.mark.parametrize("search, expected", [
    ("{metric: [realism, intra_shapesnet], mode: max}", "search.mode: expected one mode per metric"),
    ("{metric: [realism, intra_shapesnet], mode: [max]}", "search.mode: expected one mode per metric"),
    ("{metric: realism, mode: [max, min]}", "search.mode: expected one mode per metric"),
    ("{metric: [realism, intra_shapesnet], mode: [max, up]}", "search.mode: expected one of ['min', 'max']"),
    ("{metric: [a, b, c, d], mode: [max, max, max, max]}", "search.metric: expected 1 to 3 objectives"),
    ("{metric: [realism, realism], mode: [max, max]}", "search.metric: expected distinct objectives"),
    ("{metric: [realism, intra_shapesnet], mode: [max, max], scheduler: asha}", "search.scheduler: asha ranks trials by one metric"),
    ("{metric: [realism, 3], mode: [max, max]}", "search.metric: expected a string, got 3"),
])
def test_bad_objectives_are_one_line_errors_naming_the_file(tmp_path, search, expected):
    with pytest.raises(UserError) as e:
        exp_from(tmp_path, search)
    assert str(e.value).startswith(str(tmp_path / "mo.yaml")) and expected in str(e.value)
    assert "\n" not in str(e.value)


def brute_force_ranks(values, modes):
    """Rank by definition: 1 if nothing dominates the point, else 1 + the
    highest rank among the points that dominate it."""
    sign = np.array([1 if m == "min" else -1 for m in modes])
    v = [np.asarray(p) * sign for p in values]
    dominates = lambda a, b: bool(np.all(v[a] <= v[b]) and np.any(v[a] < v[b]))  # noqa: E731

    @functools.lru_cache(None)
    def rank(i):
        return 1 + max((rank(j) for j in range(len(v)) if dominates(j, i)), default=0)
    return [rank(i) for i in range(len(v))]


@pytest.mark.parametrize("seed", range(6))
def test_pareto_ranks_match_the_definition_and_optunas_front(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(2, 30)), int(rng.integers(2, 4))
    values = rng.integers(0, 6, size=(n, k)).astype(float)  # small integers: ties and duplicates
    modes = list(rng.choice(["min", "max"], size=k))
    ranks = pareto_ranks(values.tolist(), modes)
    assert ranks == brute_force_ranks(values.tolist(), modes)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize" if m == "min" else "maximize" for m in modes])
    for row in values:
        study.add_trial(optuna.trial.create_trial(values=list(row)))
    assert sorted(t.number for t in study.best_trials) == [i for i, r in enumerate(ranks) if r == 1]


def test_hand_computed_fronts():
    # maximise both: (3,1) (1,3) (2,2) are the front; (1,1) is behind (2,2); (0,0) behind everything.
    assert pareto_ranks([[3, 1], [1, 1], [1, 3], [0, 0], [2, 2]], ["max", "max"]) == [1, 2, 1, 3, 1]
    assert pareto_ranks([[1.0, 5.0], [2.0, 5.0]], ["min", "max"]) == [1, 2]


def result(trial, intra, realism, error=None):
    return SimpleNamespace(metrics={"trial_id": trial, "intra_shapesnet": intra, "realism": realism, "step": 4},
                           config={"method.tau": 0.07}, error=error, path=None)


def test_ranked_table_and_pareto_csv(tmp_path, capsys):
    exp = exp_from(tmp_path, "{metric: [intra_shapesnet, realism], mode: [max, max]}")
    results = [result("a", 1.0, 0.9), result("b", 3.0, 0.1), result("c", 0.5, 0.5), result("d", 2.0, 0.5),
               result("e", 9.0, 9.0, error="RuntimeError: boom"), result("f", float("nan"), 0.5)]
    rows = ranked_rows(results, exp)
    # front: b (3, .1), d (2, .5), a (1, .9) by intra_shapesnet; then c (behind d); f has no finite value; e failed
    assert [(r["trial"], r["pareto_rank"]) for r in rows] == [("b", 1), ("d", 1), ("a", 1), ("c", 2), ("f", ""),
                                                             ("e", "")]
    write_summary(results, exp, tmp_path)
    front = list(csv.DictReader(open(tmp_path / "pareto.csv")))
    assert [r["trial"] for r in front] == ["b", "d", "a"] and all(r["pareto_rank"] == "1" for r in front)
    assert list(csv.DictReader(open(tmp_path / "results.csv")))[3]["pareto_rank"] == "2"
    assert "Pareto front of intra_shapesnet (max) and realism (max): 3 trial(s) (b, d, a)" in capsys.readouterr().out
    best = (tmp_path / "best_config.yaml").read_text()
    assert best.startswith("# first of the Pareto front by intra_shapesnet") and "(trial b)" in best
    kept = load_experiment(tmp_path / "experiment.yaml")  # the experiment, kept beside its results, still loads
    assert kept.name == "mo" and kept.search.objectives == exp.search.objectives
