"""The experiment's search settings become the right Tune/Optuna objects."""
import os
import textwrap

import optuna
import pytest
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from raygan.orchestrate.results import ranked_rows
from raygan.errors import UserError
from raygan.orchestrate.tune import _scheduler, _searcher, fit_concurrency, trial_resources
from raygan.search_space import load_experiment


def exp_from(tmp_path, search: str):
    p = tmp_path / "e.yaml"
    p.write_text(textwrap.dedent(f"""
        method: {{name: dcl, tau: {{uniform: [0.05, 0.1]}}, g_layers: {{choice: [[0, 1], [2]]}}}}
        train: {{steps: 300, eval_every: 50}}
        search: {search}
    """))
    return load_experiment(p)


def test_tpe_and_random_samplers_and_concurrency(tmp_path):
    tpe = _searcher(exp_from(tmp_path, "{searcher: tpe, max_concurrent: 3, seed: 7}"))
    assert tpe.max_concurrent == 3
    assert isinstance(tpe.searcher._sampler, optuna.samplers.TPESampler)
    rnd = _searcher(exp_from(tmp_path, "{searcher: random, metric: realism, mode: max}"))
    assert isinstance(rnd.searcher._sampler, optuna.samplers.RandomSampler)
    assert rnd.searcher.metric == "best/realism" and rnd.searcher.mode == "max"


def test_concurrency_fits_the_cluster(tmp_path, capsys):
    exp = exp_from(tmp_path, "{max_concurrent: 4}")
    exp.scaling.cpus_per_worker = 1.0  # one worker: the trial's own process trains and holds the CPU
    assert fit_concurrency(exp, 2.0) == 2 and fit_concurrency(exp, 16.0) == 4
    assert trial_resources(exp.scaling) == {"cpu": 1.0, "gpu": 0}
    exp.scaling.num_workers, exp.scaling.cpus_per_worker = 2, 0.5  # Ray Train: its workers + the trial's 0.01
    assert trial_resources(exp.scaling) == {"cpu": 0.01}
    assert fit_concurrency(exp, 2.0) == 1  # 2 x (2 x 0.5 + 0.01) > 2: the second would fail, not queue
    assert "1 trial(s) at a time fit 2 CPUs" in capsys.readouterr().out
    exp.scaling.cpus_per_worker = 0.9
    exp.scaling.num_workers = 3
    with pytest.raises(UserError, match="one trial needs 2.71 CPUs"):
        fit_concurrency(exp, 2.0)
    exp.scaling.num_workers, exp.scaling.use_gpu = 2, True  # GPUs bound it too: 5 GPUs hold 2 trials
    assert fit_concurrency(exp, 16.0, cluster_gpus=5) == 2
    with pytest.raises(UserError, match=r"one trial needs 2 GPU\(s\).*has 0"):
        fit_concurrency(exp, 16.0, cluster_gpus=0)


def test_asha_counts_in_steps(tmp_path):
    assert isinstance(_scheduler(exp_from(tmp_path, "{scheduler: fifo}")), FIFOScheduler)
    asha = _scheduler(exp_from(tmp_path, "{scheduler: asha, grace_period: 2}"))
    assert isinstance(asha, ASHAScheduler)
    assert asha._time_attr == "step" and asha._max_t == 300
    assert min(r[0] for r in asha._brackets[0]._rungs) == 100  # 2 evaluations of 50 steps


class FakeResult:
    def __init__(self, fd, error=None, lam=1.0):
        self.metrics = {"trial_id": f"t{fd}", "fd_shapesnet": fd, "realism": 0.5, "step": 300}
        self.config = {"method.tau": lam, "method.g_layers": "[2]"}
        self.error, self.path = error, None


def test_ranking_puts_errors_last_and_best_first(tmp_path):
    exp = exp_from(tmp_path, "{metric: fd_shapesnet, mode: min}")
    rows = ranked_rows([FakeResult(30.0), FakeResult(float("nan")), FakeResult(10.0),
                        FakeResult(5.0, error=RuntimeError("boom\nloss became non-finite"))], exp)
    assert [r["trial"] for r in rows] == ["t10.0", "t30.0", "tnan", "t5.0"]
    assert rows[-1]["status"] == "error: loss became non-finite"


REPO = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((REPO / "search_spaces").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_search_spaces_load(path):
    exp = load_experiment(path)
    assert exp.space and exp.name == path.stem


def test_rssa_space_is_searched_by_optuna_including_per_layer_alphas():
    from ray.tune.search.optuna import OptunaSearch

    exp = load_experiment(REPO / "search_spaces" / "rssa.yaml")
    assert {"method.alpha", "method.beta", "method.radius", "method.window"} <= exp.space.keys()
    assert sum(k.startswith("method.compression_alpha.") for k in exp.space) >= 4
    searcher = _searcher(exp)
    assert isinstance(searcher.searcher, OptunaSearch)


def test_grid_space_uses_the_variant_generator():
    from ray.tune.search import BasicVariantGenerator

    exp = load_experiment(REPO / "search_spaces" / "compare_fewshot.yaml")
    assert isinstance(_searcher(exp), BasicVariantGenerator)
    assert exp.methods == ["tgan", "freezed", "ewc", "cdc", "dcl", "rssa"]


def test_ray_env_defaults_poll_train_workers_often_but_the_users_value_wins(monkeypatch):
    from raygan.orchestrate.tune import set_ray_env

    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", raising=False)
    set_ray_env()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.25"
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "3")
    set_ray_env()
    assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "3"


def test_comparison_rows_are_per_method_and_grid_value_over_seeds():
    from raygan.orchestrate.results import comparison

    def row(method, ratio, seed, miou, status="ok"):
        return {"_params": {"method.name": method, "data.ratio": ratio, "train.seed": seed},
                "miou_segnet": miou, "status": status, "_path": None}

    rows = [row("oasis", 0.05, 0, 0.4), row("oasis", 0.05, 1, 0.6), row("oasis", 0.1, 0, 0.8),
            row("semipaired", 0.05, 0, 0.5), row("semipaired", 0.05, 1, 0.7, status="error: x")]
    per_trial, per_variant = comparison(rows)
    assert [(r["method"], r["data.ratio"], r["seeds"]) for r in per_variant] == [
        ("oasis", 0.05, 2), ("oasis", 0.1, 1), ("semipaired", 0.05, 1)]
    assert per_variant[0]["miou_segnet"] == "0.5 ± 0.14" and per_variant[1]["miou_segnet"] == "0.8 ± 0"
    assert "data.ratio" in per_trial[0] and len(per_trial) == 5
    # a grid over methods and seeds only: one row per method, no extra column
    _, per_method = comparison([row("oasis", 0.05, s, 0.5) for s in (0, 1)])
    assert list(per_method[0]) == ["method", "seeds", "miou_segnet"]
