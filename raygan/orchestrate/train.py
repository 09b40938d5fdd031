"""Ray Train wrapper: the plain loop inside TorchTrainer workers (gloo on CPU, nccl on GPU),
or, for a one-worker Tune trial, inside the trial's own process (train_in_trial).

Failures: a worker that crashes (or a lost node) restarts the worker group, up to
``scaling.max_failures`` times, each time from the last reported checkpoint. A
loss that becomes NaN/inf stops the run for good (a retry would diverge again):
the reason goes to ``stopped.txt`` in the run's log folder, a restarted worker
group finds it and does not train again, and the driver raises NonFiniteLoss.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import tempfile
from pathlib import Path

from raygan.orchestrate.diagnostics import KILL_ENV, TRACE_ENV, WorkerTrace
from raygan.runs import METRICS_FILE, STATE_FILE

STOP_FILE = "stopped.txt"
QUIET_LOGGERS = ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage")


def all_reduce_mean(params) -> None:
    """Average gradients across workers (data parallelism without DDP wrappers,
    so GAN steps may touch any subset of parameters)."""
    import torch
    import torch.distributed as dist

    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    # One collective over all gradients, not one per tensor (dozens of small messages).
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat.div_(dist.get_world_size())
    for p, g in zip(params, flat.split([p.numel() for p in params])):
        p.grad.copy_(g.view_as(p.grad))


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def train_loop_per_worker(config: dict) -> None:
    """A Ray Train worker: one rank of the run."""
    import ray.train
    import torch

    runtime = config["_runtime"]
    ctx = ray.train.get_context()
    device = ray.train.torch.get_device() if runtime["use_gpu"] else torch.device("cpu")
    run_worker(config, ray.train, ctx.get_world_rank(), ctx.get_world_size(), device,
               ray.train.get_dataset_shard if runtime["streams"] else None)


def run_worker(config: dict, session, rank: int, world: int, device, dataset_shard) -> None:
    """The loop with checkpoints, restarts and a stop on divergence. ``session`` is
    ``ray.train`` in a Train worker or ``ray.tune`` in a trial that trains in its own
    process: both give get_checkpoint, report(metrics, checkpoint=) and Checkpoint."""
    import ray
    import torch

    from raygan.train.best import BestEvaluation
    from raygan.train.loop import Hooks, NonFiniteLoss, run
    from raygan.sync import no_sync
    from raygan.cache import save_atomic

    config = dict(config)
    runtime = config.pop("_runtime")
    os.environ.update(runtime["env"])  # before anything reads them (the cache, the weights)
    torch.set_num_threads(runtime["torch_threads"])
    for name in QUIET_LOGGERS:  # one INFO line per checkpoint, between raygan's own progress lines
        logging.getLogger(name).setLevel(logging.WARNING)
    stop_file = Path(runtime["stop_file"])
    progress = lambda line: print(f"[{runtime['label']}] {line}", flush=True)  # noqa: E731
    if stop_file.exists():  # the group restarted after another rank's loss diverged
        return

    restore = finished = None
    checkpoint = session.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
            if restore["step"] >= config["train"]["steps"]:
                finished = json.loads((Path(d) / METRICS_FILE).read_text())
        if rank == 0:
            progress(f"resuming from the checkpoint of step {restore['step']}")
    grad_sync = all_reduce_mean if world > 1 else no_sync
    if runtime["trace_dir"]:
        trace = WorkerTrace(runtime["trace_dir"], rank, world=world,
                            node=ray.get_runtime_context().get_node_id(),
                            restored_step=restore["step"] if restore else None)
        grad_sync = trace.sync(grad_sync)
        dataset_shard = trace.shards(dataset_shard) if dataset_shard else None
    if finished is not None:  # interrupted after its last report: report the final metrics again
        session.report(finished if rank == 0 else {})
        return

    def report(metrics: dict, state: dict | None) -> None:
        if runtime["kill_at_step"] == metrics["step"] and rank == 0:
            marker = stop_file.with_name(f".killed_at_step_{metrics['step']}")
            if not marker.exists():
                marker.touch()
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, as when a node or process dies
        if runtime["trace_dir"]:
            trace.log(event="report", step=metrics["step"])
        if state is None:
            session.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_atomic(state, Path(d) / STATE_FILE)
            (Path(d) / METRICS_FILE).write_text(json.dumps(metrics))
            session.report(metrics, checkpoint=session.Checkpoint.from_directory(d))

    log_dir = runtime["log_dir"] if rank == 0 else None
    best = (BestEvaluation(runtime["best_of"], log_dir, window=runtime["best_window"])
            if runtime["best_of"] and log_dir else None)
    hooks = Hooks(report=report, restore=restore, rank=rank, world_size=world, dataset_shard=dataset_shard,
                  grad_sync=grad_sync, log_dir=log_dir, device=str(device), progress=progress, best=best)
    try:
        run(config, hooks)
    except NonFiniteLoss as e:
        _write_atomic(stop_file, str(e))
        progress(f"stopped: {e}")
        if world > 1:
            raise  # the other ranks may wait in a collective: let Train end the group (the restart stops at once)


def driver_env() -> dict[str, str]:
    """This process's RAYGAN_* variables (cache, weights, test switches) and TORCH_HOME: every
    trial and Train worker sets them before it starts, so that it reads what the driver reads
    also on an instance started elsewhere (`ray start`, or a test's), whose processes inherit
    that instance's environment, not this one's."""
    return {k: v for k, v in os.environ.items() if k.startswith("RAYGAN_") or k == "TORCH_HOME"}


def _with_runtime(config: dict, scaling, run_dir: Path, log_dir: str | None, label: str, streams: bool,
                  best_of=(), window: int = 1) -> dict:
    """The config plus what a worker needs besides the method's knobs; ``best_of``: the search's
    (metric, mode) objectives when the trial keeps its best evaluation (search.scope best), judged
    over ``window`` evaluations (search.window)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    return dict(config, _runtime={"best_of": [list(o) for o in best_of], "best_window": window,
        "torch_threads": config["train"]["torch_threads"] or max(1, round(scaling.cpus_per_worker)),
        "use_gpu": scaling.use_gpu, "log_dir": log_dir, "label": label, "streams": streams,
        "stop_file": str(run_dir / STOP_FILE),
        "trace_dir": str(run_dir / "worker_trace") if os.environ.get(TRACE_ENV) == "1" else None,
        "kill_at_step": int(os.environ.get(KILL_ENV) or 0) or None, "env": driver_env()})


def _datasets(config: dict) -> dict | None:
    """The family's Ray datasets (the unpaired sets it streams), if any."""
    from raygan.registry import family_of
    from raygan.search_space import typed

    return family_of(config["method"]["name"]).ray_datasets(typed(config))


def _raise_if_stopped(run_dir: Path) -> None:
    from raygan.train.loop import NonFiniteLoss

    if (run_dir / STOP_FILE).exists():
        raise NonFiniteLoss((run_dir / STOP_FILE).read_text())


def train_in_trial(config: dict, scaling, log_dir: str, label: str, best_of=(), window: int = 1) -> None:
    """One worker without Ray Train: the loop runs in the calling Tune trial's own
    process, which Tune reuses from trial to trial (imports and caches stay warm), and
    reports and checkpoints straight to Tune. A Train run would add a controller and a
    worker process per trial: ~10 s of a trial's fixed cost (benchmarks/RESULTS.md, P7).
    Restarts after a crash are Tune's (its FailureConfig). Raises NonFiniteLoss."""
    import torch
    from ray import tune

    datasets = _datasets(config)
    run_dir = Path(log_dir)
    config = _with_runtime(config, scaling, run_dir, log_dir, label, streams=bool(datasets), best_of=best_of,
                           window=window)
    device = torch.device("cuda" if scaling.use_gpu else "cpu")  # Tune gave this process its GPU
    run_worker(config, tune, 0, 1, device, datasets.__getitem__ if datasets else None)
    _raise_if_stopped(run_dir)


def fit_trial(config: dict, scaling, name: str, storage: str, log_dir: str | None,
              callbacks=(), label: str = "train", best_of=(), window: int = 1):
    """Run one config through a TorchTrainer (blocking); returns Train's Result.
    Raises raygan.train.loop.NonFiniteLoss when a loss diverged."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    datasets = _datasets(config)
    run_dir = Path(log_dir) if log_dir else Path(storage) / name
    config = _with_runtime(config, scaling, run_dir, log_dir, label, streams=bool(datasets), best_of=best_of,
                           window=window)
    data_kwargs = {}
    if datasets:
        from raygan.data.streams import data_config

        data_kwargs = {"datasets": datasets, "dataset_config": data_config()}
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if scaling.use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker}, placement_strategy=scaling.placement.upper()),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage, callbacks=list(callbacks),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=scaling.max_failures)),
        **data_kwargs,
    )
    try:
        result = trainer.fit()
    except Exception:
        if not (run_dir / STOP_FILE).exists():
            raise
    _raise_if_stopped(run_dir)
    return result
