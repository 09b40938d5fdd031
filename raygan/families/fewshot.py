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
from raygan.evaluation.section import EvalConfig
from raygan.methods.fewshot.sections import SECTIONS
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


WEIGHTS_FREE_DEFAULT = ("realism", "diversity", "fd_domainnet", "scs")  # a folder target without Inception weights


def trial_metrics(data, ev) -> tuple[str, ...]:
    """What an evaluation computes (``eval.metrics``): by default the embedded set on the
    embedded sketches; on a folder target with the FID Inception weights the published set,
    fid (or, without a reference set, fid_shots), diversity and scs; without them the
    weights-free set of the realism classifier C (``default_set`` says which and why)."""
    from raygan.evaluation.trials import EMBEDDED_DEFAULT

    if ev.metrics:
        return tuple(ev.metrics)
    if data.embedded:
        return EMBEDDED_DEFAULT
    if inception_missing(ev):
        return WEIGHTS_FREE_DEFAULT
    return ("fid" if data.reference else "fid_shots", "diversity", "scs")


def inception_missing(ev) -> str:
    """Why the FID Inception weights are not found ('' when they are, or when a file is named
    in eval.inception_weights: a missing one is then an error that names it)."""
    from raygan import weights

    if ev.inception_weights:
        return ""
    try:
        weights.resolve("inception")
    except UserError as e:
        return f"{e.where}: {e.message.split(':')[0]}"
    return ""


def default_set(data, ev) -> str:
    """One line: which metrics the trials report, and why that set."""
    names = ", ".join(reported_names(data, ev))
    if ev.metrics:
        return f"metrics: {names} (eval.metrics)"
    if data.embedded:
        return f"metrics: {names} (the embedded sketches' set, raygan's ShapesNet)"
    if missing := inception_missing(ev):
        return (f"metrics: {names}: the weights-free set of a folder target (realism classifier C), as {missing}; "
                f"with the FID Inception weights the published set (fid, diversity, scs); eval.metrics chooses")
    return f"metrics: {names}: the published set of a folder target (the FID Inception weights are found)"


DIVERSITY = {"lpips": "intra_lpips", "shapesnet": "intra_shapesnet", "domainnet": "intra_domainnet"}  # eval.diversity


def diversity_metric(data, ev) -> str:
    """The metric behind the portable name ``diversity`` (``eval.diversity``): intra_lpips,
    intra_shapesnet or intra_domainnet; auto picks LPIPS when its weights resolve (an explicit
    lpips_weights file counts even if missing: the error then names it), else ShapesNet on
    the embedded sketches and the realism classifier C's features on a folder target."""
    from raygan import weights

    if ev.diversity != "auto":
        return DIVERSITY[ev.diversity]
    if ev.lpips_weights:
        return "intra_lpips"
    try:
        weights.resolve(BACKBONES[ev.lpips_net])
    except UserError:
        return "intra_shapesnet" if data.embedded else "intra_domainnet"
    return "intra_lpips"


def computed_metrics(data, ev) -> tuple[str, ...]:
    """``trial_metrics`` with ``diversity`` as the metric that computes it."""
    return tuple(diversity_metric(data, ev) if m == "diversity" else m for m in trial_metrics(data, ev))


def reported_names(data, ev) -> list[str]:
    """The keys an evaluation reports: scs as scs_<edges>; with realism and diversity, also
    diversity_at_saturation and saturated_at_step (evaluation/saturation.py)."""
    from raygan.evaluation.saturation import DIVERSITY_AT_SATURATION, SATURATED_AT

    metrics = trial_metrics(data, ev)
    names = [f"scs_{ev.scs_edges}" if m == "scs" else m for m in metrics]
    if {"realism", "diversity"} <= set(metrics):
        names += [DIVERSITY_AT_SATURATION, SATURATED_AT]
    return names


def default_objective(cfg: dict) -> tuple[str, str]:
    """search.metric / mode when the experiment names none: fd_shapesnet on the embedded
    sketches; on a folder target FID against the reference set (or against the shots without
    one), or fd_domainnet without the Inception weights; the mode is the metric's direction."""
    data, ev = cfg["data"], EvalConfig(**cfg["eval"])
    if data["target"] == "sketches":
        metric = "fd_shapesnet"
    elif inception_missing(ev) and not ev.metrics:
        metric = "fd_domainnet"
    else:
        metric = "fid" if data["reference"] else "fid_shots"
    return metric, METRICS[metric].mode


def run_options(t: dict, device="cpu"):
    """The EvalOptions of a trial's published metrics: what `raygan eval` of its
    checkpoint needs to compute the same numbers (same samples, seed, reference and weights)."""
    from raygan.evaluation.fewshot import EvalOptions

    data, train, ev = t["data"], t["train"], t["eval"]
    return EvalOptions(metrics=computed_metrics(data, ev), samples=train.eval_samples,
                       reference=data.reference or None, shots=None if data.embedded else data.target,
                       source=t["model"].checkpoint, source_images=data.source_images or None, lpips_net=ev.lpips_net,
                       scs_edges=ev.scs_edges, inception=ev.inception_weights or None,
                       lpips_weights=ev.lpips_weights or None, hed=ev.hed_weights or None, seed=train.seed,
                       device=str(device))


class Evaluation:
    """The trial's metrics of G_t (``trial_metrics``); grid: G_s above G_t, same z."""
    grid_name = "source_vs_adapted"

    def __init__(self, t: dict, method: FewShotAdapter, device="cpu"):
        from raygan.evaluation.trials import Evaluator

        from raygan.evaluation.saturation import Saturation

        data, train, ev = t["data"], t["train"], t["eval"]
        self.evaluator = Evaluator(method.g_source, method.shots, train.eval_samples, seed=train.seed,
                                   device=device, latent_map=method.latent_map(), metrics=trial_metrics(data, ev),
                                   run_options=run_options(t, device), source=method.source,
                                   shots_name=method.shots_name, diversity=diversity_metric(data, ev),
                                   saturation=Saturation(ev.saturation_window, ev.saturation_tolerance,
                                                         ev.saturation_realism))

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

    data, ev = t["data"], t["eval"]
    metrics = computed_metrics(data, ev)
    if not data.embedded:
        embedded = [m for m in metrics if m in needing("embedded")]
        if embedded:
            knob = "eval.metrics" if embedded[0] in trial_metrics(data, ev) else "eval.diversity"
            raise UserError(where, f"{knob}: {embedded[0]} uses raygan's ShapesNet, which knows only the "
                                   "embedded sketches; a folder target is scored by realism, fd_domainnet and "
                                   "intra_domainnet (its realism classifier C), fid/kid (with data.reference), "
                                   "fid_shots, diversity or scs")
    if data.embedded and (folder := [m for m in metrics if m in needing("folder")]):
        knob = "eval.metrics" if folder[0] in trial_metrics(data, ev) else "eval.diversity"
        raise UserError(where, f"{knob}: {folder[0]} is trained on a folder target's images; the embedded "
                               "sketches are scored by fd_shapesnet and intra_shapesnet")
    if not data.embedded and not data.reference and set(needing("reference")) & set(metrics):
        raise UserError(where, "eval.metrics: fid/kid on a folder target need data.reference (a folder of "
                               "held-out target images); without one use fid_shots, intra_lpips or scs")
    names = reported_names(data, ev)
    for metric, _ in objectives:
        if metric == SATURATED_AT and metric not in names:
            raise UserError(where, "search.stopper: realism_plateau needs realism and diversity among the "
                                   f"trials' metrics (they report {', '.join(names)}; set eval.metrics)")
        if metric not in names:
            raise UserError(where, f"search.metric: {metric!r} is not reported by this experiment's trials "
                                   f"(they report {', '.join(names)}; set eval.metrics)")
    preflight(metrics, run_options(t), embedded=data.embedded)
    if "scs" in metrics and ev.scs_edges == "hed":
        from raygan import weights

        load_edges("hed", str(weights.resolve("hed", ev.hed_weights or None).path))  # a bad HED file fails here


def pinned_weights(t: dict) -> dict[str, str]:
    """The weights files this driver found, as knobs for the trials (``eval.*_weights``): a
    trial then reads the very file that was checked and hashed here, whatever environment its
    Ray worker was started with."""
    from raygan import weights

    metrics, ev = set(computed_metrics(t["data"], t["eval"])), t["eval"]
    wanted = {"inception_weights": ("inception", bool(metrics & set(needing("inception")))),
              "lpips_weights": (BACKBONES[ev.lpips_net], bool(metrics & set(needing("lpips")))),
              "hed_weights": ("hed", bool(metrics & set(needing("source"))) and ev.scs_edges == "hed")}
    pins = {f"eval.{knob}": str(weights.resolve(name, getattr(ev, knob) or None).path.resolve())
            for knob, (name, used) in wanted.items() if used}
    # What the trials report and what `diversity` is, decided once here (both depend on which
    # weights are found), so every trial computes the same ones.
    pins["eval.metrics"] = list(trial_metrics(t["data"], ev))
    pins["eval.diversity"] = {v: k for k, v in DIVERSITY.items()}[diversity_metric(t["data"], ev)]
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

    progress(default_set(t["data"], t["eval"]))
    source = load_source(t["model"].checkpoint)
    if not t["data"].embedded:
        from raygan.data.images import check_folder

        check_folder(t["data"].target, 1, "target images")
        if t["data"].source_images:
            check_folder(t["data"].source_images, 2, "source images")  # every file decoded; too few: target_shots says so
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

    metrics = computed_metrics(t["data"], t["eval"])
    if set(metrics) & set(needing("embedded")):
        warm_cache(source.size)
    if not t["data"].embedded and set(metrics) & set(needing("classifier")):
        from raygan.evaluation.fewshot import Run
        from raygan.metrics.domainnet import describe

        progress("realism classifier C of the target folder (cached)")
        net, _, trained_on = Run(run_options(t), source, shots, None).domainnet()
        progress(f"C: {describe(net.config['checks'])}; {trained_on}")
    if set(metrics) & set(needing("reference")):
        from raygan.evaluation.fewshot import Run

        progress("inception features of the reference set (cached)")
        Run(run_options(t), source, images=None, z=None).reference_features()


FAMILY = Family(name="fewshot", build=build, evaluation=Evaluation, prepare=prepare,
                default_objective=default_objective, sections={**SECTIONS, "eval": EvalConfig},
                grid_shared_rows=("source",))
