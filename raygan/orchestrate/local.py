"""`raygan train`: one configuration, either the plain loop (--local) or one Ray Train run."""
from __future__ import annotations

import os
from pathlib import Path

from raygan.errors import UserError
from raygan.search_space import Experiment


def _fresh_dir(exp: Experiment, out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(exp.path, f"{out} is a file, not a results folder")
    if out.exists() and any(out.iterdir()):
        raise UserError(exp.path, f"{out} already holds results (choose another output.name or remove it)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(exp.path, f"cannot create {out} ({e.strerror})") from None


def train_local(exp: Experiment, out: Path) -> dict:
    import torch

    from raygan.train.loop import Hooks, prepare, run
    from raygan.cache import save_atomic

    exp.trial_config = prepare(exp.trial_config, [exp.trial_config["method"]["name"]], exp.path,
                               objectives=exp.search.objectives)
    _fresh_dir(exp, out)
    threads = exp.trial_config["train"]["torch_threads"] or os.cpu_count()
    torch.set_num_threads(threads)
    steps = exp.trial_config["train"]["steps"]

    def report(metrics, state):
        if state is not None:  # the step-0 evaluation has no checkpoint
            save_atomic(state, out / "checkpoint.pt")

    hooks = Hooks(report=report, log_dir=str(out), device="cuda" if torch.cuda.is_available() else "cpu",
                  progress=lambda line: print(f"raygan [{steps} steps] {line}", flush=True))
    metrics = run(exp.trial_config, hooks)
    print(f"raygan: checkpoint {out / 'checkpoint.pt'}")
    return metrics


def train_on_ray(exp: Experiment, out: Path, address: str | None = None):
    import ray

    from raygan.orchestrate.instance import connect
    from raygan.orchestrate.train import fit_trial
    from raygan.orchestrate.tune import prepare_shared_assets, set_ray_env

    prepare_shared_assets(exp)
    _fresh_dir(exp, out)
    set_ray_env()
    print(connect(address, dashboard=False, configure_logging=True), flush=True)
    scaling = exp.scaling.on_cluster(ray.cluster_resources().get("GPU", 0))
    result = fit_trial(exp.trial_config, scaling, name="train", storage=str(out), log_dir=str(out))
    if result.error:
        raise RuntimeError(f"training failed: {result.error}")
    print("raygan: final metrics " + " ".join(f"{k}={v:.4g}" for k, v in (result.metrics or {}).items()
                                                if isinstance(v, float)))
    print(f"raygan: checkpoint {result.checkpoint.path if result.checkpoint else 'none'}")
    return result
