"""A trial's best evaluation (``search.scope: best``) and its checkpoint.

A GAN trial's last evaluation is often not its best: generators reach the target's
realism and then lose diversity (the DCL paper's analysis). With scope best a trial is
ranked, reported and (with ASHA) promoted by its best evaluation of the search's
objectives so far; every report carries that evaluation's metrics as ``best/<name>``,
and its state is kept in the trial's folder as ``best/state.pt`` (with its sample grid
``best/samples.png``), which best_config.yaml, the report and `raygan eval` point at.

Candidates are the evaluations after training started (step > 0: the unadapted source
is reported for the curves, never chosen). Several objectives: raygan.pareto.best_index
(the trial's own Pareto front, nearest the ideal point). The record lives in the trial's
folder, not in its checkpoints: a restarted trial continues it, and under PBT a trial
that takes over another's weights keeps its own best.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from raygan.pareto import best_index
from raygan.runs import BEST_FOLDER, BEST_RECORD, BEST_SAMPLES, STATE_FILE

PREFIX = "best/"  # reported keys: best/<metric> for every metric of the best evaluation


def reported_name(metric: str) -> str:
    """The key a search ranks by under scope best."""
    return PREFIX + metric


def best_of(metrics: dict) -> dict:
    """The best evaluation's metrics from a report (``best/<k>`` keys), without the prefix."""
    return {k[len(PREFIX):]: v for k, v in metrics.items() if k.startswith(PREFIX)}


class BestEvaluation:
    """The record of one trial's evaluations and which one is best so far. With ``window`` w > 1
    (``search.window``) an evaluation is scored by each objective's mean over it and the w - 1
    evaluations before it (fewer at the start), so that one lucky evaluation between two poor
    ones does not win; a replicated trial's objectives are windowed seed by seed and combined by
    ``statistic`` (raygan.stats). The kept state is the window's last evaluation's."""

    def __init__(self, objectives: list[tuple[str, str]], folder: str | Path | None = None,
                 window: int = 1, statistic: str = "mean"):
        self.objectives = list(objectives)
        self.window, self.statistic = window, statistic
        self.folder = Path(folder) / BEST_FOLDER if folder else None
        self.evaluations: list[dict] = []  # each candidate evaluation's metrics
        self.best: dict | None = None
        if self.folder and (self.folder / BEST_RECORD).is_file():
            record = json.loads((self.folder / BEST_RECORD).read_text())
            self.evaluations, self.best = record["evaluations"], record["best"]

    def update(self, metrics: dict) -> bool:
        """Add one evaluation; True when it is the new best (its state should be kept)."""
        if metrics.get("step", 0) <= 0:
            return False
        kept = {k: v for k, v in metrics.items() if not k.startswith(("loss/", PREFIX))}
        self.evaluations.append(kept)
        names, modes = [m for m, _ in self.objectives], [d for _, d in self.objectives]
        scored = [self._scored(i) for i in range(len(self.evaluations))]
        i = best_index([[e.get(m) for m in names] for e in scored], modes)
        self.best = scored[i] if i is not None else None
        return i == len(self.evaluations) - 1

    def _scored(self, i: int) -> dict:
        """Evaluation i with each objective replaced by its value over the window ending at i."""
        from raygan import stats

        if self.window == 1:
            return self.evaluations[i]
        span = self.evaluations[max(0, i - self.window + 1): i + 1]
        out = dict(self.evaluations[i])
        for m, mode in self.objectives:
            per_seed = [stats.seed_values(e, m) for e in span]
            if per_seed[-1] and all(len(v) == len(per_seed[-1]) for v in per_seed):
                values = [stats.trailing_mean(list(seed), len(span))[-1] for seed in zip(*per_seed)]
                out.update({stats.seed_key(j, m): v for j, v in enumerate(values)})
                out[m], out[m + stats.SEM] = stats.over_seeds(values, self.statistic, mode), stats.sem(values)
            else:
                out[m] = stats.trailing_mean([float(e.get(m, float("nan"))) for e in span], len(span))[-1]
        return out

    def reported(self) -> dict:
        """``best/<k>`` for the best evaluation's metrics; NaN objectives before there is one
        (Tune wants the searched keys in every result)."""
        if self.best is None:
            return {reported_name(m): float("nan") for m, _ in self.objectives}
        return {reported_name(k): v for k, v in self.best.items()}

    def save(self, state: dict | None, samples=None) -> None:
        """Write the record, and (for a new best) its state and sample grid, atomically."""
        if self.folder is None:
            return
        keep(self.folder, state, samples)
        tmp = self.folder / f".{BEST_RECORD}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps({"objectives": self.objectives, "best": self.best,
                                   "evaluations": self.evaluations}, indent=1))
        os.replace(tmp, self.folder / BEST_RECORD)


def keep(folder: Path, state: dict | None, samples=None) -> None:
    """Write a best evaluation's state and sample grid into ``folder`` (each atomically)."""
    from raygan.cache import save_atomic

    folder.mkdir(parents=True, exist_ok=True)
    if state is not None:
        save_atomic(state, folder / STATE_FILE)
    if samples is not None:
        from torchvision.utils import save_image

        tmp = folder / f".{BEST_SAMPLES}.{os.getpid()}.png"
        save_image(samples, tmp)
        os.replace(tmp, folder / BEST_SAMPLES)
