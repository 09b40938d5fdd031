"""`raygan eval`: score a StyleGAN2 checkpoint (a trial's or a rosinality-layout file).

Every score is stored with its provenance (network, weights hash, resize, sample count,
reference set) in a new ``eval_<timestamp>.json`` (never overwriting a file) and printed as a
table. Published metrics (fid, kid, is, intra_lpips, scs with HED) need their weights files
(``raygan.metrics.weights``); the embedded ones (fd_shapesnet, realism, intra_shapesnet) use
raygan's own ShapesNet and carry its name. A label-to-image checkpoint is scored by its
trial's own evaluation, rebuilt (``raygan.eval_labels``): metric ``miou``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raygan.errors import UserError

PUBLISHED = ("fid", "kid", "is", "intra_lpips", "scs")
EMBEDDED = ("fd_shapesnet", "realism", "intra_shapesnet")
LABEL_TO_IMAGE = ("miou",)  # the family's evaluation: miou_*, and with SegNet miou_rare, fd_segnet
METRICS = PUBLISHED + EMBEDDED + LABEL_TO_IMAGE
DEFAULT_METRICS = ("fid", "kid", "intra_lpips")
EMBEDDED_REFERENCE_SEED = 1  # held_out("target", seed=1): the trials' fd_shapesnet reference


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


def parse_metrics(text: str) -> tuple:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise UserError("--metrics", f"unknown metric {', '.join(bad) or '(none)'}; expected some of {', '.join(METRICS)}")
    return tuple(dict.fromkeys(names))


# ---- finding and loading the checkpoint -------------------------------------------------------

def _latest(paths) -> Path | None:
    paths = sorted(paths, key=lambda p: p.parent.name)  # checkpoint_<timestamp>: names sort in time
    return paths[-1] if paths else None


def _trial_id(folder: Path) -> str | None:
    result = folder / "result.json"
    if result.is_file():
        for line in result.read_text().splitlines()[:1]:
            try:
                return str(json.loads(line)["trial_id"])
            except (ValueError, KeyError, TypeError):
                pass
    m = re.match(r"_?trial_([0-9a-f]+)_", folder.name)
    return m.group(1) if m else None


def find_checkpoint(path) -> Path:
    """The checkpoint file a path names: a .pt file; a folder holding state.pt or checkpoint.pt
    (``raygan train --local``); the latest checkpoint_*/state.pt of a Ray Train run folder (or
    its ``train/``); or a Tune trial folder, whose checkpoints live in the experiment's
    ``_train/train_<trial id>/``."""
    p = Path(path).expanduser()
    if p.is_file():
        return p
    if not p.is_dir():
        raise UserError(path, "no such file or folder (expected a checkpoint .pt, a checkpoint_* folder or a trial folder)")
    for name in ("state.pt", "checkpoint.pt"):
        if (p / name).is_file():
            return p / name
    found = _latest(p.glob("checkpoint_*/state.pt")) or _latest(p.glob("train/checkpoint_*/state.pt"))
    if found is None and (trial := _trial_id(p)):
        found = _latest((p.parent / "_train" / f"train_{trial}").glob("checkpoint_*/state.pt"))
    if found is None:
        raise UserError(path, "no checkpoint here (expected state.pt, checkpoint.pt, checkpoint_*/state.pt, "
                              "or a Tune trial folder with checkpoints under ../_train/train_<id>/)")
    return found


def load_generator(path: Path):
    """(SourceModel, sha256 of the file) of a StyleGAN2 checkpoint."""
    from raygan.models.checkpoint import load_source

    return load_source(str(path)), hashlib.sha256(path.read_bytes()).hexdigest()


# ---- images -----------------------------------------------------------------------------------

@torch.no_grad()
def generate(g, z: torch.Tensor, seed: int, batch: int, device) -> torch.Tensor:
    """G(z) in [-1, 1] on the CPU; batch i's noise maps come from seed*100_003 + i, so that two
    generators of one architecture get the same noise for the same z (SCS pairs)."""
    g = g.to(device).eval()
    out = []
    with torch.random.fork_rng(devices=[]):
        for i, b in enumerate(z.split(batch)):
            torch.manual_seed(seed * 100_003 + i)
            out.append(g([b.to(device)])[0].clamp(-1, 1).cpu())
    return torch.cat(out)


def _folder_images(folder, size: int) -> torch.Tensor:
    from raygan.metrics.published import image_files, read_images_u8

    u8 = read_images_u8(image_files(folder), size)
    return torch.from_numpy(u8).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def _state_hash(net: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---- the metrics ------------------------------------------------------------------------------

class Run:
    """What one evaluation computes once and shares between metrics."""

    def __init__(self, opts: EvalOptions, src, images: torch.Tensor, z: torch.Tensor):
        self.opts, self.src, self.images, self.z = opts, src, images, z
        self.size = src.size
        self._inception = self._shapesnet = None

    # -- Inception metrics
    def inception(self):
        if self._inception is None:
            from raygan.metrics import weights
            from raygan.metrics.inception import load_fid_inception
            from raygan.metrics.published import inception_outputs, to_uint8

            w = weights.resolve("inception", self.opts.inception)
            net = load_fid_inception(w, self.opts.device)
            pool, logits = inception_outputs(to_uint8(self.images), net, self.opts.batch)
            self._inception = (w, net, pool, logits)
        return self._inception

    def network_name(self, w) -> str:
        from raygan.metrics.published import INCEPTION_NAME

        return INCEPTION_NAME if w.verified else f"inception-v3-fid layout, UNVERIFIED weights {w.path.name}"

    def reference_features(self) -> tuple[np.ndarray, str]:
        from raygan.metrics.features import default_cache_dir
        from raygan.metrics.published import (cached_features, folder_identity, image_files, inception_outputs,
                                              read_images_u8, reference_cache_path, to_uint8)

        w, net = self.inception()[:2]
        if self.opts.reference:
            files = image_files(self.opts.reference)
            ident = f"folder {Path(self.opts.reference).resolve()} #{folder_identity(Path(self.opts.reference), files)}"
            compute = lambda: np.concatenate([inception_outputs(read_images_u8(files[i:i + 500]), net,  # noqa: E731
                                                                self.opts.batch)[0]
                                              for i in range(0, len(files), 500)])
            n = len(files)
        else:
            from raygan.data.synthetic import held_out

            n = self.opts.reference_count
            ident = f"embedded held-out target sketches, {self.size}px, seed {EMBEDDED_REFERENCE_SEED}"
            compute = lambda: inception_outputs(  # noqa: E731
                to_uint8(held_out("target", n, size=self.size, seed=EMBEDDED_REFERENCE_SEED)), net, self.opts.batch)[0]
        feats = cached_features(reference_cache_path(default_cache_dir(), ident, w.sha256, n), compute)
        return feats, f"{ident} ({n} images)"

    def fid(self):
        from raygan.metrics.published import RESIZE, Score, fid_from_features

        w, _, pool, _ = self.inception()
        ref, ref_name = self.reference_features()
        return [Score("fid", fid_from_features(pool, ref), self.network_name(w), w.sha256, RESIZE, len(pool), ref_name)]

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
        if self.opts.shots:
            shots = _folder_images(self.opts.shots, self.size)
            return shots, f"{len(shots)} shots from {Path(self.opts.shots).resolve()}"
        from raygan.data.synthetic import few_shot_target

        return few_shot_target(size=self.size, n_shots=10, seed=0), "embedded 10 target shots (seed 0)"

    def intra_lpips(self):
        import pickle
        from importlib.metadata import version

        from raygan.metrics import weights
        from raygan.metrics.diversity import LPIPS_MIN_SIZE, intra_cluster_diversity, lpips_distance
        from raygan.metrics.published import Score

        backbone = self.opts.lpips_net
        w = weights.resolve({"vgg": "vgg16", "alex": "alexnet"}[backbone], self.opts.lpips_weights)
        try:
            dist = lpips_distance(backbone, self.opts.device, path=w.path)
        except (RuntimeError, KeyError, ValueError, EOFError, OSError, pickle.UnpicklingError) as e:
            first = str(e).strip().splitlines()[0][:100] if str(e).strip() else ""
            raise UserError(w.path, f"not {w.known.what}'s state dict ({type(e).__name__}: {first})") from None
        shots, shots_name = self.shots()
        value = intra_cluster_diversity(self.images, shots, dist, seed=self.opts.seed)
        resize = f"bilinear to {LPIPS_MIN_SIZE} px" if self.size < LPIPS_MIN_SIZE else "none"
        verified = "" if w.verified else ", UNVERIFIED backbone"
        return [Score(f"intra_lpips_{backbone}", value, f"lpips {version('lpips')} {backbone} v0.1{verified}",
                      w.sha256, resize, len(self.images), f"nearest of {shots_name}; <= 50 per cluster")]

    # -- SCS
    def scs(self):
        from raygan.metrics import weights
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
            self._shapesnet = (net, _state_hash(net))
        return self._shapesnet

    def _embedded(self, metric, value, reference):
        from raygan.metrics.features import VERSION
        from raygan.metrics.published import Score

        return [Score(metric, value, f"shapesnet {VERSION} (raygan's own, not a published network)",
                      self.shapesnet()[1], "none", len(self.images), reference)]

    def fd_shapesnet(self):
        from raygan.metrics.evaluate import N_REFERENCE, reference_stats
        from raygan.metrics.features import extract_features
        from raygan.metrics.fid import feature_stats, frechet_distance

        net = self.shapesnet()[0]
        mu, sigma = feature_stats(extract_features(self.images, net).numpy())
        value = frechet_distance(mu, sigma, *reference_stats(net, self.size))
        return self._embedded("fd_shapesnet", value, f"embedded held-out target sketches ({N_REFERENCE}, seed 1)")

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


# ---- the command ------------------------------------------------------------------------------

def _output_path(opts: EvalOptions, given: Path, ckpt: Path) -> Path:
    if opts.out:
        out = Path(opts.out).expanduser()
        if out.exists():
            raise UserError(out, "already exists (raygan eval never overwrites; choose another --out)")
        return out
    folder = given if given.is_dir() else ckpt.parent
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out, k = folder / f"eval_{stamp}.json", 1
    while out.exists():
        out, k = folder / f"eval_{stamp}-{k}.json", k + 1
    return out


def check_options(opts: EvalOptions) -> None:
    if opts.samples < 2:
        raise UserError("--samples", f"expected at least 2 samples, got {opts.samples}")
    if "is" in opts.metrics and opts.samples < 10:
        raise UserError("--samples", f"IS uses 10 splits: expected at least 10 samples, got {opts.samples}")
    if opts.reference_count < 2:
        raise UserError("--reference-count", f"expected at least 2, got {opts.reference_count}")
    if opts.lpips_net not in ("vgg", "alex"):
        raise UserError("--lpips-net", f"expected vgg or alex, got {opts.lpips_net!r}")
    if opts.scs_edges not in ("hed", "sobel", "canny"):
        raise UserError("--scs-edges", f"expected hed, sobel or canny, got {opts.scs_edges!r}")


def preflight(opts: EvalOptions) -> None:
    """Fail before generating anything: every weights file and folder the metrics need."""
    from raygan.metrics import weights
    from raygan.metrics.published import image_files

    if {"fid", "kid", "is"} & set(opts.metrics):
        weights.resolve("inception", opts.inception)
    if "intra_lpips" in opts.metrics:
        weights.resolve({"vgg": "vgg16", "alex": "alexnet"}[opts.lpips_net], opts.lpips_weights)
    if "scs" in opts.metrics and opts.scs_edges == "hed":
        weights.resolve("hed", opts.hed)
    if opts.reference and {"fid", "kid"} & set(opts.metrics):
        image_files(opts.reference)
    if opts.shots and {"intra_lpips", "intra_shapesnet"} & set(opts.metrics):
        image_files(opts.shots)


def evaluate_checkpoint(path, opts: EvalOptions, progress=print) -> tuple[list[dict], Path]:
    """Score a checkpoint; returns the provenance records and the JSON file written."""
    from raygan.eval_labels import evaluate_labels, is_label_to_image, load_state

    given = Path(path).expanduser()
    ckpt = find_checkpoint(given)
    state = load_state(ckpt)
    if is_label_to_image(state):
        if opts.metrics not in (None, LABEL_TO_IMAGE):
            raise UserError("--metrics", f"a label-to-image checkpoint is scored with its trial's own evaluation "
                                         f"(miou); got {', '.join(opts.metrics)}")
        check_options(dataclasses.replace(opts, metrics=LABEL_TO_IMAGE))
        out = _output_path(opts, given, ckpt)
        records = evaluate_labels(given, ckpt, state, opts, progress)
        return records, _write(out, ckpt, hashlib.sha256(ckpt.read_bytes()).hexdigest(), state["g_config"],
                               opts.seed, records)
    opts = dataclasses.replace(opts, metrics=opts.metrics or DEFAULT_METRICS)
    if "miou" in opts.metrics:
        raise UserError("--metrics", "miou scores label-to-image checkpoints; this is a StyleGAN2 generator")
    check_options(opts)
    preflight(opts)
    out = _output_path(opts, given, ckpt)
    src, ckpt_sha = load_generator(ckpt)
    z = torch.randn(opts.samples, src.g_config.get("style_dim", 512),
                    generator=torch.Generator().manual_seed(10_000 + opts.seed))
    t0 = time.time()
    images = generate(src.generator(), z, opts.seed, opts.batch, opts.device)
    progress(f"raygan: eval {ckpt}: {len(images)} samples at {src.size}px in {time.time() - t0:.1f}s")
    run = Run(opts, src, images, z)
    records = []
    for metric in opts.metrics:
        t0 = time.time()
        for score in run.compute(metric):
            records.append(score.record())
        progress(f"raygan: eval: {metric} in {time.time() - t0:.1f}s")
    return records, _write(out, ckpt, ckpt_sha, src.g_config, opts.seed, records)


def _write(out: Path, ckpt: Path, ckpt_sha: str, g_config: dict, seed: int, records: list[dict]) -> Path:
    report = {"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": ckpt_sha, "generator": dict(g_config),
              "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scores": records}
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "x") as f:  # "x": never overwrite
        json.dump(report, f, indent=2, default=str)
    return out


def format_table(records: list[dict]) -> str:
    """Score table, one row per metric, the provenance beside each number."""
    head = ("metric", "value", "network", "weights", "resize", "samples", "reference")
    rows = []
    for r in records:
        value = f"{r['value']:.4f}" + (f" ± {r['std']:.4f}" if "std" in r else "")
        rows.append((r["metric"], value, r["network"], r["weights_sha256"][:12] or "-", r["resize"],
                     str(r["samples"]), r["reference"]))
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    return "\n".join(lines)
