"""The training loop: plain PyTorch, no Ray.

``run(config, hooks)`` trains the method for ``train.steps`` steps, evaluates
before the first step, every ``train.eval_every`` steps and at the end with its family's evaluator
and hands metrics and a checkpoint to ``hooks.report``. A step's logs stay on the device
between evaluations (``LossWatch``): nothing in a step waits for the GPU. ``raygan train --local`` calls it
directly; the orchestrate layer calls it inside Ray Train workers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from raygan.train.best import BestEvaluation
from raygan.sync import no_sync
from raygan.registry import family_of
from raygan.search_space import resolve, typed


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
    dataset_shard: Callable | None = None  # ray.train.get_dataset_shard in workers that stream data
    best: BestEvaluation | None = None  # search.scope best: the trial's best evaluation (train/best.py), rank 0


class NonFiniteLoss(FloatingPointError):
    """A loss became NaN/inf: the trial stops with this reason."""


class LossWatch:
    """Notices non-finite losses without a host sync per step: a step's logs are 0-d tensors on
    the device, and for each one the first step at which it was NaN/inf is kept there too;
    ``check`` reads them (one sync) at evaluations. A run that diverges therefore trains on to
    its next evaluation, and stops there naming the step it diverged at."""

    def __init__(self):
        self.first_bad: dict[str, torch.Tensor] = {}  # name -> first non-finite step, -1: none yet

    def add(self, logs: dict, step: int) -> None:
        for k, v in logs.items():
            seen = self.first_bad.get(k)
            if seen is None:
                seen = torch.full((), -1, dtype=torch.long, device=v.device)
            self.first_bad[k] = torch.where((seen < 0) & ~torch.isfinite(v), step, seen)

    def check(self) -> None:
        bad = {k: s for k, s in ((k, int(v)) for k, v in self.first_bad.items()) if s >= 0}
        if bad:
            first = min(bad.values())
            names = [k for k, s in bad.items() if s == first]
            raise NonFiniteLoss(f"{', '.join(names)} became non-finite at step {first}")


def scalars(logs: dict) -> dict[str, float]:
    """A step's logs as floats (a host sync on CUDA: at evaluations only)."""
    return {k: float(v) for k, v in logs.items()}


def build_method(cfg: dict, device="cpu", grad_sync=no_sync, rank=0, dataset_shard=None):
    """Typed sections, the method object, and its source model (None for methods
    trained from scratch), from a plain config."""
    t = typed(cfg)
    # Freshly initialised parts (e.g. CDC's patch head) draw from torch's global RNG: seed it
    # first, alike on every rank, so that a run is reproducible and every rank builds the same
    # initial networks, as DDP's broadcast from rank 0 would give; run() then seeds each rank's
    # sampling apart.
    torch.manual_seed(t["train"].seed)
    method = family_of(t["method_name"]).build(t, device=device, grad_sync=grad_sync,
                                               seed=t["train"].seed * 1000 + rank, dataset_shard=dataset_shard)
    return t, method, method.source


def prepare(cfg: dict, methods: list[str], where: str, progress=print, objectives=()) -> dict:
    """Before any trial: each method family checks its knobs against what they
    depend on (e.g. α^l against the source model, the metrics' weights files, that
    the search ``objectives`` are reported) and builds what trials share (e.g.
    RSSA's inversion of the shots). Returns ``cfg`` with the knobs the family pins
    (e.g. the weights files it found) set."""
    t = typed(cfg, where)
    pinned = family_of(t["method_name"]).prepare(t, methods, where, progress, objectives)
    return resolve(cfg, pinned)


PROVENANCE_FILE = "metrics_provenance.json"


def write_provenance(folder: str, provenance: dict) -> None:
    """Where each reported metric's number comes from (network, weights sha256, resize,
    samples, reference), beside the trial's TensorBoard logs."""
    import json
    from pathlib import Path

    path = Path(folder) / PROVENANCE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(provenance, indent=2, default=str))


@dataclass
class Evaluation:
    """One evaluation of a training run: its metrics, the state to checkpoint (rank 0, None at
    step 0) and the sample grid as it is now, 3x for viewing (drawn only when asked for)."""
    metrics: dict
    state: dict | None
    grid: Callable[[], torch.Tensor]


def run(cfg: dict, hooks: Hooks) -> dict:
    """Train to the end, handing each evaluation to ``hooks.report``; returns the last metrics."""
    metrics = {}
    for ev in evaluations(cfg, hooks):
        hooks.report(ev.metrics, ev.state)
        metrics = ev.metrics
    return metrics


def evaluations(cfg: dict, hooks: Hooks) -> Iterator[Evaluation]:
    """The training run as a stream of its evaluations: before the first step, every
    ``train.eval_every`` steps and at the end (training runs on while the consumer handles each
    one; a search's replicates are consumed in lockstep, orchestrate/replicates.py)."""
    t, method, _ = build_method(cfg, hooks.device, hooks.grad_sync, hooks.rank, hooks.dataset_shard)
    train = t["train"]
    torch.manual_seed(train.seed * 1000 + hooks.rank)
    if hooks.restore is not None:
        method.load_state_dict(hooks.restore)
    evaluator = writer = None
    if hooks.rank == 0:
        evaluator = family_of(t["method_name"]).evaluation(t, method, hooks.device)
        if hooks.log_dir:
            from tensorboardX import SummaryWriter
            # Own suffix: Tune's logger writes events.out.tfevents.<second>.<host> in a trial
            # folder too, and two writers that start in the same second would share one file.
            writer = SummaryWriter(hooks.log_dir, filename_suffix=".raygan")
    t0 = time.perf_counter()
    first_step = method.step_count  # after a restore: this run's steps count, not the restored ones
    provenance_written = []

    def evaluate(logs: dict) -> dict:
        step = method.step_count
        metrics = {"step": step, **logs, "sec_per_step": (time.perf_counter() - t0) / max(step - first_step, 1)}
        if evaluator is not None:
            metrics.update(evaluator.metrics(method))
            if hooks.log_dir and evaluator.provenance and not provenance_written:
                write_provenance(hooks.log_dir, evaluator.provenance)
                provenance_written.append(True)
            if writer is not None:
                for k, v in metrics.items():
                    if math.isfinite(v):  # NaN marks "no value yet" (e.g. diversity_at_saturation)
                        writer.add_scalar(k, v, step)
                writer.add_image(f"samples/{evaluator.grid_name}", evaluator.grid(method), step)
                writer.flush()
            hooks.progress(" ".join(f"{k}={v:.4g}" for k, v in metrics.items() if not k.startswith("loss/"))
                           + eta(step))
        return metrics

    def eta(step: int) -> str:
        if step == first_step or step >= train.steps:
            return ""
        seconds = (time.perf_counter() - t0) / (step - first_step) * (train.steps - step)
        return f" eta={seconds / 60:.1f}min" if seconds >= 120 else f" eta={seconds:.0f}s"

    def viewing_grid() -> torch.Tensor:
        return torch.nn.functional.interpolate(evaluator.grid(method)[None], scale_factor=3, mode="nearest")[0]

    def with_best(metrics: dict, state: dict | None) -> dict:
        if hooks.best is not None:
            if state is not None and hooks.best.update(metrics):
                hooks.best.save(state, viewing_grid())
            else:
                hooks.best.save(None)
            metrics.update(hooks.best.reported())
        return metrics

    if method.step_count == 0:  # the curves start at the source (DCL Fig. 2); nothing to checkpoint yet
        yield Evaluation(with_best(evaluate({}), None), None, viewing_grid)
        t0 = time.perf_counter()  # sec_per_step counts training steps (and later evaluations)
    watch = LossWatch()
    while method.step_count < train.steps:
        logs = method.step()
        step = method.step_count
        watch.add(logs, step)
        if step % train.eval_every and step != train.steps:
            continue
        watch.check()
        state = method.state_dict() if hooks.rank == 0 else None
        yield Evaluation(with_best(evaluate(scalars(logs)), state), state, viewing_grid)
    if writer is not None:
        from torchvision.utils import save_image

        save_image(viewing_grid(), f"{hooks.log_dir}/samples.png")  # 3x for viewing
        writer.close()
