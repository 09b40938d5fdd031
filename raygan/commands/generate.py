"""`raygan generate`: look at a checkpoint's images.

From a trial folder (a replicated one's: seed 0's best evaluation), a checkpoint folder or file,
or a rosinality-layout StyleGAN2 (found as `raygan eval` finds it), into a new folder:
- ``grid.png``: G_t's samples, and above them G_s's for the same z and noise where the source
  is known (the trial's ``model.checkpoint``, or ``--source``);
- ``samples/000000.png`` ...: ``--pngs`` images at the generator's size, for external FID tools;
- ``interpolation.png``: ``--steps`` images on the line in W between two codes, all with one
  noise (only the code changes);
every image seeded as `raygan eval --seed` draws them (``evaluation.sampling``), sampled as its
method samples (RSSA through its compression: ``Method.sampling_map``), with truncation ψ:
w̄ + ψ (w − w̄), w̄ the checkpoint's ``latent_avg`` (else the mean of 4096 styles).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from raygan.errors import UserError
from raygan.evaluation.sampling import eval_codes, generate
from raygan.runs import EXPERIMENT_COPY, find_checkpoint, new_output, seed_checkpoints, trial_folder_of

MEAN_STYLES = 4096  # codes behind w̄ when the checkpoint keeps no latent_avg (rosinality's truncation_mean)


@dataclass
class GenerateOptions:
    n: int = 8                  # grid columns (one code each)
    pngs: int = 100             # files under samples/
    steps: int = 8              # interpolation frames; 0: none
    truncation: float = 1.0     # ψ
    seed: int = 0
    source: str | None = None   # G_s of the grid's top row: None = the trial's, "none" = no top row
    out: str | None = None
    batch: int = 50
    device: str = "cpu"


def check_options(opts: GenerateOptions) -> None:
    if opts.n < 1:
        raise UserError("--n", f"expected at least 1 grid column, got {opts.n}")
    if opts.pngs < 0:
        raise UserError("--pngs", f"expected 0 or more images, got {opts.pngs}")
    if opts.steps == 1 or opts.steps < 0:
        raise UserError("--steps", f"expected 0 (no interpolation) or at least 2 frames, got {opts.steps}")
    if not opts.truncation >= 0:
        raise UserError("--truncation", f"expected ψ >= 0 (1: none), got {opts.truncation}")


def trial_source(given: Path, ckpt: Path) -> str | None:
    """The source generator a trial adapted (its experiment's model.checkpoint), if known."""
    from raygan.search_space import load_experiment

    trial = trial_folder_of(given, ckpt)
    if trial is None or not (trial.parent / EXPERIMENT_COPY).is_file():
        return None
    return load_experiment(trial.parent / EXPERIMENT_COPY).trial_config.get("model", {}).get("checkpoint")


def mean_style(g, state: dict, seed: int) -> torch.Tensor:
    """w̄: the checkpoint's latent_avg, else the mean style of MEAN_STYLES seeded codes."""
    if isinstance(state.get("latent_avg"), torch.Tensor):
        return state["latent_avg"].reshape(-1).float()
    z = torch.randn(MEAN_STYLES, g.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return g.style(z).mean(0)


def truncated(g, latent_map, psi: float, w_avg: torch.Tensor):
    """z -> styles with truncation ψ around w̄ (None: G's own mapping, untruncated)."""
    if psi == 1.0:
        return latent_map
    mapping = latent_map or g.style
    return lambda z: w_avg + psi * (mapping(z) - w_avg)


def _save_pngs(images: torch.Tensor, folder: Path) -> None:
    from PIL import Image

    from raygan.metrics.published import to_uint8

    folder.mkdir(parents=True)
    for i, img in enumerate(to_uint8(images)):
        Image.fromarray(img).save(folder / f"{i:06d}.png")


def generate_images(path, opts: GenerateOptions, progress=print) -> Path:
    """Write the grid, the PNGs and the interpolation strip of a checkpoint; returns the folder."""
    from torchvision.utils import make_grid, save_image

    from raygan.commands.evaluate import sampling_map
    from raygan.commands.evaluate_labels import is_label_to_image, load_state
    from raygan.models.checkpoint import load_source

    check_options(opts)
    given = Path(path).expanduser()
    seeds = seed_checkpoints(given) if given.is_dir() else []
    ckpt = seeds[0] if seeds else find_checkpoint(given)
    if seeds:
        progress(f"raygan: generate: a replicated trial ({len(seeds)} seeds): seed 0's best evaluation, {ckpt}")
    state = load_state(ckpt) or {}
    if is_label_to_image(state):
        raise UserError(ckpt, "a label-to-image checkpoint: raygan generate draws StyleGAN2 generators (the trial's "
                              "samples.png shows its images; raygan eval scores it)")
    src = load_source(str(ckpt))
    source_path = trial_source(given, ckpt) if opts.source is None else (None if opts.source == "none" else opts.source)
    g_s = load_source(source_path) if source_path else None
    if g_s is not None and (g_s.size != src.size or g_s.g_config.get("style_dim") != src.g_config.get("style_dim")):
        raise UserError(source_path, f"the source generator ({g_s.size}px) does not match the checkpoint "
                                     f"({src.size}px): pass --source, or --source none")
    out = new_output(opts.out, given if given.is_dir() else ckpt.parent, "generate", "", "raygan generate")
    g = src.generator()
    psi = opts.truncation
    styles = truncated(g, sampling_map(state, g), psi, mean_style(g, state, opts.seed))
    draw = lambda gen, z, latent_map, **kw: generate(gen, z, opts.seed, opts.batch, opts.device, latent_map, **kw)  # noqa: E731
    z = eval_codes(max(opts.n, opts.pngs), g.style_dim, opts.seed)
    t0 = time.time()
    adapted = draw(g, z, styles)
    rows = [adapted[:opts.n]]
    if g_s is not None:
        gs = g_s.generator()
        source_styles = truncated(gs, None, psi, mean_style(gs, {"latent_avg": g_s.latent_avg}, opts.seed))
        rows.insert(0, draw(gs, z[:opts.n], source_styles))
    out.mkdir(parents=True)
    save_image(make_grid(torch.cat(rows), nrow=opts.n, normalize=True, value_range=(-1, 1), padding=1),
               out / "grid.png")
    if opts.pngs:
        _save_pngs(adapted[:opts.pngs], out / "samples")
    if opts.steps:
        mapping = styles or g.style
        with torch.no_grad():
            ends = mapping(eval_codes(2, g.style_dim, opts.seed + 1))
        t = torch.linspace(0, 1, opts.steps).reshape(-1, *[1] * (ends.dim() - 1))
        frames = draw(g, ends[:1] * (1 - t) + ends[1:] * t, lambda w: w, shared_noise=True)
        save_image(make_grid(frames, nrow=opts.steps, normalize=True, value_range=(-1, 1), padding=1),
                   out / "interpolation.png")
    (out / "generate.json").write_text(json.dumps({
        "checkpoint": str(ckpt.resolve()), "source": source_path, "seed": opts.seed, "truncation": psi,
        "grid": {"columns": opts.n, "rows": ["G_s", "G_t"] if g_s is not None else ["G_t"]},
        "pngs": opts.pngs, "interpolation_steps": opts.steps,
        "sampling": "the method's sampling map" if sampling_map(state, g) else "G's own mapping"}, indent=2))
    progress(f"raygan: generate {ckpt}: {len(adapted)} samples at {src.size}px in {time.time() - t0:.1f}s")
    return out
