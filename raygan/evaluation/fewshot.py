"""The few-shot metrics: one registry (``METRICS``), one way to compute each.

Every metric is a function of a ``Run`` (one batch of generated images: fixed z, seeded noise,
``evaluation.sampling``) returning its Scores with their provenance, registered once with
``@register(name, mode, needs)``. The trials' evaluation (evaluation/trials.py) and `raygan
eval` (commands/evaluate.py) compute every metric through ``Run.compute``, so a checkpoint
scores the same in a trial and afterwards, and every list of metric names (what a trial may
report, what needs which weights, what only the embedded sketches allow) is derived from
``METRICS``. Adding a metric: one function and its ``@register`` line (docs/ARCHITECTURE.md).
``Run`` shares what several metrics need (Inception outputs, the shots, G_s's samples);
metric networks are loaded once per process (``_network``, ``_shapesnet``, ``load_edges``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raygan.cache import cache_dir, fingerprint, test_networks
from raygan.errors import UserError
from raygan.evaluation.sampling import generate
from raygan.models.lpips import BACKBONES

EMBEDDED_REFERENCE_SEED = 1  # held_out("target", seed=1): the embedded reference of fid/kid and fd_shapesnet

# What a metric may need, and how an error names it when it is missing.
NEEDS = {
    "inception": "the FID Inception weights",
    "lpips": "the LPIPS backbone's weights (torchvision VGG16 or AlexNet)",
    "reference": "held-out target images (data.reference / --reference on a folder target)",
    "shots": "the target shots",
    "source": "the source generator G_s, sampled on the same z and noise",
    "embedded": "raygan's ShapesNet, which knows only the embedded sketches",
}


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``mode`` says which way is better ("min"/"max"); ``needs`` are keys
    of NEEDS; ``compute(run)`` returns its Scores (scs: one named scs_<edges>)."""
    name: str
    mode: str
    needs: frozenset
    compute: Callable


METRICS: dict[str, Metric] = {}


def register(name: str, mode: str, needs=()):
    """Register the decorated ``fn(run) -> list[Score]`` as metric ``name``."""
    if mode not in ("min", "max") or not set(needs) <= set(NEEDS):
        raise ValueError(f"metric {name}: mode must be min or max and needs some of {', '.join(NEEDS)}")

    def add(fn):
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, mode, frozenset(needs), fn)
        return fn
    return add


def needing(need: str) -> tuple[str, ...]:
    """The registered metrics that need ``need`` (a key of NEEDS), in registration order."""
    return tuple(name for name, m in METRICS.items() if need in m.needs)


@dataclass
class EvalOptions:
    metrics: tuple | None = None        # None: raygan eval's defaults, or miou for a label-to-image checkpoint
    samples: int = 1000
    reference: str | None = None        # image folder; None: the embedded held-out targets
    reference_count: int = 2000         # embedded reference images
    shots: str | None = None            # image folder; None: the embedded 10 shots
    source: str = "embedded"            # G_s for SCS
    lpips_net: str = "vgg"
    scs_edges: str = "hed"
    inception: str | None = None        # explicit weights paths (else weights.resolve's lookup)
    lpips_weights: str | None = None
    hed: str | None = None
    seed: int = 0
    batch: int = 50
    device: str = "cpu"
    out: str | None = None
    config: str | None = None           # experiment YAML of a label-to-image checkpoint outside a run


def preflight(metrics, opts, knob: str = "eval.metrics", embedded: bool = True) -> None:
    """Fail before generating or training anything: every weights file the metrics need
    (``weights.resolve``: explicit path > env var > $RAYGAN_WEIGHTS > torch hub cache) and
    every image folder they read, each image decoded once. A missing weights file's error
    names the metrics that need it and those that need none, under ``knob`` (the setting
    that chooses the metrics: eval.metrics, or raygan eval's --metrics; ``embedded``: whether
    the metrics that know only the embedded sketches may be suggested)."""
    from raygan.data.images import check_folder
    from raygan import weights

    metrics = set(metrics)
    wanted = [("inception", opts.inception, "inception"), (BACKBONES[opts.lpips_net], opts.lpips_weights, "lpips")]
    wanted += [("hed", opts.hed, "source")] if opts.scs_edges == "hed" else []
    for name, explicit, need in wanted:
        if chosen := sorted(metrics & set(needing(need))):
            try:
                weights.resolve(name, explicit)
            except UserError as e:
                free = [f"{m} (with sobel edges)" if m == "scs" else m for m, spec in METRICS.items()
                        if not {"inception", "lpips"} & spec.needs and (embedded or "embedded" not in spec.needs)]
                raise UserError(e.where, f"{e.message}; {knob}: {', '.join(chosen)} {'need' if chosen[1:] else 'needs'}"
                                         f" it; {', '.join(free)} need no weights") from None
    if opts.reference and metrics & set(needing("reference")):
        check_folder(opts.reference, 2, "reference images")
    if opts.shots and metrics & set(needing("shots")):
        check_folder(opts.shots, 1, "shots")


@functools.lru_cache(maxsize=4)
def _network(kind: str, path: str, sha256: str, device: str, what: str = ""):
    """A metric network loaded once per process per weights file (``sha256`` keys the file's
    content, so a replaced file is loaded again). Building it leaves torch's global RNG as it
    was (``_rng_neutral``)."""
    with _rng_neutral():
        return _load_network(kind, path, sha256, device, what)


def _rng_neutral():
    """Around a metric network's construction (its layers' random init, then overwritten by the
    weights): a trial loads it at its first evaluation, before its first step, and only in a
    process that has not loaded it before (Tune and Ray reuse worker processes). Drawing from
    the global RNG there would make a trial's training depend on which trial ran before it in
    the same process."""
    return torch.random.fork_rng(devices=[])


def _load_network(kind: str, path: str, sha256: str, device: str, what: str):
    if kind == "inception":
        from raygan.metrics.inception import load_fid_inception
        from raygan.weights import WeightsFile, KNOWN

        return load_fid_inception(WeightsFile(Path(path), sha256, KNOWN["inception"]), device)
    import pickle

    from raygan.metrics.diversity import lpips_distance

    try:
        return lpips_distance(kind, device, path=path)
    except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as e:
        first = str(e).strip().splitlines()[0][:100] if str(e).strip() else ""
        raise UserError(path, f"not {what or kind}'s state dict ({type(e).__name__}: {first})") from None


def _shapesnet(size: int, device: str):
    """(ShapesNet, its fingerprint), once per process per size, device, cache and network size."""
    return _cached_shapesnet(size, device, str(cache_dir()), test_networks())


@functools.lru_cache(maxsize=4)
def _cached_shapesnet(size: int, device: str, where: str, test: bool):
    from raygan.metrics.features import load_shapesnet

    with _rng_neutral():
        net = load_shapesnet(size, device=device)
    return net, fingerprint(net)


@functools.lru_cache(maxsize=4)
def load_edges(kind: str, hed_path: str) -> tuple[str, Callable]:
    """(scs_<kind>, images -> edge maps); HED loaded once per process per weights file."""
    from raygan.metrics.scs import make_edge_detector

    with _rng_neutral():
        return make_edge_detector(kind, hed_path)


class Run:
    """What one evaluation computes once and shares between metrics; ``opts`` is EvalOptions,
    ``src`` the evaluated checkpoint's SourceModel. A trial passes what it already holds:
    ``shots`` ((images, description)) replaces ``opts.shots``; ``source_images`` (G_s on a
    prefix of ``z``) replaces sampling ``opts.source``, and SCS then scores that prefix;
    ``shapesnet`` ((net, fingerprint)) the trial's loaded ShapesNet."""

    def __init__(self, opts, src, images: torch.Tensor, z: torch.Tensor, shots=None, source_images=None,
                 shapesnet=None):
        self.opts, self.src, self.images, self.z = opts, src, images, z
        self.size = src.size if src is not None else images.shape[-1]
        self._shots, self._source_images, self._shapesnet = shots, source_images, shapesnet
        self._inception = None

    def compute(self, metric: str) -> list:
        """The Scores of a registered metric on this run's images."""
        return METRICS[metric].compute(self)

    # -- Inception
    def inception_net(self):
        from raygan import weights

        w = weights.resolve("inception", self.opts.inception)
        return w, _network("inception", str(w.path), w.sha256, str(self.opts.device))

    def inception(self):
        if self._inception is None:
            from raygan.metrics.published import inception_outputs, to_uint8

            w, net = self.inception_net()
            pool, logits = inception_outputs(to_uint8(self.images), net, self.opts.batch)
            self._inception = (w, net, pool, logits)
        return self._inception

    def network_name(self, w) -> str:
        from raygan.metrics.published import INCEPTION_NAME

        return INCEPTION_NAME if w.verified else f"inception-v3-fid layout, UNVERIFIED weights {w.path.name}"

    def reference_features(self) -> tuple[np.ndarray, str]:
        """Inception pool3 features of the reference set, cached on disk: a folder's images are
        prepared as the shots are (``data.images.resize_crop`` to the generator's size)."""
        from raygan.metrics.published import cached_features, inception_outputs, reference_cache_path, to_uint8

        w, net = self.inception_net()
        if self.opts.reference:
            from raygan.data.images import image_files, read_folder
            from raygan.metrics.published import folder_identity

            folder = Path(self.opts.reference).expanduser()
            files = image_files(folder, what="reference images")
            ident = f"folder {folder.resolve()} #{folder_identity(folder, files)} at {self.size}px"
            compute = lambda: np.concatenate([inception_outputs(read_folder(files[i:i + 500], self.size), net,  # noqa: E731
                                                                self.opts.batch)[0]
                                              for i in range(0, len(files), 500)])
            n = len(files)
        else:
            from raygan.data.synthetic import held_out

            n = self.opts.reference_count
            ident = f"embedded held-out target sketches, {self.size}px, seed {EMBEDDED_REFERENCE_SEED}"
            compute = lambda: inception_outputs(  # noqa: E731
                to_uint8(held_out("target", n, size=self.size, seed=EMBEDDED_REFERENCE_SEED)), net, self.opts.batch)[0]
        feats = cached_features(reference_cache_path(cache_dir(), ident, w.sha256, n), compute)
        return feats, f"{ident} ({n} images)"

    # -- the shots, G_s's samples, ShapesNet
    def shots(self) -> tuple[torch.Tensor, str]:
        if self._shots is None:
            if self.opts.shots:
                from raygan.data.images import load_shots

                shots, files = load_shots(self.opts.shots, None, 0, self.size)
                self._shots = shots, f"{len(shots)} shots from {Path(self.opts.shots).expanduser().resolve()}"
            else:
                from raygan.data.synthetic import few_shot_target

                self._shots = few_shot_target(size=self.size, n_shots=10, seed=0), "embedded 10 target shots (seed 0)"
        return self._shots

    def source_images(self) -> tuple[torch.Tensor, str]:
        """G_s(z) with the same noise as the images (``opts.source``, unless the trial gave them)."""
        if self._source_images is None:
            from raygan.models.checkpoint import load_source

            source = load_source(self.opts.source)
            if source.size != self.size or source.g_config.get("style_dim") != self.src.g_config.get("style_dim"):
                raise UserError(self.opts.source, f"the source generator ({source.size}px) does not match the "
                                                  f"checkpoint ({self.size}px): pass --source")
            self._source_images = generate(source.generator(), self.z, self.opts.seed, self.opts.batch,
                                           self.opts.device)
        return self._source_images, f"G_s(z), same z and noise, source {self.opts.source}"

    def shapesnet(self):
        if self._shapesnet is None:
            self._shapesnet = _shapesnet(self.size, str(self.opts.device))
        return self._shapesnet

    def embedded_score(self, metric, value, reference):
        from raygan.metrics.features import VERSION
        from raygan.metrics.published import Score

        return [Score(metric, value, f"shapesnet {VERSION} (raygan's own, not a published network)",
                      self.shapesnet()[1], "none", len(self.images), reference)]


# ---- the metrics: one function each, registered once ------------------------------------------

@register("fid", "min", needs=("inception", "reference"))
def fid(run: Run):
    """Fréchet Inception distance to the reference set (Heusel et al.)."""
    from raygan.metrics.published import RESIZE, Score, fid_from_features

    w, _, pool, _ = run.inception()
    ref, ref_name = run.reference_features()
    return [Score("fid", fid_from_features(pool, ref), run.network_name(w), w.sha256, RESIZE, len(pool), ref_name)]


@register("kid", "min", needs=("inception", "reference"))
def kid(run: Run):
    """Kernel Inception distance to the reference set: mean and sd over subsets."""
    from raygan.metrics.published import KID_SUBSET_SIZE, KID_SUBSETS, RESIZE, Score, kid as kid_of

    w, _, pool, _ = run.inception()
    ref, ref_name = run.reference_features()
    mean, std = kid_of(pool, ref, seed=run.opts.seed)
    size = min(KID_SUBSET_SIZE, len(pool), len(ref))
    return [Score("kid", mean, run.network_name(w), w.sha256, RESIZE, len(pool), ref_name, std=std,
                  extra={"subsets": KID_SUBSETS, "subset_size": size, "kernel": "(x.y/d + 1)^3"})]


@register("is", "max", needs=("inception",))
def inception_score(run: Run):
    """Inception score over IS_SPLITS splits."""
    from raygan.metrics.published import IS_SPLITS, RESIZE, Score, inception_score as is_of

    w, _, _, logits = run.inception()
    mean, std = is_of(logits, IS_SPLITS)
    return [Score("is", mean, run.network_name(w), w.sha256, RESIZE, len(logits), "none (1008-way softmax)",
                  std=std, extra={"splits": IS_SPLITS})]


@register("fid_shots", "min", needs=("inception", "shots"))
def fid_shots(run: Run):
    """FID against the training shots themselves: what a folder target without a reference
    set can be scored by (few images: high variance, named so that it never passes for FID)."""
    from raygan.metrics.published import RESIZE, Score, fid_from_features, inception_outputs, to_uint8

    w, net, pool, _ = run.inception()
    shots, shots_name = run.shots()
    ref = inception_outputs(to_uint8(shots), net, run.opts.batch)[0]
    return [Score("fid_shots", fid_from_features(pool, ref), run.network_name(w), w.sha256, RESIZE, len(pool),
                  shots_name)]


@register("intra_lpips", "max", needs=("lpips", "shots"))
def intra_lpips(run: Run):
    """The CDC/DCL papers' intra-cluster LPIPS diversity around the shots."""
    from importlib.metadata import version

    from raygan import weights
    from raygan.metrics.diversity import LPIPS_MIN_SIZE, intra_cluster_diversity
    from raygan.metrics.published import Score

    backbone = run.opts.lpips_net
    w = weights.resolve(BACKBONES[backbone], run.opts.lpips_weights)
    dist = _network(backbone, str(w.path), w.sha256, str(run.opts.device), w.known.what)
    shots, shots_name = run.shots()
    value = intra_cluster_diversity(run.images, shots, dist, seed=run.opts.seed)
    resize = f"bilinear to {LPIPS_MIN_SIZE} px" if run.size < LPIPS_MIN_SIZE else "none"
    verified = "" if w.verified else ", UNVERIFIED backbone"
    return [Score("intra_lpips", value, f"lpips {version('lpips')} {backbone} v0.1{verified}",
                  w.sha256, resize, len(run.images), f"nearest of {shots_name}; <= 50 per cluster")]


@register("scs", "max", needs=("source",))
def scs(run: Run):
    """RSSA's structural consistency of G_t(z) with G_s(z) (Eq. 9–10), reported as scs_<edges>."""
    from raygan import weights
    from raygan.metrics.published import Score
    from raygan.metrics.scs import scs as scs_of

    kind = run.opts.scs_edges
    w = weights.resolve("hed", run.opts.hed) if kind == "hed" else None
    name, edges = load_edges(kind, str(w.path) if w else "")
    g_s, reference = run.source_images()
    value = scs_of(run.images[:len(g_s)], g_s, edges)
    network = "hed (sniklaus/pytorch-hed bsds500)" if w else f"{kind} (not HED)"
    return [Score(name, value, network, w.sha256 if w else "", "none", len(g_s), reference)]


@register("fd_shapesnet", "min", needs=("embedded",))
def fd_shapesnet(run: Run):
    """Fréchet distance to held-out embedded target sketches in ShapesNet's features."""
    from raygan.metrics.features import extract_features
    from raygan.metrics.frechet import N_SKETCH_REFERENCE, feature_stats, frechet_distance, sketch_reference_stats

    net = run.shapesnet()[0]
    mu, sigma = feature_stats(extract_features(run.images, net).numpy())
    value = frechet_distance(mu, sigma, *sketch_reference_stats(net, run.size))
    return run.embedded_score("fd_shapesnet", value, f"embedded held-out target sketches ({N_SKETCH_REFERENCE}, "
                                                     f"seed {EMBEDDED_REFERENCE_SEED})")


@register("realism", "max", needs=("embedded",))
def realism(run: Run):
    """p_t of DCL Eq. 3: ShapesNet's domain head's mean probability that G_t(z) is a target image."""
    from raygan.metrics.realism import realism as realism_of

    return run.embedded_score("realism", realism_of(run.images, run.shapesnet()[0]), "domain head (DCL Eq. 3)")


@register("intra_shapesnet", "max", needs=("embedded", "shots"))
def intra_shapesnet(run: Run):
    """Intra-cluster diversity around the shots in ShapesNet's features."""
    from raygan.metrics.diversity import intra_cluster_diversity, shapesnet_distance

    shots, shots_name = run.shots()
    value = intra_cluster_diversity(run.images, shots, shapesnet_distance(run.shapesnet()[0]), seed=run.opts.seed)
    return run.embedded_score("intra_shapesnet", value, f"nearest of {shots_name}; <= 50 per cluster")
