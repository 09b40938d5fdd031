"""``search.repeats: k``: one configuration trained on k seeds at once, reported as one Tune trial.

The trial starts k Ray tasks in its placement group (``trial_resources``: one bundle per
seed), each the plain training loop of one seed as a stream of its evaluations
(``train.loop.evaluations``). The trial takes the k streams in lockstep: once every seed has
evaluated step s it reports their aggregate (``raygan.stats.aggregate``: the objective's
statistic, its standard error, every seed's value), so Optuna, ASHA, PBT and the stoppers
judge the configuration by its seeds, not by one lucky run. One Tune checkpoint holds every
seed's state, so a restarted (or, under PBT, exploited) trial restores each seed.

On disk, in the trial's folder: ``seed_<i>/`` is seed i's log folder (TensorBoard, samples.png,
metrics_provenance.json); under ``search.scope: best`` the configuration's best evaluation (by
the aggregate, over ``search.window`` evaluations) keeps its record in ``best/`` and every
seed's state at that step in ``seed_<i>/best/state.pt`` (``seed_checkpoints``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

from raygan import stats
from raygan.evaluation.saturation import SATURATED_AT, Saturation
from raygan.runs import BEST_FOLDER, SEED_FOLDER, STATE_FILE

AGGREGATE_FILE = "metrics.json"  # in a checkpoint: the aggregate it was reported with
SATURATION_FILE = "saturation.json"  # in a checkpoint: the mean realism curve so far


def seed_config(config: dict, i: int, vary_data: bool) -> dict:
    """Replicate i's config: train.seed + i (and data.seed + i with ``search.repeat_data``)."""
    out = json.loads(json.dumps(config))
    out["train"]["seed"] = config["train"]["seed"] + i
    if vary_data:
        out["data"]["seed"] = config["data"]["seed"] + i
    return out


def _replicate(config: dict, restore: dict | None, log_dir: str, label: str, use_gpu: bool, threads: int,
               env: dict):
    """One seed's training run, yielding each evaluation (metrics, state, sample grid)."""
    os.environ.update(env)  # the driver's (orchestrate/train.py driver_env), before anything reads them
    import torch

    from raygan.orchestrate.train import _datasets
    from raygan.train.loop import Hooks, evaluations

    torch.set_num_threads(threads)
    datasets = _datasets(config)
    hooks = Hooks(report=lambda m, s: None, restore=restore, log_dir=log_dir, device="cuda" if use_gpu else "cpu",
                  progress=lambda line: print(f"[{label}] {line}", flush=True),
                  dataset_shard=datasets.__getitem__ if datasets else None)
    for ev in evaluations(config, hooks):
        yield {"metrics": ev.metrics, "state": ev.state, "grid": ev.grid()}


def train_replicates(config: dict, scaling, search, trial_dir: Path, label: str) -> None:
    """The trial's body (in the Tune trial process): start the seeds, report their aggregate at
    every evaluation, checkpoint every seed. Raises NonFiniteLoss naming the seed that diverged."""
    import ray
    import torch
    from ray import tune

    from raygan.cache import save_atomic
    from raygan.train.best import BestEvaluation, keep
    from raygan.orchestrate.train import driver_env
    from raygan.train.loop import NonFiniteLoss

    k = search.repeats
    restores, finished, restored_saturation = [None] * k, None, None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restores = [torch.load(Path(d) / SEED_FOLDER.format(i) / STATE_FILE, weights_only=True) for i in range(k)]
            last = json.loads((Path(d) / AGGREGATE_FILE).read_text())
            if (Path(d) / SATURATION_FILE).is_file():
                restored_saturation = json.loads((Path(d) / SATURATION_FILE).read_text())
        if last["step"] >= config["train"]["steps"]:
            finished = last
        print(f"[{label}] resuming {k} seeds from the checkpoint of step {last['step']}", flush=True)
    if finished is not None:  # interrupted after its last report: report it again
        tune.report(finished)
        return
    best = (BestEvaluation(search.objectives, trial_dir, window=search.window, statistic=search.statistic)
            if search.scope == "best" else None)
    saturation = None
    if restored_saturation is not None:
        saturation = Saturation(**restored_saturation)
    threads = config["train"]["torch_threads"] or max(1, round(scaling.cpus_per_worker))
    task = ray.remote(_replicate).options(num_cpus=scaling.cpus_per_worker, num_gpus=1 if scaling.use_gpu else 0,
                                          _generator_backpressure_num_objects=2)
    seeds = [seed_config(config, i, search.repeat_data) for i in range(k)]
    streams = [task.remote(seeds[i], restores[i], str(trial_dir / SEED_FOLDER.format(i)),
                           f"{label} seed {seeds[i]['train']['seed']}", scaling.use_gpu, threads, driver_env())
               for i in range(k)]
    try:
        while True:
            refs = [next(s, None) for s in streams]
            if all(r is None for r in refs):
                return
            items = []
            for i, ref in enumerate(refs):
                try:
                    items.append(ray.get(ref))
                except NonFiniteLoss as e:
                    cause = e.cause if isinstance(e, ray.exceptions.RayTaskError) else e
                    raise NonFiniteLoss(f"seed {seeds[i]['train']['seed']}: {cause}") from None
            metrics = stats.aggregate([it["metrics"] for it in items], search.objectives, search.statistic)
            if SATURATED_AT in metrics:  # the seeds report saturation: the plateau of their mean realism
                saturation = saturation or _saturation(config)
                metrics.update(saturation.update(metrics["step"], metrics["realism"], metrics["diversity"]))
            states = [it["state"] for it in items]
            if best is not None:
                if states[0] is not None and best.update(metrics):
                    for i, it in enumerate(items):
                        keep(trial_dir / SEED_FOLDER.format(i) / BEST_FOLDER, it["state"], it["grid"])
                    best.save(None, items[0]["grid"])  # the configuration's picture: seed 0's
                else:
                    best.save(None)
                metrics.update(best.reported())
            if states[0] is None:
                tune.report(metrics)
                continue
            with tempfile.TemporaryDirectory() as d:
                for i, state in enumerate(states):
                    save_atomic(state, Path(d) / SEED_FOLDER.format(i) / STATE_FILE)
                (Path(d) / AGGREGATE_FILE).write_text(json.dumps(metrics))
                if saturation is not None:
                    (Path(d) / SATURATION_FILE).write_text(json.dumps(dataclasses.asdict(saturation)))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
    finally:  # stopped early (ASHA, a stopper, a diverged seed): the other seeds stop too
        for s in streams:
            ray.cancel(s)


def _saturation(config: dict) -> Saturation:
    """The realism-plateau rule (``eval.saturation_*``), applied to the seeds' mean curve."""
    e = config["eval"]
    return Saturation(e["saturation_window"], e["saturation_tolerance"], e["saturation_realism"])
