"""The published and embedded metrics of a StyleGAN2 generator, each with its provenance.

``Run`` takes one batch of generated images (fixed z, seeded noise: ``evaluation.sampling``) and
computes the requested metrics on them, sharing what several need (Inception outputs,
ShapesNet, the shots). `raygan eval` and the few-shot trials' evaluation both use it, so a
checkpoint scores the same in a trial and afterwards. Metric networks are loaded once per
process (``_network``)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raygan.cache import fingerprint
from raygan.errors import UserError
from raygan.evaluation.sampling import generate
from raygan.models.lpips import BACKBONES

EMBEDDED_REFERENCE_SEED = 1  # held_out("target", seed=1): the trials' fd_shapesnet reference
PUBLISHED = ("fid", "kid", "is", "fid_shots", "intra_lpips", "scs")  # published networks, any target
EMBEDDED = ("fd_shapesnet", "realism", "intra_shapesnet")  # raygan's ShapesNet: the embedded sketches only
INCEPTION_METRICS = ("fid", "kid", "is", "fid_shots")


@dataclass
class EvalOptions:
    metrics: tuple | None = None        # None: DEFAULT_METRICS, or miou for a label-to-image checkpoint
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


def preflight(metrics, opts) -> None:
    """Fail before generating or training anything: every weights file the metrics need
    (``weights.resolve``: explicit path > env var > $RAYGAN_WEIGHTS > torch hub cache) and
    every image folder they read, each image decoded once."""
    from raygan.data.images import check_folder
    from raygan import weights

    metrics = set(metrics)
    if metrics & set(INCEPTION_METRICS):
        weights.resolve("inception", opts.inception)
    if "intra_lpips" in metrics:
        weights.resolve(BACKBONES[opts.lpips_net], opts.lpips_weights)
    if "scs" in metrics and opts.scs_edges == "hed":
        weights.resolve("hed", opts.hed)
    if opts.reference and metrics & {"fid", "kid"}:
        check_folder(opts.reference, 2, "reference images")
    if opts.shots and metrics & {"intra_lpips", "intra_shapesnet", "fid_shots"}:
        check_folder(opts.shots, 1, "shots")


@functools.lru_cache(maxsize=4)
def _network(kind: str, path: str, sha256: str, device: str, what: str = ""):
    """A metric network loaded once per process per weights file (``sha256`` keys the file's
    content, so a replaced file is loaded again)."""
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


# ---- the metrics ------------------------------------------------------------------------------

class Run:
    """What one evaluation computes once and shares between metrics; ``opts`` is
    EvalOptions. ``shots`` ((images, description)) overrides ``opts.shots``: a
    trial passes the shots it trains on."""

    def __init__(self, opts, src, images: torch.Tensor, z: torch.Tensor, shots=None):
        self.opts, self.src, self.images, self.z = opts, src, images, z
        self.size = src.size
        self._shots = shots
        self._inception = self._shapesnet = None

    # -- Inception metrics
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
        from raygan.cache import cache_dir
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

    def fid(self):
        from raygan.metrics.published import RESIZE, Score, fid_from_features

        w, _, pool, _ = self.inception()
        ref, ref_name = self.reference_features()
        return [Score("fid", fid_from_features(pool, ref), self.network_name(w), w.sha256, RESIZE, len(pool), ref_name)]

    def fid_shots(self):
        """FID against the training shots themselves: what a folder target without a reference
        set can be scored by (few images: high variance, named so that it never passes for FID)."""
        from raygan.metrics.published import RESIZE, Score, fid_from_features, inception_outputs, to_uint8

        w, net, pool, _ = self.inception()
        shots, shots_name = self.shots()
        ref = inception_outputs(to_uint8(shots), net, self.opts.batch)[0]
        return [Score("fid_shots", fid_from_features(pool, ref), self.network_name(w), w.sha256, RESIZE, len(pool),
                      shots_name)]

    def kid(self):
        from raygan.metrics.published import KID_SUBSET_SIZE, KID_SUBSETS, RESIZE, Score, kid

        w, _, pool, _ = self.inception()
        ref, ref_name = self.reference_features()
        mean, std = kid(pool, ref, seed=self.opts.seed)
        size = min(KID_SUBSET_SIZE, len(pool), len(ref))
        return [Score("kid", mean, self.network_name(w), w.sha256, RESIZE, len(pool), ref_name, std=std,
                      extra={"subsets": KID_SUBSETS, "subset_size": size, "kernel": "(x.y/d + 1)^3"})]

    def is_(self):
        from raygan.metrics.published import IS_SPLITS, RESIZE, Score, inception_score

        w, _, _, logits = self.inception()
        mean, std = inception_score(logits, IS_SPLITS)
        return [Score("is", mean, self.network_name(w), w.sha256, RESIZE, len(logits), "none (1008-way softmax)",
                      std=std, extra={"splits": IS_SPLITS})]

    # -- LPIPS diversity
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

    def intra_lpips(self):
        from importlib.metadata import version

        from raygan import weights
        from raygan.metrics.diversity import LPIPS_MIN_SIZE, intra_cluster_diversity
        from raygan.metrics.published import Score

        backbone = self.opts.lpips_net
        w = weights.resolve(BACKBONES[backbone], self.opts.lpips_weights)
        dist = _network(backbone, str(w.path), w.sha256, str(self.opts.device), w.known.what)
        shots, shots_name = self.shots()
        value = intra_cluster_diversity(self.images, shots, dist, seed=self.opts.seed)
        resize = f"bilinear to {LPIPS_MIN_SIZE} px" if self.size < LPIPS_MIN_SIZE else "none"
        verified = "" if w.verified else ", UNVERIFIED backbone"
        return [Score("intra_lpips", value, f"lpips {version('lpips')} {backbone} v0.1{verified}",
                      w.sha256, resize, len(self.images), f"nearest of {shots_name}; <= 50 per cluster")]

    # -- SCS
    def scs(self):
        from raygan import weights
        from raygan.metrics.published import Score
        from raygan.metrics.scs import make_edge_detector, scs
        from raygan.models.checkpoint import load_source

        kind = self.opts.scs_edges
        w = weights.resolve("hed", self.opts.hed) if kind == "hed" else None
        name, edges = make_edge_detector(kind, str(w.path) if w else "")
        source = load_source(self.opts.source)
        if source.size != self.size or source.g_config.get("style_dim") != self.src.g_config.get("style_dim"):
            raise UserError(self.opts.source, f"the source generator ({source.size}px) does not match the "
                                              f"checkpoint ({self.size}px): pass --source")
        g_s = generate(source.generator(), self.z, self.opts.seed, self.opts.batch, self.opts.device)
        value = scs(self.images, g_s, edges)
        network = "hed (sniklaus/pytorch-hed bsds500)" if w else f"{kind} (not HED)"
        return [Score(name, value, network, w.sha256 if w else "", "none", len(self.images),
                      f"G_s(z), same z and noise, source {self.opts.source}")]

    # -- embedded metrics
    def shapesnet(self):
        if self._shapesnet is None:
            from raygan.metrics.features import load_shapesnet

            net = load_shapesnet(self.size, device=self.opts.device)
            self._shapesnet = (net, fingerprint(net))
        return self._shapesnet

    def _embedded(self, metric, value, reference):
        from raygan.metrics.features import VERSION
        from raygan.metrics.published import Score

        return [Score(metric, value, f"shapesnet {VERSION} (raygan's own, not a published network)",
                      self.shapesnet()[1], "none", len(self.images), reference)]

    def fd_shapesnet(self):
        from raygan.metrics.frechet import N_SKETCH_REFERENCE, sketch_reference_stats
        from raygan.metrics.features import extract_features
        from raygan.metrics.frechet import feature_stats, frechet_distance

        net = self.shapesnet()[0]
        mu, sigma = feature_stats(extract_features(self.images, net).numpy())
        value = frechet_distance(mu, sigma, *sketch_reference_stats(net, self.size))
        return self._embedded("fd_shapesnet", value, f"embedded held-out target sketches ({N_SKETCH_REFERENCE}, seed 1)")

    def realism(self):
        from raygan.metrics.realism import realism

        return self._embedded("realism", realism(self.images, self.shapesnet()[0]), "domain head (DCL Eq. 3)")

    def intra_shapesnet(self):
        from raygan.metrics.diversity import intra_cluster_diversity, shapesnet_distance

        shots, shots_name = self.shots()
        value = intra_cluster_diversity(self.images, shots, shapesnet_distance(self.shapesnet()[0]),
                                        seed=self.opts.seed)
        return self._embedded("intra_shapesnet", value, f"nearest of {shots_name}; <= 50 per cluster")

    def compute(self, metric: str):
        return getattr(self, "is_" if metric == "is" else metric)()
