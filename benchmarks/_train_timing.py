"""Per-step times of the few-shot trainer, in the bare loop or inside a Ray Train run.

Both paths wrap ``FewShotAdapter.step`` with the same timer, so evaluation,
start-up and teardown are left out and the two measure exactly the same thing.
Each step records three clocks: wall time, CPU time of the calling thread (the
training compute; with one torch thread it runs there) and CPU time of the whole
process (adds what other threads of the process spent meanwhile, e.g. Ray's
core-worker threads). On a machine shared with other jobs the CPU clocks are
far less disturbed than the wall clock.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the checkout on sys.path)

STEP_FILE = "bench_step_times_rank{rank}.json"


def dcl_config(steps: int, batch: int, threads: int, eval_samples: int = 20) -> dict:
    """DCL with its paper defaults on the embedded task; one evaluation, at the end."""
    return {"method": {"name": "dcl"}, "data": {"target": "sketches", "shots": 10, "seed": 0},
            "model": {"checkpoint": "embedded"},
            "train": {"steps": steps, "batch_size": batch, "eval_every": steps, "eval_samples": eval_samples,
                      "torch_threads": threads, "seed": 0}}


def _instrument(times: list) -> None:
    from raygan.methods.fewshot.adapter import FewShotAdapter

    if getattr(FewShotAdapter.step, "_bench", False):
        FewShotAdapter.step._bench_times = times
        return
    inner = FewShotAdapter.step

    def step(self):
        t0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
        logs = inner(self)
        step._bench_times.append((time.perf_counter() - t0, time.thread_time() - c0, time.process_time() - p0))
        return logs
    step._bench, step._bench_times = True, times
    FewShotAdapter.step = step


def bare_step_times(cfg: dict) -> list:
    import torch

    from raygan.train.loop import Hooks, run

    torch.set_num_threads(cfg["train"]["torch_threads"])
    times: list = []
    _instrument(times)
    run(cfg, Hooks(report=lambda m, s: None))
    return times


def _timed_worker(config: dict) -> None:
    """raygan's Train worker function, with the step timer; rank r writes its times next to the run."""
    import ray.train

    from raygan.orchestrate.train import train_loop_per_worker

    out = Path(config["_runtime"]["stop_file"]).parent
    times: list = []
    _instrument(times)
    train_loop_per_worker(config)
    rank = ray.train.get_context().get_world_rank()
    (out / STEP_FILE.format(rank=rank)).write_text(json.dumps(times))


def ray_step_times(cfg: dict, num_workers: int = 1, cpus_per_worker: float = 1.0) -> list[list]:
    """One TorchTrainer run through raygan's fit_trial; returns each rank's step times."""
    import raygan.orchestrate.train as train_mod
    from raygan.config import ScalingConfig

    train_mod.train_loop_per_worker = _timed_worker  # fit_trial looks the name up at call time
    scaling = ScalingConfig(num_workers=num_workers, cpus_per_worker=cpus_per_worker, max_failures=0)
    storage = tempfile.mkdtemp(prefix="raygan_bench_")
    name = f"bench_{os.getpid()}_{time.monotonic_ns()}"
    train_mod.fit_trial(cfg, scaling, name=name, storage=storage, log_dir=None)
    run_dir = Path(storage) / name
    return [json.loads((run_dir / STEP_FILE.format(rank=r)).read_text()) for r in range(num_workers)]


def start_ray(num_cpus: int | None = None) -> None:
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", configure_logging=False,
             log_to_driver=False)


CLOCKS = ("wall", "thread CPU", "process CPU")


def steady(times: list, warmup: int) -> tuple[float, float, float]:
    """Median (wall, thread CPU, process CPU) step time after the first ``warmup`` steps."""
    from statistics import median

    return tuple(median(t[k] for t in times[warmup:]) for k in range(3))
