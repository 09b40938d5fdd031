"""How a training step's gradients are synchronised between data-parallel workers.

A method calls ``grad_sync(params)`` between ``backward()`` and ``optimizer.step()``. One
process needs nothing (``no_sync``); Ray Train workers pass an all-reduce of the mean
(raygan/orchestrate/train.py), so the methods never see Ray or torch.distributed.
"""
from __future__ import annotations

from typing import Callable, Iterable

GradSync = Callable[[Iterable], None]


def no_sync(params: Iterable) -> None:
    """Single-process default: the gradients are already the full batch's."""
