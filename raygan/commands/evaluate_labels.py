"""`raygan eval` of a label-to-image checkpoint: the trial's own evaluation, rebuilt.

The method is rebuilt from the run's ``experiment.yaml`` and the trial's sampled knobs
(``params.json``), or from ``--config`` for a checkpoint outside a run folder, and scored by
its family's evaluator: SegNet's mIoU, rare-class IoU and Fréchet distance on held-out
scenes, or ``miou_<segmenter>`` on ``data.eval_root`` with ``data.segmenter``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from raygan.errors import UserError


def trial_config(given: Path, ckpt: Path, config: str | None) -> tuple[dict, str]:
    """(plain trial config, where it came from)."""
    from raygan.runs import EXPERIMENT_COPY, PARAMS_FILE, trial_folder_of
    from raygan.search_space import load_experiment, resolve

    if config:
        return load_experiment(config).trial_config, str(config)
    trial = trial_folder_of(given, ckpt)
    if trial is None or not (trial.parent / EXPERIMENT_COPY).is_file():
        raise UserError(ckpt, "a label-to-image checkpoint outside a raygan run folder: pass --config with the "
                              "experiment YAML it was trained with")
    try:
        params = json.loads((trial / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        raise UserError(trial / PARAMS_FILE, "unreadable: expected the trial's sampled knobs (JSON)") from None
    exp = load_experiment(trial.parent / EXPERIMENT_COPY)
    return resolve(exp.trial_config, {k: v for k, v in params.items() if k in exp.space}), str(trial)


def evaluate_labels(given: Path, ckpt: Path, state: dict, opts, progress=print) -> list[dict]:
    """Provenance records of the family's metrics for this checkpoint."""
    from raygan.train.loop import build_method, prepare
    from raygan.evaluation.label_scoring import SceneEvaluator
    from raygan.cache import fingerprint
    from raygan.metrics.miou import VERSION
    from raygan.metrics.published import Score
    from raygan.registry import family_of

    cfg, source = trial_config(given, ckpt, opts.config)
    cfg = json.loads(json.dumps(cfg))
    cfg["train"]["eval_samples"] = opts.samples
    cfg["train"]["seed"] = opts.seed
    prepare(cfg, [cfg["method"]["name"]], source, progress=lambda line: progress(f"raygan: {line}"))
    t, method, _ = build_method(cfg, opts.device)
    try:
        method.load_state_dict(state)
    except (KeyError, RuntimeError) as e:
        raise UserError(ckpt, f"does not fit the {cfg['method']['name']} model of {source} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:100]})") from None
    evaluation = family_of(t["method_name"]).evaluation(t, method, opts.device)
    ev = evaluation.evaluator
    if isinstance(ev, SceneEvaluator):
        network, sha = f"segnet {VERSION} (raygan's own, trained on real scenes; not a published network)", \
            fingerprint(ev.net, 10)
        reference = f"{len(ev.labels)} held-out scenes (seed {opts.seed}); fd against SegNet reference scenes"
    else:
        seg = Path(t["data"].segmenter)
        network, sha = f"user segmenter {seg.name}", hashlib.sha256(seg.read_bytes()).hexdigest()
        reference = f"{len(ev.labels)} held-out pairs of {Path(t['data'].eval_root).resolve()}"
    # The evaluator's scores, not evaluation.metrics(): a trial also reports counters with them
    # (data/streamed_rows of a packed dataset), which are no scores.
    return [Score(name, float(value), network, sha, "none", len(ev.labels), reference).record()
            for name, value in ev.metrics(method.generate).items()]


def is_label_to_image(state) -> bool:
    return isinstance(state, dict) and "n_classes" in (state.get("g_config") or {})


def load_state(path: Path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: the StyleGAN2 loader's own message says why
        return None
