"""The few-shot family's wiring: the target shots and source model a method trains on, what its
trials report (``trial_metrics``, ``Evaluation``), and the checks and caches built once in the
driver (``prepare``). The methods themselves are raygan/methods/fewshot/."""
from __future__ import annotations

from typing import Callable

import torch

from raygan.errors import UserError
from raygan.methods.base import FewShotData
from raygan.methods.fewshot.adapter import FewShotAdapter
from raygan.evaluation.fewshot import METRICS, needing
from raygan.methods.fewshot.sections import SECTIONS, TrainConfig
from raygan.models.lpips import BACKBONES
from raygan.registry import Family
from raygan.sync import no_sync


def build(t: dict, device="cpu", grad_sync: Callable = no_sync, seed: int = 0, **_) -> FewShotAdapter:
    """The method of a typed config, with its source model and target shots."""
    from raygan.data.images import target_shots
    from raygan.models.checkpoint import load_source
    from raygan.registry import method_module

    source = load_source(t["model"].checkpoint)
    shots, shots_name = target_shots(t["data"], source.size)
    return method_module(t["method_name"]).Method(t["method"], t, FewShotData(source, shots, shots_name),
                                                  device=device, grad_sync=grad_sync, seed=seed)


def trial_metrics(data, train) -> tuple[str, ...]:
    """What an evaluation computes (``train.metrics``): by default the embedded set on the
    embedded sketches; on a folder target fid (or, without a reference set, fid_shots),
    intra_lpips and scs."""
    from raygan.evaluation.trials import EMBEDDED_DEFAULT

    if train.metrics:
        return tuple(train.metrics)
    if data.embedded:
        return EMBEDDED_DEFAULT
    return ("fid" if data.reference else "fid_shots", "diversity", "scs")


def diversity_metric(data, train) -> str:
    """The metric behind the portable name ``diversity`` (``train.diversity``): intra_lpips, or
    intra_shapesnet; auto picks LPIPS when its weights resolve (an explicit lpips_weights file
    counts even if missing: the error then names it), else ShapesNet on the embedded sketches."""
    from raygan import weights

    if train.diversity != "auto":
        return {"lpips": "intra_lpips", "shapesnet": "intra_shapesnet"}[train.diversity]
    if train.lpips_weights or not data.embedded:
        return "intra_lpips"
    try:
        weights.resolve(BACKBONES[train.lpips_net])
    except UserError:
        return "intra_shapesnet"
    return "intra_lpips"


def computed_metrics(data, train) -> tuple[str, ...]:
    """``trial_metrics`` with ``diversity`` as the metric that computes it."""
    return tuple(diversity_metric(data, train) if m == "diversity" else m for m in trial_metrics(data, train))


def reported_names(data, train) -> list[str]:
    """The keys an evaluation reports: scs as scs_<edges>; with realism and diversity, also
    diversity_at_saturation and saturated_at_step (evaluation/saturation.py)."""
    from raygan.evaluation.saturation import DIVERSITY_AT_SATURATION, SATURATED_AT

    metrics = trial_metrics(data, train)
    names = [f"scs_{train.scs_edges}" if m == "scs" else m for m in metrics]
    if {"realism", "diversity"} <= set(metrics):
        names += [DIVERSITY_AT_SATURATION, SATURATED_AT]
    return names


def default_objective(cfg: dict) -> tuple[str, str]:
    """search.metric / mode when the experiment names none: fd_shapesnet on the embedded
    sketches, else FID against the reference set (or against the shots without one); the
    mode is the metric's registered direction."""
    data = cfg["data"]
    metric = "fd_shapesnet" if data["target"] == "sketches" else ("fid" if data["reference"] else "fid_shots")
    return metric, METRICS[metric].mode


def run_options(t: dict, device="cpu"):
    """The EvalOptions of a trial's published metrics: what `raygan eval` of its
    checkpoint needs to compute the same numbers (same samples, seed, reference and weights)."""
    from raygan.evaluation.fewshot import EvalOptions

    data, train = t["data"], t["train"]
    return EvalOptions(metrics=computed_metrics(data, train), samples=train.eval_samples,
                       reference=data.reference or None, source=t["model"].checkpoint, lpips_net=train.lpips_net,
                       scs_edges=train.scs_edges, inception=train.inception_weights or None,
                       lpips_weights=train.lpips_weights or None, hed=train.hed_weights or None, seed=train.seed,
                       device=str(device))


class Evaluation:
    """The trial's metrics of G_t (``trial_metrics``); grid: G_s above G_t, same z."""
    grid_name = "source_vs_adapted"

    def __init__(self, t: dict, method: FewShotAdapter, device="cpu"):
        from raygan.evaluation.trials import Evaluator

        from raygan.evaluation.saturation import Saturation

        data, train = t["data"], t["train"]
        self.evaluator = Evaluator(method.g_source, method.shots, train.eval_samples, seed=train.seed,
                                   device=device, latent_map=method.latent_map(), metrics=trial_metrics(data, train),
                                   run_options=run_options(t, device), source=method.source,
                                   shots_name=method.shots_name, diversity=diversity_metric(data, train),
                                   saturation=Saturation(train.saturation_window, train.saturation_tolerance,
                                                         train.saturation_realism))

    @property
    def provenance(self) -> dict:
        """Each reported metric: network, weights sha256, resize, samples, reference."""
        return self.evaluator.provenance

    def metrics(self, method: FewShotAdapter) -> dict:
        """The metrics of G_t's EMA (what is saved as g_ema), sampled as the method samples."""
        return self.evaluator.metrics(method.g_ema, method.step_count)

    def grid(self, method: FewShotAdapter) -> torch.Tensor:
        return self.evaluator.grid(method.g_ema)


def check_metrics(t: dict, objectives, where: str) -> None:
    """Before any trial: the metrics suit the target, their weights files and folders exist
    (one line naming the missing file), and every objective is a reported metric."""
    from raygan.evaluation.fewshot import load_edges, preflight
    from raygan.evaluation.saturation import SATURATED_AT

    data, train = t["data"], t["train"]
    metrics = computed_metrics(data, train)
    if not data.embedded:
        embedded = [m for m in metrics if m in needing("embedded")]
        if embedded:
            knob = "train.metrics" if embedded[0] in trial_metrics(data, train) else "train.diversity"
            raise UserError(where, f"{knob}: {embedded[0]} uses raygan's ShapesNet, which knows only the "
                                   "embedded sketches; a folder target is scored by fid/kid (with data.reference), "
                                   "fid_shots, diversity (LPIPS) or scs")
    if not data.embedded and not data.reference and set(needing("reference")) & set(metrics):
        raise UserError(where, "train.metrics: fid/kid on a folder target need data.reference (a folder of "
                               "held-out target images); without one use fid_shots, intra_lpips or scs")
    names = reported_names(data, train)
    for metric, _ in objectives:
        if metric == SATURATED_AT and metric not in names:
            raise UserError(where, "search.stopper: realism_plateau needs realism and diversity among the "
                                   f"trials' metrics (they report {', '.join(names)}; set train.metrics)")
        if metric not in names:
            raise UserError(where, f"search.metric: {metric!r} is not reported by this experiment's trials "
                                   f"(they report {', '.join(names)}; set train.metrics)")
    preflight(metrics, run_options(t))
    if "scs" in metrics and train.scs_edges == "hed":
        from raygan import weights

        load_edges("hed", str(weights.resolve("hed", train.hed_weights or None).path))  # a bad HED file fails here


def pinned_weights(t: dict) -> dict[str, str]:
    """The weights files this driver found, as knobs for the trials (``train.*_weights``): a
    trial then reads the very file that was checked and hashed here, whatever environment its
    Ray worker was started with."""
    from raygan import weights

    metrics, train = set(computed_metrics(t["data"], t["train"])), t["train"]
    wanted = {"inception_weights": ("inception", bool(metrics & set(needing("inception")))),
              "lpips_weights": (BACKBONES[train.lpips_net], bool(metrics & set(needing("lpips")))),
              "hed_weights": ("hed", bool(metrics & set(needing("source"))) and train.scs_edges == "hed")}
    pins = {f"train.{knob}": str(weights.resolve(name, getattr(train, knob) or None).path.resolve())
            for knob, (name, used) in wanted.items() if used}
    # What `diversity` is, decided once here, so every trial computes the same one.
    pins["train.diversity"] = {"intra_lpips": "lpips", "intra_shapesnet": "shapesnet"}[
        diversity_metric(t["data"], train)]
    return pins


def prepare(t: dict, methods: list[str], where: str, progress=print, objectives=()) -> dict[str, str]:
    """Check the metrics and each method's knobs against the source (a module's ``check``)
    and build what its trials share (a module's ``prepare``, the metric caches); methods of
    a grid other than the configured one run with their defaults. Returns the knobs to pin
    in every trial (``pinned_weights``)."""
    from raygan.config import build as build_config
    from raygan.data.images import target_shots
    from raygan.models.checkpoint import load_source
    from raygan.registry import method_module

    source = load_source(t["model"].checkpoint)
    if not t["data"].embedded:
        from raygan.data.images import check_folder

        check_folder(t["data"].target, 1, "target images")  # every file decoded; too few: target_shots says so
    shots, _ = target_shots(t["data"], source.size)
    check_metrics(t, objectives, where)
    for name in methods:
        module = method_module(name)
        mcfg = t["method"] if name == t["method_name"] else build_config(module.Config, {}, where, "method")
        module.Method.check(mcfg, source, where)
        module.Method.prepare(mcfg, source, shots, progress)
    warm_caches(t, source, shots, progress)
    return pinned_weights(t)


def warm_caches(t: dict, source, shots, progress=print) -> None:
    """What every trial's evaluation would otherwise build first, once, in the driver:
    ShapesNet and its reference statistics, the reference set's Inception features."""
    from raygan.evaluation.trials import warm_cache

    metrics = computed_metrics(t["data"], t["train"])
    if set(metrics) & set(needing("embedded")):
        warm_cache(source.size)
    if set(metrics) & set(needing("reference")):
        from raygan.evaluation.fewshot import Run

        progress("inception features of the reference set (cached)")
        Run(run_options(t), source, images=None, z=None).reference_features()


class TrainSection(TrainConfig):
    """The few-shot ``train`` section, its metric names checked against the registry (the
    methods' layer, where TrainConfig lives, cannot see evaluation/)."""

    def validate(self, where, section):
        allowed = ("diversity", *METRICS)
        bad = [m for m in self.metrics if m not in allowed]
        if bad:
            raise UserError(where, f"{section}.metrics: unknown metric {bad[0]!r} (expected some of "
                                   f"{', '.join(allowed)})")
        super().validate(where, section)


FAMILY = Family(name="fewshot", build=build, evaluation=Evaluation, prepare=prepare,
                default_objective=default_objective, sections={**SECTIONS, "train": TrainSection},
                grid_shared_rows=("source",))
