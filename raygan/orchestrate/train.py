"""Ray Train wrapper: the plain loop inside TorchTrainer workers (gloo on CPU, nccl on GPU)."""
from __future__ import annotations

import tempfile
from pathlib import Path

STATE_FILE = "state.pt"


def all_reduce_mean(params) -> None:
    """Average gradients across workers (data parallelism without DDP wrappers,
    so GAN steps may touch any subset of parameters)."""
    import torch
    import torch.distributed as dist

    world = dist.get_world_size()
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad)
        p.grad.div_(world)


def train_loop_per_worker(config: dict) -> None:
    import ray.train
    import torch

    from raygan.loop import Hooks, run
    from raygan.methods.fewshot import no_sync
    from raygan.models.checkpoint import save_atomic

    runtime = config.pop("_runtime")
    torch.set_num_threads(runtime["torch_threads"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device() if runtime["use_gpu"] else torch.device("cpu")

    restore = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            restore = torch.load(Path(d) / STATE_FILE, map_location=device, weights_only=True)

    def report(metrics: dict, state: dict | None) -> None:
        if state is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory() as d:
            save_atomic(state, Path(d) / STATE_FILE)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))

    hooks = Hooks(report=report, restore=restore, rank=rank, world_size=world,
                  dataset_shard=ray.train.get_dataset_shard if runtime["streams"] else None,
                  grad_sync=all_reduce_mean if world > 1 else no_sync,
                  log_dir=runtime.get("log_dir") if rank == 0 else None, device=str(device),
                  progress=lambda line: print(f"[{runtime['label']}] {line}", flush=True))
    run(config, hooks)


def fit_trial(config: dict, scaling, name: str, storage: str, log_dir: str | None,
              callbacks=(), label: str = "train"):
    """Run one config through a TorchTrainer (blocking)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raygan.search_space import family_of, typed

    threads = config["train"]["torch_threads"] or max(1, round(scaling.cpus_per_worker))
    family = family_of(config["method"]["name"])
    datasets = family.ray_datasets(typed(config)) if hasattr(family, "ray_datasets") else None
    config = dict(config, _runtime={"torch_threads": threads, "use_gpu": scaling.use_gpu, "log_dir": log_dir,
                                   "label": label, "streams": bool(datasets)})
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
            resources_per_worker={"CPU": scaling.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage, callbacks=list(callbacks),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        **data_kwargs,
    )
    return trainer.fit()
