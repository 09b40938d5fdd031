"""The training loop: plain PyTorch, no Ray.

``run(config, hooks)`` adapts the source generator for ``train.steps`` steps,
evaluates every ``train.eval_every`` steps (and at the end) and hands metrics
and a checkpoint to ``hooks.report``. ``raygan train --local`` calls it
directly; the orchestrate layer calls it inside Ray Train workers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from raygan.methods.fewshot import no_sync
from raygan.search_space import method_module, typed


@dataclass
class Hooks:
    report: Callable[[dict, dict | None], None]  # (metrics, checkpoint state or None)
    restore: dict | None = None  # checkpoint state to resume from
    rank: int = 0
    world_size: int = 1
    grad_sync: Callable = no_sync
    log_dir: str | None = None  # TensorBoard event files (rank 0)
    device: str = "cpu"
    progress: Callable[[str], None] = field(default=lambda line: None)


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN/inf: the trial stops with this reason."""


def build_method(cfg: dict, device="cpu", grad_sync=no_sync, rank=0):
    """Typed sections, the method object, and its source model, from a plain config."""
    from raygan.data.synthetic import few_shot_target
    from raygan.models.checkpoint import load_source

    t = typed(cfg)
    source = load_source(t["model"].checkpoint)
    shots = few_shot_target(size=source.size, n_shots=t["data"].shots, seed=t["data"].seed)
    method = method_module(t["method_name"]).Method(
        t["method"], t["train"], source, shots, device=device, grad_sync=grad_sync,
        seed=t["train"].seed * 1000 + rank)
    return t, method, source


def prepare(cfg: dict, methods: list[str], where: str, progress=print) -> None:
    """Before any trial: check each method's knobs against the source model (a
    module's ``check``) and build what its trials share (a module's ``prepare``,
    e.g. RSSA's inversion of the shots). Other methods run with their defaults."""
    from raygan.config import build
    from raygan.data.synthetic import few_shot_target
    from raygan.models.checkpoint import load_source

    from raygan.metrics.scs import make_edge_detector

    t = typed(cfg, where)
    make_edge_detector(t["train"].scs_edges, t["train"].hed_weights)  # a bad HED file fails here
    source = load_source(t["model"].checkpoint)
    shots = few_shot_target(size=source.size, n_shots=t["data"].shots, seed=t["data"].seed)
    for name in methods:
        module = method_module(name)
        mcfg = t["method"] if name == t["method_name"] else build(module.Config, {}, where, "method")
        if hasattr(module, "check"):
            module.check(mcfg, source, where)
        if hasattr(module, "prepare"):
            module.prepare(mcfg, source, shots, progress)


def run(cfg: dict, hooks: Hooks) -> dict:
    from raygan.metrics.evaluate import Evaluator
    from raygan.metrics.scs import make_edge_detector

    t, method, source = build_method(cfg, hooks.device, hooks.grad_sync, hooks.rank)
    train = t["train"]
    torch.manual_seed(train.seed * 1000 + hooks.rank)
    if hooks.restore is not None:
        method.load_state_dict(hooks.restore)
    evaluator = writer = None
    if hooks.rank == 0:
        evaluator = Evaluator(method.g_source, method.shots, train.eval_samples, seed=train.seed,
                              device=hooks.device, edges=make_edge_detector(train.scs_edges, train.hed_weights))
        if hooks.log_dir:
            from tensorboardX import SummaryWriter
            writer = SummaryWriter(hooks.log_dir)
    metrics, logs, t0 = {}, {}, time.perf_counter()
    while method.step_count < train.steps:
        logs = method.step()
        step = method.step_count
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:
            raise NonFiniteLoss(f"{', '.join(bad)} became non-finite at step {step}")
        if step % train.eval_every and step != train.steps:
            continue
        metrics = {"step": step, **logs, "sec_per_step": (time.perf_counter() - t0) / step}
        if evaluator is not None:
            metrics.update(evaluator.metrics(method.g))
            if writer is not None:
                for k, v in metrics.items():
                    writer.add_scalar(k, v, step)
                writer.add_image("samples/source_vs_adapted", evaluator.grid(method.g), step)
                writer.flush()
            hooks.progress(" ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("loss/")))
        hooks.report(metrics, method.state_dict() if hooks.rank == 0 else None)
    if writer is not None:
        from torchvision.utils import save_image

        grid = torch.nn.functional.interpolate(evaluator.grid(method.g)[None], scale_factor=3, mode="nearest")
        save_image(grid, f"{hooks.log_dir}/samples.png")  # top: G_s, bottom: G_t, same z; 3x for viewing
        writer.close()
    return metrics
