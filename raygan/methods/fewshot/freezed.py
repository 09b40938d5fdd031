"""FreezeD (Mo et al., 2020): TGAN with the first k discriminator blocks frozen.

The blocks nearest the image (highest resolution: D's ``convs[0]`` is the
from-RGB layer, then one residual block per resolution) keep their source
weights; the rest of D and all of G_t are fine-tuned with the adversarial loss.
"""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.errors import UserError
from raygan.methods.fewshot.adapter import FewShotAdapter


@dataclass
class Config:
    frozen_blocks: int = knob(2, lo=0, help="k: D blocks frozen, counted from the image (from-RGB = 1)")


def check(cfg: Config, source, where: str) -> None:
    """k must leave at least one D block to train."""
    n = len(source.discriminator().convs)
    if cfg.frozen_blocks >= n:
        raise UserError(where, f"method.frozen_blocks: expected < {n} (the source D has {n} blocks), "
                               f"got {cfg.frozen_blocks}")


class Method(FewShotAdapter):
    check = staticmethod(check)

    def d_params(self) -> list:
        frozen = {id(p) for block in self.d.convs[: self.cfg.frozen_blocks] for p in block.parameters()}
        return [p for p in super().d_params() if id(p) not in frozen]
