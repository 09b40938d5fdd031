"""The few-shot family's data/model/train sections: the target shots, the source model, the
adaptation budget and what each evaluation reports."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.errors import UserError
from raygan.models.accel import DeviceKnobs


@dataclass
class DataConfig:
    target: str = knob("sketches", path=True,
                       help="'sketches' (the embedded target) or a folder of target images (png/jpg/webp/bmp)")
    shots: int = knob(10, lo=1, hi=1000, help="number of target training images (chosen by seed from a folder)")
    seed: int = knob(0, lo=0, help="which shots: procedural draw, or which images of the folder")
    reference: str = knob("", path=True, help="folder of held-out target images behind fid/kid (the papers: the "
                                              "full target set); empty: the embedded sketches' held-out set")

    @property
    def embedded(self) -> bool:
        return self.target == "sketches"

    def validate(self, where, section):
        if not self.target:
            raise UserError(where, f"{section}.target: expected 'sketches' or a folder of images, got ''")
        if self.reference and self.embedded:
            raise UserError(where, f"{section}.reference: the embedded sketches have their own held-out set; "
                                   "a reference folder goes with a folder target")


@dataclass
class ModelConfig:
    checkpoint: str = knob("embedded", path=True, help="'embedded' or a rosinality-layout StyleGAN2 .pt")


# The public few-shot code's EMA: half-life of 10k images at batch 32 (rosinality's accum).
EMA_DECAY = 0.5 ** (32 / (10 * 1000))


@dataclass
class TrainConfig(DeviceKnobs):
    steps: int = knob(300, lo=1, hi=10_000_000)
    batch_size: int = knob(4, lo=2, hi=4096)
    lr: float = knob(0.002, lo=0.0, lo_open=True, hi=1.0)
    beta1: float = knob(0.0, lo=0.0, hi=0.999)
    beta2: float = knob(0.99, lo=0.0, hi=0.9999)
    r1: float = knob(10.0, lo=0.0, help="R1 penalty weight γ (lazy; the public few-shot code's 10)")
    r1_every: int = knob(16, lo=1)
    pl_weight: float = knob(2.0, lo=0.0, help="path-length regulariser weight (lazy)")
    pl_every: int = knob(4, lo=1)
    mixing: float = knob(0.9, lo=0.0, hi=1.0, help="style-mixing probability of adversarial codes")
    flip: bool = knob(True, help="flip each shot left-right with probability 1/2")
    ema_decay: float = knob(EMA_DECAY, lo=0.0, hi=0.99999,
                            help="EMA of G_t, evaluated and saved as g_ema; 0: none (g_ema = G_t)")
    train_noise_strengths: bool = knob(False, help="also train G's per-layer noise strengths (*.noise.weight)")
    eval_every: int = knob(100, lo=1, help="steps between evaluations/checkpoints (and one before step 1)")
    eval_samples: int = knob(500, lo=20, hi=100_000, help="samples behind every metric of an evaluation")
    metrics: list[str] = knob([], help="what each evaluation reports: metrics of raygan/evaluation/fewshot.py's "
                                       "registry, or diversity (the backbone train.diversity names); "
                                       "empty: the target's default set")
    scs_edges: str = knob("sobel", choices=["sobel", "canny", "hed"],
                          help="edge detector behind SCS (RSSA Eq. 9-10); hed needs the HED weights")
    lpips_net: str = knob("vgg", choices=["vgg", "alex"], help="intra_lpips backbone (the public code: vgg)")
    diversity: str = knob("auto", choices=["auto", "lpips", "shapesnet"],
                          help="what the `diversity` metric is: intra_lpips or intra_shapesnet (embedded "
                               "sketches only); auto: lpips where its weights are found, else shapesnet")
    saturation_window: int = knob(3, lo=1, help="evaluations without realism gain before it counts as saturated")
    saturation_tolerance: float = knob(0.01, lo=0.0, help="realism gain that still counts as none")
    saturation_realism: float = knob(0.8, lo=0.0, hi=1.0, help="realism below this never counts as saturated")
    inception_weights: str = knob("", path=True, help="FID Inception weights; empty: $RAYGAN_INCEPTION_WEIGHTS, "
                                                      "$RAYGAN_WEIGHTS or the torch hub cache")
    lpips_weights: str = knob("", path=True, help="torchvision VGG16/AlexNet weights behind intra_lpips; empty: "
                                                  "looked up as inception_weights")
    hed_weights: str = knob("", path=True, help="HED weights (sniklaus/pytorch-hed); empty: looked up likewise")
    seed: int = knob(0, lo=0)
    torch_threads: int = knob(0, lo=0, help="0: one per CPU the worker was given")
    modconv: str = knob("auto", choices=["auto", "fused", "unfused"],
                        help="StyleGAN2's modulated conv: per-sample weights as one grouped conv (fused) or "
                             "activations scaled around one shared weight (unfused); auto: unfused on CUDA, "
                             "fused on CPU (models/accel.py MODCONV_AUTO says why)")

    def validate(self, where, section):
        # The names are checked against the metric registry by the family (families/fewshot.py).
        if len(set(self.metrics)) < len(self.metrics):
            raise UserError(where, f"{section}.metrics: expected each metric once, got {self.metrics}")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
