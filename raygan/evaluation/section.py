"""The few-shot family's ``eval`` section: what every evaluation of a trial reports and the
weights files behind it. How often it evaluates and on how many samples are ``train.eval_every``
and ``train.eval_samples`` (the loop's cadence, shared by both families)."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.errors import UserError
from raygan.evaluation.fewshot import METRICS

PORTABLE = ("diversity",)  # reported under this name, computed by the backbone eval.diversity names


@dataclass
class EvalConfig:
    metrics: list[str] = knob([], help="what each evaluation reports: metrics of raygan/evaluation/fewshot.py's "
                                       "registry, or diversity (the backbone eval.diversity names); "
                                       "empty: the target's default set")
    scs_edges: str = knob("sobel", choices=["sobel", "canny", "hed"],
                          help="edge detector behind SCS (RSSA Eq. 9-10); hed needs the HED weights")
    lpips_net: str = knob("vgg", choices=["vgg", "alex"], help="intra_lpips backbone (the public code: vgg)")
    diversity: str = knob("auto", choices=["auto", "lpips", "shapesnet", "domainnet"],
                          help="what the `diversity` metric is: intra_lpips, intra_shapesnet (embedded "
                               "sketches only) or intra_domainnet (folder targets: the realism classifier "
                               "C's features); auto: lpips where its weights are found, else the other")
    saturation_window: int = knob(3, lo=1, help="evaluations without realism gain before it counts as saturated")
    saturation_tolerance: float = knob(0.01, lo=0.0, help="realism gain that still counts as none")
    saturation_realism: float = knob(0.8, lo=0.0, hi=1.0, help="realism below this never counts as saturated")
    inception_weights: str = knob("", path=True, help="FID Inception weights; empty: $RAYGAN_INCEPTION_WEIGHTS, "
                                                      "$RAYGAN_WEIGHTS or the torch hub cache")
    lpips_weights: str = knob("", path=True, help="torchvision VGG16/AlexNet weights behind intra_lpips; empty: "
                                                  "looked up as inception_weights")
    hed_weights: str = knob("", path=True, help="HED weights (sniklaus/pytorch-hed); empty: looked up likewise")

    def validate(self, where, section):
        allowed = (*PORTABLE, *METRICS)
        bad = [m for m in self.metrics if m not in allowed]
        if bad:
            raise UserError(where, f"{section}.metrics: unknown metric {bad[0]!r} (expected some of "
                                   f"{', '.join(allowed)})")
        if len(set(self.metrics)) < len(self.metrics):
            raise UserError(where, f"{section}.metrics: expected each metric once, got {self.metrics}")
