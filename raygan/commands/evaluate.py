"""`raygan eval`: score a StyleGAN2 checkpoint (a trial's or a rosinality-layout file).

Every score is stored with its provenance (network, weights hash, resize, sample count,
reference set) in a new ``eval_<timestamp>.json`` (never overwriting a file) and printed as a
table. Published metrics (fid, kid, is, intra_lpips, scs with HED) need their weights files
(``raygan.weights``); the embedded ones (fd_shapesnet, realism, intra_shapesnet) use
raygan's own ShapesNet and carry its name. A label-to-image checkpoint is scored by its
trial's own evaluation, rebuilt (``raygan.commands.evaluate_labels``): metric ``miou``. A replicated
trial (``search.repeats``) is scored seed by seed, with the seeds' mean ± sd per metric.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import statistics
import time
from pathlib import Path

from raygan import stats
from raygan.errors import UserError
from raygan.evaluation.fewshot import METRICS as FEWSHOT_METRICS, EvalOptions, Run, preflight
from raygan.evaluation.sampling import eval_codes, generate
from raygan.runs import find_checkpoint, new_output, seed_checkpoints

LABEL_TO_IMAGE = ("miou",)  # the family's evaluation: miou_*, and with SegNet miou_rare, fd_segnet
DEFAULT_METRICS = ("fid", "kid", "intra_lpips")


def parse_metrics(text: str) -> tuple:
    names = tuple(m.strip() for m in text.split(",") if m.strip())
    known = (*FEWSHOT_METRICS, *LABEL_TO_IMAGE)  # the registry's metrics, read when asked
    bad = [m for m in names if m not in known]
    if bad or not names:
        raise UserError("--metrics", f"unknown metric {', '.join(bad) or '(none)'}; expected some of {', '.join(known)}")
    return tuple(dict.fromkeys(names))


# ---- finding and loading the checkpoint -------------------------------------------------------

def load_generator(path: Path):
    """(SourceModel, sha256 of the file) of a StyleGAN2 checkpoint."""
    from raygan.models.checkpoint import load_source

    return load_source(str(path)), hashlib.sha256(path.read_bytes()).hexdigest()


def sampling_map(state: dict, g):
    """How a saved generator is sampled: its method's ``sampling_map`` (the state names the
    method); a rosinality-layout file through G's own mapping. Trial checkpoints written before
    states named their method: RSSA's are the ones that kept a compression."""
    from raygan.registry import METHODS, method_module

    name = state.get("method") or ("rssa" if "latent_compression" in state else None)
    return method_module(name).Method.sampling_map(state, g) if name in METHODS else None


# ---- the command ------------------------------------------------------------------------------

def _output_path(opts: EvalOptions, given: Path, ckpt: Path) -> Path:
    return new_output(opts.out, given if given.is_dir() else ckpt.parent, "eval", ".json", "raygan eval")


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


def evaluate_checkpoint(path, opts: EvalOptions, progress=print) -> tuple[list[dict], Path]:
    """Score a checkpoint; returns the provenance records and the JSON file written. A
    replicated trial's folder (``search.repeats``) is scored seed by seed, on the same codes:
    each seed's records (``seed``: i) and, per metric, the seeds' mean ± standard deviation."""
    given = Path(path).expanduser()
    seeds = seed_checkpoints(given) if given.is_dir() else []
    if not seeds:
        ckpt = find_checkpoint(given)
        out = _output_path(opts, given, ckpt)
        records, sha, g_config = _score(given, ckpt, opts, progress)
        return records, _write(out, {"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha},
                               g_config, opts.seed, records)
    out = _output_path(opts, given, seeds[0])
    records, checkpoints = [], []
    for i, ckpt in enumerate(seeds):
        progress(f"raygan: eval: seed {i} of {len(seeds)} ({ckpt})")
        scored, sha, g_config = _score(given, ckpt, opts, progress)
        records += [{**r, "seed": i} for r in scored]
        checkpoints.append({"checkpoint": str(ckpt.resolve()), "checkpoint_sha256": sha})
    records += over_seeds(records)
    return records, _write(out, {"checkpoints": checkpoints}, g_config, opts.seed, records)


def over_seeds(records: list[dict]) -> list[dict]:
    """Per metric of seed-tagged records: one record of the seeds' mean, their standard
    deviation (``seed_sd``), standard error (``sem``) and values, with the shared provenance."""
    out = {}
    for r in records:
        out.setdefault(r["metric"], []).append(r)
    merged = []
    for metric, rs in out.items():
        values = [r["value"] for r in rs]
        first = {k: v for k, v in rs[0].items() if k not in ("seed", "std", "extra")}
        merged.append({**first, "value": statistics.fmean(values), "seeds": values,
                       "seed_sd": statistics.stdev(values) if len(values) > 1 else math.nan,
                       "sem": stats.sem(values)})
    return merged


def _score(given: Path, ckpt: Path, opts: EvalOptions, progress) -> tuple[list[dict], str, dict]:
    """(records, sha256 of the file, generator config) of one checkpoint file."""
    from raygan.commands.evaluate_labels import evaluate_labels, is_label_to_image, load_state

    state = load_state(ckpt)
    if is_label_to_image(state):
        if opts.metrics not in (None, LABEL_TO_IMAGE):
            raise UserError("--metrics", f"a label-to-image checkpoint is scored with its trial's own evaluation "
                                         f"(miou); got {', '.join(opts.metrics)}")
        check_options(dataclasses.replace(opts, metrics=LABEL_TO_IMAGE))
        records = evaluate_labels(given, ckpt, state, opts, progress)
        return records, hashlib.sha256(ckpt.read_bytes()).hexdigest(), state["g_config"]
    opts = dataclasses.replace(opts, metrics=opts.metrics or DEFAULT_METRICS)
    if "miou" in opts.metrics:
        raise UserError("--metrics", "miou scores label-to-image checkpoints; this is a StyleGAN2 generator")
    check_options(opts)
    preflight(opts.metrics, opts, knob="--metrics", embedded=opts.shots is None)
    src, ckpt_sha = load_generator(ckpt)
    z = eval_codes(opts.samples, src.g_config.get("style_dim", 512), opts.seed)
    t0 = time.time()
    g = src.generator()
    images = generate(g, z, opts.seed, opts.batch, opts.device, sampling_map(state or {}, g))
    progress(f"raygan: eval {ckpt}: {len(images)} samples at {src.size}px in {time.time() - t0:.1f}s")
    run = Run(opts, src, images, z)
    records = []
    for metric in opts.metrics:
        t0 = time.time()
        for score in run.compute(metric):
            records.append(score.record())
        progress(f"raygan: eval: {metric} in {time.time() - t0:.1f}s")
    return records, ckpt_sha, src.g_config


def _write(out: Path, checkpoints: dict, g_config: dict, seed: int, records: list[dict]) -> Path:
    report = {**checkpoints, "generator": dict(g_config), "seed": seed, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "scores": records}
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
        metric = r["metric"] + (f" (seed {r['seed']})" if "seed" in r else "")
        if "seeds" in r:
            value = f"{r['value']:.4f} ± {r['seed_sd']:.4f} sd"
            metric = f"{r['metric']} ({len(r['seeds'])} seeds)"
        rows.append((metric, value, r["network"], r["weights_sha256"][:12] or "-", r["resize"],
                     str(r["samples"]), r["reference"]))
    widths = [max(len(x[i]) for x in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in [head, *rows]]
    return "\n".join(lines)
