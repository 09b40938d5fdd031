"""TGAN (Wang et al., 2018): fine-tune G and D from the source checkpoint with
the adversarial loss only — the baseline every few-shot method is compared to."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.methods.fewshot.adapter import FewShotAdapter


@dataclass
class Config:
    """TGAN has no knobs of its own (lr, batch, regularisers live in ``train``)."""


class Method(FewShotAdapter):
    """Plain fine-tuning: the harness's step with no extra terms."""
