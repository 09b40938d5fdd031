"""Tune stoppers for GAN trials."""
from __future__ import annotations

from ray import tune

from raygan.evaluation.saturation import SATURATED_AT
from raygan.pareto import finite


class RealismPlateau(tune.Stopper):
    """``search.stopper: realism_plateau``: ends a trial at the evaluation where its realism
    has saturated (raygan.evaluation.saturation; the trial reports the step as
    ``saturated_at_step`` and the diversity there as ``diversity_at_saturation``)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return finite(result.get(SATURATED_AT))

    def stop_all(self) -> bool:
        return False
