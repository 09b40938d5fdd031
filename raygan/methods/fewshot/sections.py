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
    shots: int = knob(10, lo=0, hi=1000, help="number of target training images (chosen by seed from a folder); "
                                            "0: every image of the folder (pretraining: `raygan pretrain`)")
    seed: int = knob(0, lo=0, help="which shots: procedural draw, or which images of the folder")
    reference: str = knob("", path=True, help="folder of held-out target images behind fid/kid (the papers: the "
                                              "full target set); empty: the embedded sketches' held-out set")
    source_images: str = knob("", path=True, help="folder of non-target real images (e.g. the source domain's) that "
                                                  "the realism classifier C of a folder target is trained against; "
                                                  "empty: samples of the source generator G_s")

    @property
    def embedded(self) -> bool:
        return self.target == "sketches"

    def validate(self, where, section):
        if not self.target:
            raise UserError(where, f"{section}.target: expected 'sketches' or a folder of images, got ''")
        if self.shots == 0 and self.embedded:
            raise UserError(where, f"{section}.shots: 0 (every image) needs a folder target; the embedded sketches "
                                   "draw at least 1")
        if self.reference and self.embedded:
            raise UserError(where, f"{section}.reference: the embedded sketches have their own held-out set; "
                                   "a reference folder goes with a folder target")
        if self.source_images and self.embedded:
            raise UserError(where, f"{section}.source_images: the embedded sketches' realism classifier is raygan's "
                                   "ShapesNet; source images go with a folder target")


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
    # What an evaluation computes is the eval section's (raygan/evaluation/section.py); how often
    # and on how many samples stays here, as in the label-to-image family (the loop reads both).
    seed: int = knob(0, lo=0)
    torch_threads: int = knob(0, lo=0, help="0: one per CPU the worker was given")
    modconv: str = knob("auto", choices=["auto", "fused", "unfused"],
                        help="StyleGAN2's modulated conv: per-sample weights as one grouped conv (fused) or "
                             "activations scaled around one shared weight (unfused); auto: unfused on CUDA, "
                             "fused on CPU (models/accel.py MODCONV_AUTO says why)")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
