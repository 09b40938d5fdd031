"""Typed configuration, validated once at the edge.

Every knob is a dataclass field; its metadata says what values are allowed:
``knob(default, lo=..., hi=..., choices=..., help=...)``. ``build(cls, mapping,
where)`` turns a YAML mapping into the dataclass or raises a one-line
``UserError`` naming the file, the key and what was expected.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

from raygan.errors import UserError


def knob(default, *, lo=None, hi=None, lo_open=False, choices=None, help="", path=False):
    """A config field with its allowed range (inclusive unless lo_open); ``path``: a file or
    folder, made absolute when the experiment is loaded (see ``absolute_path``)."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "help": help, "path": path}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def check_value(f: dataclasses.Field, value: Any, where: str, key: str, tp=None):
    """Validate one value against a field's type and range; return it coerced."""
    tp = tp or f.type
    meta = f.metadata
    origin = typing.get_origin(tp)
    if origin is typing.Union:  # e.g. Optional[str], or Union[str, list[str]]
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        args = [a for a in args if a is not type(None)]
        # A value is checked against the union's member of its own type (a list against the list
        # type), else against the first member.
        plain = [a for a in args if typing.get_origin(a) is None and isinstance(value, a)
                 and not (a is int and isinstance(value, bool))]
        tp = plain[0] if plain else next(
            (a for a in args if (typing.get_origin(a) is list) == isinstance(value, list)), args[0])
        origin = typing.get_origin(tp)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise UserError(where, f"{key}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return [check_value(f, v, where, key, item_tp) for v in value]
    if tp is bool:
        if not isinstance(value, bool):
            raise UserError(where, f"{key}: expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(where, f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 5e-4 (no dot) as text
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise UserError(where, f"{key}: expected a number, got {value!r}")
        value = float(value)
    elif tp is str:
        if not isinstance(value, str):
            raise UserError(where, f"{key}: expected a string, got {value!r}")
    if meta.get("choices") is not None and value not in meta["choices"]:
        raise UserError(where, f"{key}: expected one of {meta['choices']}, got {value!r}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
        op = ">" if meta.get("lo_open") else ">="
        raise UserError(where, f"{key}: expected a value {op} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise UserError(where, f"{key}: expected a value <= {hi}, got {value!r}")
    return value


def fields_of(cls) -> dict[str, dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        f.type = hints[f.name]
        out[f.name] = f
    return out


# Knobs that moved to another section: their old place is refused, naming the new one.
MOVED = {f"train.{k}": f"eval.{k}" for k in (
    "metrics", "scs_edges", "lpips_net", "diversity", "saturation_window", "saturation_tolerance",
    "saturation_realism", "inception_weights", "lpips_weights", "hed_weights")}


def unknown_key(where: str, section: str, key: str, known) -> UserError:
    """The error for a key a section does not have (or no longer has: ``MOVED``)."""
    if f"{section}.{key}" in MOVED:
        return UserError(where, f"'{section}.{key}' moved to '{MOVED[f'{section}.{key}']}' (the evaluation knobs "
                                "have their own section, eval:)")
    return UserError(where, f"unknown key '{section}.{key}' (expected one of: {', '.join(known)})")


def build(cls, mapping: Any, where: str, section: str):
    """Build dataclass ``cls`` from a YAML mapping, rejecting unknown keys."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UserError(where, f"{section}: expected a mapping of settings, got {mapping!r}")
    known = fields_of(cls)
    values = {}
    for key, value in mapping.items():
        if key not in known:
            raise unknown_key(where, section, key, known)
        values[key] = check_value(known[key], value, where, f"{section}.{key}")
    obj = cls(**values)
    if hasattr(obj, "validate"):
        obj.validate(where, section)
    return obj


KEYWORDS = ("embedded", "sketches")  # path knobs' values that name built-in assets, not files


def absolute_path(value: str) -> str:
    """A path knob's value as the trials see it: ``~`` expanded and relative paths taken from the
    directory `raygan` was started in (Tune runs each trial in its own folder); empty values
    and the built-in names (``embedded``, ``sketches``) stay as they are."""
    from pathlib import Path

    if not value or value in KEYWORDS:
        return value
    return str(Path(value).expanduser().resolve())


# ----------------------------------------------------------------------------
# The run sections every experiment shares (search, scaling, output). A family's
# data/model/train sections live in its package (methods/<family>/sections.py),
# a method's knobs in its method file.

MAX_OBJECTIVES = 3


@dataclass
class SearchConfig:
    num_samples: int = knob(8, lo=1)
    metric: typing.Union[str, list[str]] = knob("fd_shapesnet", help="metric to optimise, or a list of objectives")
    mode: typing.Union[str, list[str]] = knob("min", choices=["min", "max"], help="one per metric")
    searcher: str = knob("tpe", choices=["tpe", "random", "nsga2"])
    scheduler: str = knob("fifo", choices=["fifo", "asha", "pbt"])
    scope: str = knob("best", choices=["best", "last"],
                      help="rank, report and promote a trial by its best evaluation so far, or by its last")
    stopper: str = knob("none", choices=["none", "realism_plateau"],
                        help="realism_plateau: end a trial once its realism has saturated (eval.saturation_*)")
    startup_trials: int = knob(10, lo=1, help="TPE: random trials before it models the space "
                                              "(Optuna's n_startup_trials, default 10)")
    grace_period: int = knob(1, lo=1, help="ASHA: evaluations before a trial may stop")
    perturbation_interval: int = knob(2, lo=1, help="PBT: evaluations between exploit/explore steps")
    max_concurrent: int = knob(2, lo=1)
    seed: int = knob(0, lo=0)
    # Seed noise (orchestrate/replicates.py, raygan/stats.py): a configuration is trained on
    # `repeats` seeds and judged by their statistic; the final ranking says what is within noise.
    repeats: int = knob(1, lo=1, help="seeds each configuration trains on (train.seed, train.seed+1, ...), in "
                                      "parallel; every report is over the seeds")
    repeat_data: bool = knob(False, help="the seeds also draw other shots / splits (data.seed + i)")
    statistic: str = knob("mean", choices=["mean", "median", "pessimistic"],
                          help="what the searcher and schedulers see of the seeds' values; pessimistic: "
                               "the mean one standard error towards worse")
    window: int = knob(1, lo=1, help="scope best: rank a run by the mean of the objective over this many "
                                     "consecutive evaluations (1: its single best evaluation)")
    tie_alpha: float = knob(0.05, lo=0.0, hi=0.5, lo_open=True,
                            help="a configuration is tied with rank 1 unless Welch's t-test (one-sided) "
                                 "says it is worse at this level")
    confirm_top: int = knob(0, lo=0, help="after the search, the best this many configurations run on fresh "
                                          "seeds until rank 1 is separated (0: no confirmation stage)")
    confirm_seeds: int = knob(3, lo=1, help="fresh seeds per configuration per confirmation round")
    confirm_rounds: int = knob(2, lo=1, help="confirmation rounds at most (the stage's budget)")

    @property
    def objectives(self) -> list[tuple[str, str]]:
        """(metric, mode) pairs: one for a plain search, several for a Pareto search."""
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        modes = self.mode if isinstance(self.mode, list) else [self.mode]
        return list(zip(metrics, modes))

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def describe(self) -> str:
        text = " and ".join(f"{m} ({d})" for m, d in self.objectives)
        text = f"{text}, Pareto front" if self.multi_objective else text
        at = f"{self.scope} evaluation" if self.scope == "last" or self.window == 1 else \
            f"best window of {self.window} evaluations"
        over = f", {self.statistic} of {self.repeats} seeds" if self.repeats > 1 else ""
        return f"{text}; each trial at its {at}{over}"

    def validate(self, where, section):
        metrics = self.metric if isinstance(self.metric, list) else [self.metric]
        modes = self.mode if isinstance(self.mode, list) else [self.mode]
        if isinstance(self.metric, list) != isinstance(self.mode, list) or len(metrics) != len(modes):
            raise UserError(where, f"{section}.mode: expected one mode per metric ({len(metrics)} metric(s) "
                                   f"{self.metric!r}), got {self.mode!r}")
        if not 1 <= len(metrics) <= MAX_OBJECTIVES:
            raise UserError(where, f"{section}.metric: expected 1 to {MAX_OBJECTIVES} objectives, got {len(metrics)}")
        if len(set(metrics)) < len(metrics):
            raise UserError(where, f"{section}.metric: expected distinct objectives, got {self.metric!r}")
        if len(metrics) == 1:  # [m] is m
            self.metric, self.mode = metrics[0], modes[0]
        if len(metrics) > 1 and self.scheduler in ("asha", "pbt"):
            raise UserError(where, f"{section}.scheduler: {self.scheduler} ranks trials by one metric; a search "
                                   "with several objectives needs fifo")
        if self.scheduler == "pbt" and self.searcher != "random":
            raise UserError(where, f"{section}.scheduler: pbt explores by itself and cannot be combined with "
                                   f"searcher {self.searcher} (the default is tpe); set searcher: random, from "
                                   "which PBT draws its first population")
        if self.confirm_top == 1:
            raise UserError(where, f"{section}.confirm_top: confirming one configuration compares it with "
                                   "nothing; expected 0 (off) or at least 2")
        if self.confirm_top and (len(metrics) > 1 or self.scheduler == "pbt"):
            why = "several objectives have no single leader" if len(metrics) > 1 else \
                "PBT's trials change their knobs as they train, so there is no configuration to rerun"
            raise UserError(where, f"{section}.confirm_top: {why}; set confirm_top 0")
        if "diversity_at_saturation" in metrics and self.scheduler != "fifo":
            raise UserError(where, f"{section}.scheduler: diversity_at_saturation has no value before realism "
                                   f"saturates, so {self.scheduler} cannot compare trials by it; use fifo")


@dataclass
class ScalingConfig:
    num_workers: int = knob(1, lo=1)
    use_gpu: typing.Union[bool, str] = knob(False, choices=[False, True, "auto"],
                                            help="one GPU per worker; auto: if the Ray cluster has GPUs")

    def on_cluster(self, gpus: float) -> "ScalingConfig":
        """This scaling with ``use_gpu: auto`` decided by the GPUs of the cluster it runs on."""
        return dataclasses.replace(self, use_gpu=gpus > 0) if self.use_gpu == "auto" else self
    # 0.9, not 1: each trial's coordinating actor holds 0.01 CPU, so two 1-CPU
    # trials would need 2.02 CPUs and never both start on a 2-core machine.
    cpus_per_worker: float = knob(0.9, lo=0.0, lo_open=True)
    placement: str = knob("pack", choices=["pack", "spread", "strict_spread"],
                          help="a trial's Train workers: packed onto few nodes, spread, or one per node")
    max_failures: int = knob(2, lo=0, help="worker crashes a trial recovers from, each time from its last checkpoint")


@dataclass
class OutputConfig:
    dir: str = knob("./raygan_results")
    name: str = knob("", help="experiment name; default: the YAML file's stem")
