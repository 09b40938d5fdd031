"""Experiment YAML -> typed sections + a search space of distributions.

One file says the method, the data, the budget, the scaling and the space.
Any knob of ``data``, ``model``, ``train`` or ``method`` is either a constant or
a distribution written in place::

    method:
      name: dcl
      lambda1: {loguniform: [0.1, 10]}   # searched
      tau: 0.07                          # constant

Distributions map one-to-one onto Tune's: uniform, loguniform, int (inclusive
bounds), choice, grid (every option, each in its own trial). Each bound or
option is validated like the knob itself. A list knob may hold distributions
per element (``compression: [0, 0, {uniform: [0, 0.2]}, ...]``), searched as
``method.compression.2``. The method itself may be a grid dimension
(``method: {name: {grid: [tgan, dcl]}}``); each method then runs with its
paper defaults.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raygan import config as C
from raygan.errors import UserError
from raygan.registry import METHODS, family_of, method_module

TRAINABLE_SECTIONS = ("data", "model", "train", "eval")  # each family's own classes (Family.sections)
RUN_SECTIONS = {"search": C.SearchConfig, "scaling": C.ScalingConfig, "output": C.OutputConfig}
TOP_KEYS = ["name", "method", *TRAINABLE_SECTIONS, *RUN_SECTIONS]
DIST_KINDS = ("uniform", "loguniform", "int", "choice", "grid")


def sections_for(name: str) -> dict:
    """The data/model/train sections of a method's experiments (its family's)."""
    return family_of(name).sections


@dataclass
class Dist:
    kind: str
    args: list


@dataclass
class Experiment:
    path: str
    name: str
    method: str  # a method name, or "a|b|c" when the method is a grid dimension
    trial_config: dict  # nested constants: {"data": {...}, "train": {...}, "method": {...}}
    space: dict[str, Dist]  # dotted knob -> distribution
    search: C.SearchConfig
    scaling: C.ScalingConfig
    output: C.OutputConfig
    defaults_used: list = field(default_factory=list)

    @property
    def methods(self) -> list[str]:
        """Every method this experiment runs."""
        d = self.space.get("method.name")
        return list(d.args) if d else [self.method]

    @property
    def is_grid(self) -> bool:
        return any(d.kind == "grid" for d in self.space.values())


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load that refuses a key given twice in one mapping (PyYAML
    silently keeps the last one, so a typo'd override would go unnoticed)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` may be overridden
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base constructor reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise UserError(path, "no such file (expected an experiment YAML)")
    try:
        return yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(path, f"malformed YAML{at}: {getattr(e, 'problem', None) or e}") from None
    except UnicodeDecodeError:
        raise UserError(path, "not UTF-8 text (expected an experiment YAML)") from None


def _parse_dist(f, spec: dict, where: str, key: str, tp=None) -> Dist:
    if len(spec) != 1 or next(iter(spec)) not in DIST_KINDS:
        raise UserError(where, f"{key}: expected a value or one distribution of {list(DIST_KINDS)}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    listed = kind in ("choice", "grid")
    if not isinstance(args, list) or (not listed and len(args) != 2) or not args:
        shape = "a non-empty list of options" if listed else "[low, high]"
        raise UserError(where, f"{key}: {kind} expects {shape}, got {args!r}")
    if listed:
        return Dist(kind, [C.check_value(f, a, where, key, tp) for a in args])
    tp = tp or f.type
    if typing.get_origin(tp) is typing.Union:  # Optional[float]: a preset-governed knob
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if kind == "int" and tp is not int:
        raise UserError(where, f"{key}: int distribution on a non-integer knob; use uniform")
    if kind in ("uniform", "loguniform") and tp is not float:
        raise UserError(where, f"{key}: {kind} needs a real-valued knob; use int or choice")
    lo, hi = (C.check_value(f, a, where, key, tp) for a in args)
    if not lo < hi:
        raise UserError(where, f"{key}: expected low < high, got [{lo}, {hi}]")
    if kind == "loguniform" and lo <= 0:
        raise UserError(where, f"{key}: loguniform needs low > 0, got {lo}")
    return Dist(kind, [lo, hi])


def _split_section(cls, mapping, where, section, space) -> dict:
    """Validate one section; distributions go to ``space``, constants are returned."""
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise UserError(where, f"{section}: expected a mapping of settings, got {mapping!r}")
    fields = C.fields_of(cls)
    constants = {}
    for key, value in mapping.items():
        if key not in fields:
            raise C.unknown_key(where, section, key, fields)
        if isinstance(value, dict):
            space[f"{section}.{key}"] = _parse_dist(fields[key], value, where, f"{section}.{key}")
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            constants[key] = _split_list(fields[key], value, where, f"{section}.{key}", space)
        else:
            constants[key] = value
    obj = C.build(cls, constants, where, section)  # validates constants and cross-field rules
    out = dataclasses.asdict(obj)
    for key, f in fields.items():
        if f.metadata.get("path") and isinstance(out[key], str):
            out[key] = C.absolute_path(out[key])
    return out


def _split_list(f, values: list, where: str, key: str, space) -> list:
    """Per-element distributions of a list knob; the constant keeps each one's
    first option / lower bound as a placeholder (what ``raygan train`` uses)."""
    item_tp = (typing.get_args(f.type) or (None,))[0]
    if typing.get_origin(f.type) is not list:
        raise UserError(where, f"{key}: expected a value or one distribution, got a list")
    out = []
    for i, v in enumerate(values):
        if isinstance(v, dict):
            d = _parse_dist(f, v, where, f"{key}[{i}]", item_tp)
            space[f"{key}.{i}"] = d
            v = d.args[0]
        out.append(v)
    return out


def _method_dist(spec, where: str) -> Dist:
    """``method.name: {grid: [...]}`` (or choice) -> a Dist over method names."""
    if len(spec) != 1 or next(iter(spec)) not in ("grid", "choice"):
        raise UserError(where, f"method.name: expected a method or {{grid: [methods]}}, got {spec!r}")
    names = next(iter(spec.values()))
    if not isinstance(names, list) or not names:
        raise UserError(where, "method.name: grid expects a non-empty list of methods")
    bad = [n for n in names if n not in METHODS]
    if bad:
        raise UserError(where, f"method.name: expected methods from {list(METHODS)}, got {bad}")
    return Dist(next(iter(spec)), names)


def load_experiment(path) -> Experiment:
    where = str(path)
    doc = read_yaml(path)
    if not isinstance(doc, dict):
        raise UserError(where, f"expected a mapping with keys {TOP_KEYS}, got {type(doc).__name__}")
    for key in doc:
        if key not in TOP_KEYS:
            raise UserError(where, f"unknown key '{key}' (expected one of: {', '.join(TOP_KEYS)})")
    method = doc.get("method")
    if not isinstance(method, dict) or "name" not in method:
        raise UserError(where, f"method: expected a mapping with 'name' (one of {list(METHODS)})")
    mname = method["name"]
    space: dict[str, Dist] = {}
    knobs = {k: v for k, v in method.items() if k != "name"}
    if isinstance(mname, dict):
        space["method.name"] = _method_dist(mname, where)
        if knobs:
            raise UserError(where, f"method.{next(iter(knobs))}: with method.name a grid, every method runs "
                                   "with its paper defaults (tune one method's knobs in its own file)")
        mname = space["method.name"].args[0]
    elif mname not in METHODS:
        raise UserError(where, f"method.name: expected one of {list(METHODS)}, got {mname!r}")

    if "method.name" in space and len({family_of(m).name for m in space["method.name"].args}) > 1:
        raise UserError(where, "method.name: a grid may only mix methods of one family "
                               "(few-shot adaptation or label-to-image)")
    sections = sections_for(mname)
    absent = [s for s in TRAINABLE_SECTIONS if s in doc and s not in sections]
    if absent:
        raise UserError(where, f"{absent[0]}: the {family_of(mname).name} family's experiments have no {absent[0]} "
                               f"section (expected: {', '.join(sections)})")
    trial = {s: _split_section(cls, doc.get(s), where, s, space) for s, cls in sections.items()}
    trial["method"] = _split_section(method_module(mname).Config, knobs, where, "method", space)
    if "method.name" in space:  # each method builds its own defaults in its trials
        trial["method"] = {}
    trial["method"]["name"] = mname
    run = {s: C.build(cls, doc.get(s), where, s) for s, cls in RUN_SECTIONS.items()}
    _check_repeats(run["search"], run["scaling"], space, where)
    given = doc.get("search") or {}
    if "metric" not in given:  # the family's own objective (mode too, unless given)
        metric, mode = family_of(mname).default_objective(trial)
        run["search"].metric, run["search"].mode = metric, given.get("mode", mode)
    name = doc.get("name") or run["output"].name or Path(path).stem
    if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
        raise UserError(where, f"name: expected letters, digits, '-' or '_', got {name!r}")
    label = "|".join(space["method.name"].args) if "method.name" in space else mname
    return Experiment(where, name, label, trial, space, **run)


def _check_repeats(search: C.SearchConfig, scaling: C.ScalingConfig, space: dict, where: str) -> None:
    """The seed-noise knobs against the rest of the file (orchestrate/replicates.py)."""
    if search.repeats > 1 and scaling.num_workers > 1:
        raise UserError(where, f"search.repeats: {search.repeats} seeds of a {scaling.num_workers}-worker run are not "
                               "supported; use scaling.num_workers 1 (each seed is one process) or repeats 1")
    if search.repeats > 1 and "train.seed" in space:
        raise UserError(where, "search.repeats: train.seed is already a search dimension; the repeats set it "
                               "(train.seed, train.seed + 1, ...): use one or the other")
    if search.repeat_data and "data.seed" in space:
        raise UserError(where, "search.repeat_data: data.seed is already a search dimension; use one or the other")
    if search.window > 1 and search.scope != "best":
        raise UserError(where, f"search.window: {search.window} evaluations rank a run under scope best; "
                               "scope last ranks it by its last evaluation")


def resolve(trial_config: dict, sampled: dict) -> dict:
    """Put sampled values (dotted keys, as Tune gives them) into the nested config."""
    out = json.loads(json.dumps(trial_config))
    for dotted, value in sampled.items():
        section, key, *index = dotted.split(".")
        if isinstance(value, str) and value[:1] in "[{":
            value = json.loads(value)
        if index:  # one element of a list knob
            out[section][key][int(index[0])] = value
        else:
            out[section][key] = value
    return out


def typed(trial_config: dict, where: str = "trial config"):
    """Nested plain config -> typed sections (re-validated: sampled values too)."""
    m = dict(trial_config["method"])
    name = m.pop("name")
    sections = {s: C.build(cls, trial_config.get(s), where, s) for s, cls in sections_for(name).items()}
    sections["method"] = C.build(method_module(name).Config, m, where, "method")
    sections["method_name"] = name
    return sections
