"""The few-shot metrics: one registry (``METRICS``), one way to compute each.

Every metric is a function of a ``Run`` (one batch of generated images: fixed z, seeded noise,
``evaluation.sampling``) returning its Scores with their provenance, registered once with
``@register(name, mode, needs)``; the functions are in raygan/evaluation/metrics.py. The
trials' evaluation (evaluation/trials.py) and `raygan eval` (commands/evaluate.py) compute every metric through ``Run.compute``, so a checkpoint
scores the same in a trial and afterwards, and every list of metric names (what a trial may
report, what needs which weights, what only the embedded sketches allow) is derived from
``METRICS``. Adding a metric: one function and its ``@register`` line in metrics.py
(docs/ARCHITECTURE.md).
``Run`` shares what several metrics need (Inception outputs, the shots, G_s's samples);
metric networks are loaded once per process (``_network``, ``_shapesnet``, ``load_edges``).
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from raygan.cache import cache_dir, fingerprint, test_networks
from raygan.errors import UserError
from raygan.evaluation.sampling import eval_codes, generate
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
    "classifier": "the realism classifier C (ShapesNet's head on the embedded sketches, else DomainNet)",
    "folder": "a folder target, whose images raygan's DomainNet is trained on",
}
DOMAINNET_SOURCE_SEED = 5_000  # eval_codes seed of the G_s samples behind C (disjoint from the trials' 0, 1, ...)


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
    source: str = "embedded"            # G_s for SCS (and C's non-target side without source_images)
    source_images: str | None = None    # image folder: C's non-target side; None: G_s's samples
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
                unfit = "folder" if embedded else "embedded"  # metrics of the other kind of target
                free = [f"{m} (with sobel edges)" if m == "scs" else m for m, spec in METRICS.items()
                        if not {"inception", "lpips", unfit} & spec.needs]
                raise UserError(e.where, f"{e.message}; {knob}: {', '.join(chosen)} {'need' if chosen[1:] else 'needs'}"
                                         f" it; {', '.join(free)} need no weights") from None
    if opts.reference and metrics & set(needing("reference")):
        check_folder(opts.reference, 2, "reference images")
    if opts.shots and metrics & set(needing("shots")):
        check_folder(opts.shots, 1, "shots")
    if opts.shots and opts.source_images and metrics & set(needing("classifier")):
        check_folder(opts.source_images, 2, "source images")


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
def _domainnet(shots: str, reference: str | None, source_images: str | None, source: str, size: int, device: str,
               where: str, test: bool):
    """Run.domainnet, once per process per data, size, device, cache and network size."""
    from raygan.data.images import image_files, read_images
    from raygan.metrics import domainnet as C
    from raygan.metrics.published import folder_identity

    def folder(path, what):
        p = Path(path).expanduser()
        files = image_files(p, at_least=1, what=what)
        return files, f"{p.resolve()} #{folder_identity(p, files)}"

    targets = [folder(f, "target images") for f in (shots, reference) if f]
    if source_images:
        other_files, other = folder(source_images, "source images")
        other_name = f"{len(other_files)} images of {other}"
    else:
        from raygan.models.checkpoint import load_source

        g_s = load_source(source)
        other = f"G_s {source} #{fingerprint(list(g_s.g_state.values()), 12)}"
        other_name = f"{C.SOURCE_SAMPLES} samples of G_s {source} (no data.source_images given)"
    target_name = " + ".join(name for _, name in targets)

    def data():
        target = torch.cat([read_images(files, size) for files, _ in targets])
        if source_images:
            return target, read_images(other_files, size)
        z = eval_codes(C.SOURCE_SAMPLES, g_s.g_config.get("style_dim", 512), DOMAINNET_SOURCE_SEED)
        return target, generate(g_s.generator(), z, DOMAINNET_SOURCE_SEED, 50, device)

    key = fingerprint((), salt=f"{target_name}|{other}|{C.SOURCE_SAMPLES}")
    with _rng_neutral():
        net = C.load_domainnet(key, size, data, device=device)
    trained_on = f"target: {target_name}; not target: {other_name}"
    C.check(net.config["checks"], shots, trained_on)
    return net, fingerprint(net), trained_on


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
        self._inception = self._domainnet = self._domainnet_target = None

    @property
    def embedded(self) -> bool:
        """Whether the target is the embedded sketches (no shots folder given)."""
        return self.opts.shots is None

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

    def domainnet(self):
        """(C, its fingerprint, what it was trained on) of a folder target: DomainNet on the
        target images (the shots folder and the reference folder) against opts.source_images or
        G_s's samples (raygan.metrics.domainnet), from the cache or trained now; refused when it
        fails its held-out checks."""
        if self._domainnet is None:
            self._domainnet = _domainnet(self.opts.shots, self.opts.reference, self.opts.source_images,
                                         self.opts.source, self.size, str(self.opts.device), str(cache_dir()),
                                         test_networks())
        return self._domainnet

    def domainnet_target(self) -> torch.Tensor:
        """The target images C is trained on: the shots folder's and the reference folder's."""
        from raygan.data.images import image_files, read_images

        if self._domainnet_target is None:  # read once per evaluation (fd_domainnet and intra_domainnet)
            self._domainnet_target = torch.cat([read_images(image_files(f, 1), self.size)
                                                for f in (self.opts.shots, self.opts.reference) if f])
        return self._domainnet_target

    def embedded_score(self, metric, value, reference):
        from raygan.metrics.features import VERSION
        from raygan.metrics.published import Score

        return [Score(metric, value, f"shapesnet {VERSION} (raygan's own, not a published network)",
                      self.shapesnet()[1], "none", len(self.images), reference)]


# The metrics themselves, one function each (raygan/evaluation/metrics.py): importing them fills METRICS.
importlib.import_module("raygan.evaluation.metrics")
