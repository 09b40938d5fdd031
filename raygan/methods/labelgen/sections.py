"""The label-to-image family's data/model/train sections (they replace the few-shot ones)."""
from __future__ import annotations

from dataclasses import dataclass

from raygan.config import knob
from raygan.errors import UserError
from raygan.losses.segmentation import CLASS_BALANCE
from raygan.models.accel import DeviceKnobs



@dataclass
class DataConfig:
    dataset: str = knob("scenes", choices=["scenes", "packed"],
                        help="embedded procedural scenes, or a folder written by `raygan data pack`")
    root: str = knob("", help="the packed folder (dataset: packed); its unpaired sets stream through Ray Data")
    ratio: float = knob(0.05, lo=0.0, lo_open=True, hi=1.0, help="scenes: supervision ratio r = |P| / (|P| + |X_u|)")
    n_train: int = knob(2000, lo=4, help="scenes: training scenes, split into P, X_u and T_u by r")
    size: int = knob(32, choices=[32, 64, 128, 256], help="scenes: resolution")
    seed: int = knob(0, lo=0, help="scenes: which scenes and which split")
    shuffle_buffer: int = knob(256, lo=0, help="packed: rows in each worker's local shuffle buffer")
    in_memory_mib: float = knob(1024.0, lo=0.0, help="packed: unpaired sets up to this size (both, MiB of shards) "
                                                      "are read once into Ray's object store; larger ones stream "
                                                      "from the shards every epoch (0: always stream)")
    eval_root: str = knob("", help="a packed held-out split to evaluate on (raygan data pack ... --split val --ratio 1)")
    segmenter: str = knob("", help="TorchScript segmenter scoring eval_root: the metric is miou_<file stem>")

    def validate(self, where, section):
        if self.dataset == "packed" and not self.root:
            raise UserError(where, f"{section}.root: dataset 'packed' needs the folder `raygan data pack` wrote")
        if bool(self.eval_root) != bool(self.segmenter):
            raise UserError(where, f"{section}.eval_root and {section}.segmenter go together: held-out pairs "
                                   "and the segmenter that scores them")


@dataclass
class ModelConfig:
    generator: str = knob("wavelet", choices=["wavelet", "spade"], help="wavelet SPADE (the paper) or plain SPADE")
    g_base: int = knob(32, lo=4, help="generator width")
    d_base: int = knob(32, lo=4, help="discriminators' width")
    z_dim: int = knob(64, lo=0, help="OASIS 3-D noise channels (0: none)")
    uncond_d: str = knob("wavelet", choices=["wavelet", "plain"], help="D_u: SWAGAN-style wavelet or plain")


@dataclass
class TrainConfig(DeviceKnobs):
    steps: int = knob(2000, lo=1, hi=10_000_000)
    batch_size: int = knob(8, lo=1, hi=4096, help="paired and unpaired batch size (paper: 8)")
    lr_g: float = knob(1e-4, lo=0.0, lo_open=True, hi=1.0, help="paper: 1e-4")
    lr_d: float = knob(4e-4, lo=0.0, lo_open=True, hi=1.0, help="OASIS: 4e-4 (the semi-paired paper: 1e-4)")
    beta1: float = knob(0.0, lo=0.0, hi=0.999, help="Adam β as OASIS: (0, 0.999)")
    beta2: float = knob(0.999, lo=0.0, hi=0.9999)
    ema_decay: float = knob(0.999, lo=0.0, hi=0.99999,
                            help="EMA of G, evaluated and saved as g_ema (OASIS: 0.9999, Cityscapes 0.999); 0: none")
    ema_warmup: bool = knob(True, help="decay min(ema_decay, (1+k)/(10+k)) at step k (TensorFlow's EMA warm-up), so "
                                       "that a short run's EMA is not its random start; false: OASIS's constant decay")
    class_balance: str = knob("oasis", choices=list(CLASS_BALANCE),
                              help="class weights of D_c's losses: OASIS's (normalised by the classes present), "
                                   "unnormalised (docs/METHODS.md's w_c), off")
    eval_every: int = knob(500, lo=1)
    eval_samples: int = knob(500, lo=20, hi=100_000, help="held-out label maps for mIoU / FD")
    vgg_weights: str = knob("", help="vgg19-dcbb9e9d.pth for the VGG loss ('' = the torch hub cache)")
    seed: int = knob(0, lo=0)
    torch_threads: int = knob(0, lo=0, help="0: one per CPU the worker was given")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
