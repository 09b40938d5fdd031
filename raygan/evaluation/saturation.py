"""Realism saturation, from the DCL paper's analysis: adapted generators reach similar
realism and then lose diversity at different rates, so diversity is compared where
realism has stopped improving.

Realism has saturated at an evaluation once it is at least ``floor`` and the last
``window`` evaluations improved on the best realism before them by at most ``tolerance``.
``diversity_at_saturation`` is the diversity at the first such evaluation, and NaN before
it (a trial that never saturates within its budget has no value: its diversity is the
unadapted source's, not a result). The floor keeps a generator that never adapts (flat
realism near 0) from counting as saturated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

DIVERSITY_AT_SATURATION = "diversity_at_saturation"
SATURATED_AT = "saturated_at_step"  # NaN until realism saturates (what the plateau stopper reads)


def saturation_index(realism: list[float], window: int, tolerance: float, floor: float) -> int | None:
    """The first evaluation i at which realism has saturated, or None."""
    for i in range(window, len(realism)):
        before, recent = max(realism[: i - window + 1]), max(realism[i - window + 1: i + 1])
        if realism[i] >= floor and recent - before <= tolerance:
            return i
    return None


@dataclass
class Saturation:
    """The rule applied to one trial's stream of evaluations (``eval.saturation_*``)."""
    window: int = 3
    tolerance: float = 0.01
    floor: float = 0.8
    realism: list[float] = field(default_factory=list)
    found: dict | None = None  # {step, diversity} at saturation

    def update(self, step: int, realism: float, diversity: float) -> dict:
        """Add one evaluation; the two keys every report carries."""
        self.realism.append(realism)
        if self.found is None and saturation_index(self.realism, self.window, self.tolerance,
                                                   self.floor) == len(self.realism) - 1:
            self.found = {"step": step, "diversity": diversity}
        if self.found is None:
            return {DIVERSITY_AT_SATURATION: math.nan, SATURATED_AT: math.nan}
        return {DIVERSITY_AT_SATURATION: self.found["diversity"], SATURATED_AT: self.found["step"]}
