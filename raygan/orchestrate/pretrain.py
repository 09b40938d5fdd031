"""`raygan pretrain FOLDER`: a StyleGAN2 source trained on the user's own images through Ray
Train (data-parallel workers: gloo on CPU, NCCL on GPU), resumable, and written in the
rosinality layout that every other command reads (model.checkpoint, raygan generate, raygan eval).

OUT holds:
- ``init.pt``: the randomly initialised networks (seeded): the run's ``model.checkpoint``;
- ``pretrain.yaml``: the experiment it runs (method ``stylegan2``, every image of the folder;
  `raygan train OUT/pretrain.yaml --output DIR` trains the same from scratch);
- ``log/``: TensorBoard curves and sample grids (progress lines with an ETA meanwhile);
  ``run/``: Ray Train's checkpoints, from which ``--resume`` continues a killed run;
- ``source.pt`` and ``source.png``: the result (g, d, g_ema, latent_avg, g_config, d_config)
  and 64 samples of its g_ema.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from raygan.errors import UserError

EXPERIMENT, INIT, RESULT, RUN, LOG = "pretrain.yaml", "init.pt", "source.pt", "run", "log"


@dataclasses.dataclass
class PretrainOptions:
    """The run's knobs; the widths and the training defaults are rosinality's train.py
    (config-f widths, batch 16 a worker; the regularisers are the harness's, which are his)."""
    folder: str
    out: str
    size: int = 256
    steps: int = 100_000
    batch: int = 16
    workers: int = 1
    gpu: bool = False
    cpus_per_worker: float = 1.0
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    eval_every: int = 2000
    eval_samples: int = 500
    seed: int = 0
    resume: bool = False
    extend_to: int | None = None  # with resume: the run's new train.steps (--steps)


def check(opts: PretrainOptions) -> Path:
    """The checks that need neither Ray nor torch's networks: one-line errors before anything is
    written. Returns the output folder."""
    out = Path(opts.out).expanduser()
    if not opts.resume:
        from raygan.models.stylegan2 import SIZES

        if opts.size not in SIZES:
            raise UserError("--size", f"{opts.size}: expected one of {', '.join(map(str, SIZES))}")
        at_least = {"--batch": (opts.batch, 2), "--steps": (opts.steps, 1), "--workers": (opts.workers, 1),
                    "--style-dim": (opts.style_dim, 1), "--n-mlp": (opts.n_mlp, 1),
                    "--channel-multiplier": (opts.channel_multiplier, 1), "--channel-max": (opts.channel_max, 1),
                    "--eval-every": (opts.eval_every, 1), "--eval-samples": (opts.eval_samples, 20)}
        for flag, (value, low) in at_least.items():  # the knobs' own bounds, before anything is written
            if value < low:
                raise UserError(flag, f"{value}: expected at least {low}")
        if opts.cpus_per_worker <= 0:
            raise UserError("--cpus-per-worker", f"{opts.cpus_per_worker:g}: expected more than 0")
        from raygan.data.images import check_folder

        check_folder(opts.folder, 2, "images to pretrain on")  # every file decoded once
    if opts.resume and not (out / EXPERIMENT).is_file():
        raise UserError(out, f"holds no pretraining run to resume (no {EXPERIMENT})")
    if not opts.resume and (out / EXPERIMENT).is_file():
        raise UserError(out, "holds a pretraining run: pass --resume to continue it, or another --out")
    if not opts.resume and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(out, "exists and is not an empty folder: choose another --out")
    return out


def experiment(opts: PretrainOptions, out: Path) -> dict:
    """The experiment a new run writes to OUT/pretrain.yaml."""
    from raygan.families.fewshot import inception_missing
    from raygan.evaluation.section import EvalConfig

    # FID against the folder (the shots: every image) where its Inception weights are found; else
    # the Fréchet distance in the features of the realism classifier C (the folder's images vs the
    # initial network's samples); realism is C's p(folder) of the samples.
    metrics = ["fd_domainnet", "realism"] if inception_missing(EvalConfig()) else ["fid_shots", "realism"]
    return {
        "name": "pretrain",
        "method": {"name": "stylegan2"},
        "data": {"target": str(Path(opts.folder).expanduser().resolve()), "shots": 0, "seed": opts.seed},
        "model": {"checkpoint": str((out / INIT).resolve())},
        "train": {"steps": opts.steps, "batch_size": opts.batch, "eval_every": opts.eval_every,
                  "eval_samples": opts.eval_samples, "seed": opts.seed, "train_noise_strengths": True},
        "eval": {"metrics": metrics},
        "search": {"metric": metrics[0], "mode": "min"},
        "scaling": {"num_workers": opts.workers, "use_gpu": opts.gpu, "cpus_per_worker": opts.cpus_per_worker},
    }


def write_init(opts: PretrainOptions, path: Path) -> None:
    """The randomly initialised G and D (seeded) as a rosinality-layout file."""
    from raygan.models.checkpoint import random_source, save_source

    g_config = dict(size=opts.size, style_dim=opts.style_dim, n_mlp=opts.n_mlp,
                    channel_multiplier=opts.channel_multiplier, channel_max=opts.channel_max)
    save_source(random_source(g_config, seed=opts.seed), path)


def export(state: dict, out: Path) -> Path:
    """A training state as OUT/source.pt (rosinality's keys plus raygan's configs) and 64 seeded
    samples of its g_ema as OUT/source.png."""
    from torchvision.utils import save_image

    from raygan.cache import save_atomic
    from raygan.evaluation.sampling import eval_codes, generate
    from raygan.models.checkpoint import load_source

    path = out / RESULT
    save_atomic({k: state[k] for k in ("g", "d", "g_ema", "latent_avg", "g_config", "d_config")}, path)
    g = load_source(str(path)).generator()  # read back as every other command reads it
    samples = generate(g, eval_codes(64, g.style_dim, 0), 0, 64)
    save_image(samples, out / "source.png", nrow=8, normalize=True, value_range=(-1, 1))
    return path


def pretrain(opts: PretrainOptions, address: str | None = None) -> Path:
    """Train (or, with ``opts.resume``, continue) and export; returns OUT/source.pt."""
    import yaml

    out = check(opts)
    if opts.resume:
        from raygan.search_space import load_experiment, read_yaml

        steps = load_experiment(out / EXPERIMENT).trial_config["train"]["steps"]  # a broken file: one line
        if opts.extend_to:  # train a finished (or killed) run on to more steps
            if opts.extend_to < steps:
                raise UserError("--steps", f"{opts.extend_to}: fewer than the run's {steps} steps")
            doc = read_yaml(out / EXPERIMENT)
            doc.setdefault("train", {})["steps"] = steps = opts.extend_to
            (out / EXPERIMENT).write_text(yaml.safe_dump(doc, sort_keys=False))
        print(f"raygan: pretrain: resuming {out} from its last checkpoint, to step {steps} (its {EXPERIMENT}; "
              "the other flags given now are not used)", flush=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_init(opts, out / INIT)
        (out / EXPERIMENT).write_text(yaml.safe_dump(experiment(opts, out), sort_keys=False))
    return _train(out, address)


def _train(out: Path, address: str | None) -> Path:
    import ray
    import torch

    from raygan.orchestrate.instance import connect
    from raygan.orchestrate.train import fit_trial
    from raygan.orchestrate.tune import prepare_shared_assets, set_ray_env
    from raygan.runs import STATE_FILE
    from raygan.search_space import load_experiment

    exp = load_experiment(out / EXPERIMENT)
    prepare_shared_assets(exp)  # the folder's images checked, C trained (cached) before Ray starts
    set_ray_env()
    # With the dashboard: it serves the State API that Ray Train's controller polls.
    print(connect(address, dashboard=True), flush=True)
    scaling = exp.scaling.on_cluster(ray.cluster_resources().get("GPU", 0))
    # The same run name and storage on every start: Ray Train continues from the run's last
    # checkpoint there (orchestrate/train.py restores the state it holds).
    result = fit_trial(exp.trial_config, scaling, name=RUN, storage=str(out), log_dir=str(out / LOG),
                       label="pretrain")
    if result.error or result.checkpoint is None:
        raise RuntimeError(f"pretraining failed: {result.error or 'no checkpoint'}")
    with result.checkpoint.as_directory() as d:
        state = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=True)
    path = export(state, out)
    print(f"raygan: pretrain: wrote {path} (step {state['step']}) and its samples {out / 'source.png'}; "
          f"use it as model.checkpoint: {path}", flush=True)
    return path
