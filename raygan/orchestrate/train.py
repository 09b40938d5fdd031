"""Ray Train wrapper: the plain loop inside TorchTrainer workers (gloo on CPU, nccl on GPU).

Failures: a worker that crashes (or a lost node) restarts the worker group, up to
``scaling.max_failures`` times, each time from the last reported checkpoint. A
loss that becomes NaN/inf stops the run for good (a retry would diverge again):
the reason goes to ``stopped.txt`` in the run's log folder, a restarted worker
group finds it and does not train again, and the driver raises NonFiniteLoss.
"""
from __future__ import annotations

import json
import os
import signal
import tempfile
from pathlib import Path

from raygan.orchestrate.diagnostics import KILL_ENV, TRACE_ENV, WorkerTrace

STATE_FILE = "state.pt"
METRICS_FILE = "metrics.json"  # beside the state: what a finished run reports again when resumed
STOP_FILE = "stopped.txt"


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
    import ray.train
    import torch

    from raygan.loop import Hooks, NonFiniteLoss, run
    from raygan.methods.fewshot import no_sync
    from raygan.models.checkpoint import save_atomic

    runtime = config.pop("_runtime")
    torch.set_num_threads(runtime["torch_threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if runtime["use_gpu"] else torch.device("cpu")
    stop_file = Path(runtime["stop_file"])
    progress = lambda line: print(f"[{runtime['label']}] {line}", flush=True)  # noqa: E731
    if stop_file.exists():  # the group restarted after another rank's loss diverged
        return

    restore = finished = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)
            if restore["step"] >= config["train"]["steps"]:
                finished = json.loads((Path(d) / METRICS_FILE).read_text())
        if rank == 0:
            progress(f"resuming from the checkpoint of step {restore['step']}")
    grad_sync = all_reduce_mean if world > 1 else no_sync
    dataset_shard = ray.train.get_dataset_shard if runtime["streams"] else None
    if runtime["trace_dir"]:
        trace = WorkerTrace(runtime["trace_dir"], rank, world=world,
                            node=ray.get_runtime_context().get_node_id(),
                            restored_step=restore["step"] if restore else None)
        grad_sync = trace.sync(grad_sync)
        dataset_shard = trace.shards(dataset_shard) if dataset_shard else None
    if finished is not None:  # interrupted after its last report: report the final metrics again
        ray.train.report(finished if rank == 0 else {})
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
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_atomic(state, Path(d) / STATE_FILE)
            (Path(d) / METRICS_FILE).write_text(json.dumps(metrics))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    hooks = Hooks(report=report, restore=restore, rank=rank, world_size=world, dataset_shard=dataset_shard,
                  grad_sync=grad_sync, log_dir=runtime.get("log_dir") if rank == 0 else None, device=str(device),
                  progress=progress)
    # Every rank builds the same initial networks (randomly initialised heads too), as
    # DDP's broadcast from rank 0 would give; run() then seeds each rank's sampling apart.
    torch.manual_seed(config["train"]["seed"])
    try:
        run(config, hooks)
    except NonFiniteLoss as e:
        _write_atomic(stop_file, str(e))
        progress(f"stopped: {e}")
        if world > 1:
            raise  # the other ranks may wait in a collective: let Train end the group (the restart stops at once)


def fit_trial(config: dict, scaling, name: str, storage: str, log_dir: str | None,
              callbacks=(), label: str = "train"):
    """Run one config through a TorchTrainer (blocking); returns Train's Result.
    Raises raygan.loop.NonFiniteLoss when a loss diverged."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raygan.loop import NonFiniteLoss
    from raygan.search_space import family_of, typed

    threads = config["train"]["torch_threads"] or max(1, round(scaling.cpus_per_worker))
    family = family_of(config["method"]["name"])
    datasets = family.ray_datasets(typed(config)) if hasattr(family, "ray_datasets") else None
    run_dir = Path(log_dir) if log_dir else Path(storage) / name
    run_dir.mkdir(parents=True, exist_ok=True)
    stop_file = run_dir / STOP_FILE
    config = dict(config, _runtime={
        "torch_threads": threads, "use_gpu": scaling.use_gpu, "log_dir": log_dir, "label": label,
        "streams": bool(datasets), "stop_file": str(stop_file),
        "trace_dir": str(run_dir / "worker_trace") if os.environ.get(TRACE_ENV) == "1" else None,
        "kill_at_step": int(os.environ.get(KILL_ENV) or 0) or None})
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
        if not stop_file.exists():
            raise
    if stop_file.exists():
        raise NonFiniteLoss(stop_file.read_text())
    return result
