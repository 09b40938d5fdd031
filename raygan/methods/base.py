"""What every method is, to the training loop and the orchestration: one constructor shape
and four members. Nothing else of a method is relied on outside its family."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import torch

from raygan.sync import no_sync


@dataclass
class FewShotData:
    """What a few-shot method adapts: the pretrained source (models.checkpoint.SourceModel)
    the target shots [n, 3, H, W] in [-1, 1], and where they came from (for provenance)."""
    source: object
    shots: torch.Tensor
    shots_name: str = "the shots"


class Method(abc.ABC):
    """``Method(cfg, t, data, device, grad_sync, seed)``: the method's own Config, the typed
    sections of the experiment (``t["train"]``, ``t["model"]``, ...), the family's data
    (few-shot: ``FewShotData``; label-to-image: a batch source), the device, the gradient
    sync of data parallelism (raygan/sync.py) and the seed of its own RNG streams.

    ``step()`` runs one training step and returns its scalar logs; ``step_count`` counts
    them; ``state_dict()`` / ``load_state_dict()`` checkpoint and resume everything a
    step depends on (networks, optimisers, RNG states).

    What a saved state is to the commands that read it (`raygan eval`): ``sampling_map(state,
    g)`` is how its generator is sampled (None: G's own mapping). ``source`` is the pretrained
    model a method adapts (None: trained from scratch)."""
    step_count: int = 0
    source: object | None = None

    @classmethod
    def sampling_map(cls, state: dict, g) -> Callable | None:
        """z -> W+ styles that a saved ``state``'s generator ``g`` is sampled through (e.g.
        RSSA's compression, saved by its state_dict), or None: G's own mapping."""
        return None

    @abc.abstractmethod
    def __init__(self, cfg, t: dict, data, device="cpu", grad_sync: Callable = no_sync, seed: int = 0):
        ...

    @abc.abstractmethod
    def step(self) -> dict:
        ...

    @abc.abstractmethod
    def state_dict(self) -> dict:
        ...

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        ...


def load_optimizer(optimizer, state: dict) -> None:
    """An optimizer's saved moments with this run's hyperparameters (lr, betas, ...): a run
    restored from another run's checkpoint with new knobs (PBT's exploit/explore) trains with
    the new values, not the saved ones (``Optimizer.load_state_dict`` restores both)."""
    configured = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, values in zip(optimizer.param_groups, configured):
        group.update(values)
