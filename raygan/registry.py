"""Which methods exist, the family each belongs to, and what a family provides.

Imports no raygan module: methods and families are named by their modules' dotted paths and
imported on first use, so any module may import the registry without an import cycle. Adding a
method is one line in ``METHODS`` (docs/ARCHITECTURE.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import import_module
from typing import Callable


def _never_streams(cfg: dict) -> bool:
    return False


def _no_datasets(t: dict) -> None:
    return None


@dataclass(frozen=True)
class Family:
    """What the training loop and the orchestration ask of a method family (few-shot
    adaptation, label-to-image), every member stated once with its default.

    - ``build(t, device, grad_sync, seed, dataset_shard)``: the method object of typed sections ``t``;
    - ``evaluation(t, method, device)``: a class with ``metrics(method)``, ``grid(method)``,
      ``grid_name`` and ``provenance`` (metric -> where its number comes from);
    - ``prepare(t, methods, where, progress, objectives)``: checks and shared caches in the
      driver, before any trial; returns knobs to pin in every trial (dotted key -> value);
    - ``default_objective(cfg)``: (metric, mode) of a plain trial config naming none;
    - ``sections``: data/model/train config classes replacing the shared ones;
    - ``streams(cfg)``: whether a trial streams data through Ray Data;
    - ``ray_datasets(t)``: the Ray datasets a trial streams, or None;
    - ``grid_shared_rows``: rows of a trial's sample grid that every trial shares.
    """
    name: str
    build: Callable
    evaluation: type
    prepare: Callable
    default_objective: Callable
    sections: dict = field(default_factory=dict)
    streams: Callable[[dict], bool] = _never_streams
    ray_datasets: Callable = _no_datasets
    grid_shared_rows: tuple = ("source",)


FAMILIES = {"fewshot": "raygan.families.fewshot", "labelgen": "raygan.families.labelgen"}

# method name -> (family, module defining ``Config`` and ``Method``)
METHODS = {
    "tgan": ("fewshot", "raygan.methods.fewshot.tgan"),
    "freezed": ("fewshot", "raygan.methods.fewshot.freezed"),
    "ewc": ("fewshot", "raygan.methods.fewshot.ewc"),
    "cdc": ("fewshot", "raygan.methods.fewshot.cdc"),
    "dcl": ("fewshot", "raygan.methods.fewshot.dcl"),
    "rssa": ("fewshot", "raygan.methods.fewshot.rssa"),
    "stylegan2": ("fewshot", "raygan.methods.fewshot.stylegan2"),  # pretraining: `raygan pretrain FOLDER`
    "semipaired": ("labelgen", "raygan.methods.labelgen.semipaired"),
    "oasis": ("labelgen", "raygan.methods.labelgen.oasis"),
    "tcr": ("labelgen", "raygan.methods.labelgen.tcr"),
    "usis": ("labelgen", "raygan.methods.labelgen.usis"),
}


def method_module(name: str):
    """The module implementing method ``name``: it defines ``Config`` and ``Method``."""
    return import_module(METHODS[name][1])


def method_named_by(module: str) -> str | None:
    """The registered name of the method a module defines (None: not registered)."""
    return next((name for name, (_, path) in METHODS.items() if path == module), None)


def family_name(method: str) -> str:
    return METHODS[method][0]


def family_of(method: str) -> Family:
    """The Family of a method (its module's ``FAMILY``, checked to be one)."""
    module = import_module(FAMILIES[family_name(method)])
    family = module.FAMILY
    if not isinstance(family, Family):
        raise TypeError(f"{module.__name__}.FAMILY is not a raygan.registry.Family")
    return family
