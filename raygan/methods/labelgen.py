"""The label-to-image harness: the semi-paired method and its baselines (OASIS,
USIS, TCR) share the data, the networks and the step skeleton.

Data: a small paired set P = {(x_k, t_k)} (sampled with the rare-class
sampler), unpaired images X_u and unpaired label maps T_u (not aligned),
split from the embedded procedural scenes by the supervision ratio r.
Networks (built when a method needs them): G a SPADE-family generator
(wavelet by default), D_c the OASIS U-Net with N+1 outputs, D_u an
unconditional discriminator (wavelet by default), S a separate segmenter.
One ``step`` updates the discriminators on ``d_terms`` and then G on
``g_terms``; each method file states its terms.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from raygan.config import knob
from raygan.errors import UserError
from raygan.methods.fewshot import no_sync

# -- config sections of this family (replace the few-shot data/model/train) -----------------


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
class TrainConfig:
    steps: int = knob(2000, lo=1, hi=10_000_000)
    batch_size: int = knob(8, lo=1, hi=4096, help="paired and unpaired batch size (paper: 8)")
    lr_g: float = knob(1e-4, lo=0.0, lo_open=True, hi=1.0, help="paper: 1e-4")
    lr_d: float = knob(1e-4, lo=0.0, lo_open=True, hi=1.0, help="paper: 1e-4")
    beta1: float = knob(0.0, lo=0.0, hi=0.999, help="Adam β as OASIS: (0, 0.999)")
    beta2: float = knob(0.999, lo=0.0, hi=0.9999)
    eval_every: int = knob(500, lo=1)
    eval_samples: int = knob(500, lo=20, hi=100_000, help="held-out label maps for mIoU / FD")
    vgg_weights: str = knob("", help="vgg19-dcbb9e9d.pth for the VGG loss ('' = the torch hub cache)")
    seed: int = knob(0, lo=0)
    torch_threads: int = knob(0, lo=0, help="0: one per CPU the worker was given")


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


# -- data -------------------------------------------------------------------------------------

class SceneData:
    """P, X_u and T_u of the embedded scenes, in memory (they are small at 32 px)."""

    def __init__(self, data: DataConfig):
        from raygan.data.scenes import N_CLASSES, render_scenes, semi_paired_split

        images, labels = render_scenes(data.seed, data.n_train, data.size)
        split = semi_paired_split(data.n_train, data.ratio, data.seed)
        self.n_classes, self.size = N_CLASSES, data.size
        self.paired_images = images[split.paired]
        self.paired_labels = labels[split.paired]
        self.unpaired_images = images[split.unpaired_images]
        self.unpaired_labels = labels[split.unpaired_labels]

    def unpaired_image_batch(self, b: int, rng: torch.Generator) -> torch.Tensor:
        return self.unpaired_images[torch.randint(len(self.unpaired_images), (b,), generator=rng)]

    def unpaired_label_batch(self, b: int, rng: torch.Generator) -> torch.Tensor:
        return self.unpaired_labels[torch.randint(len(self.unpaired_labels), (b,), generator=rng)]


class PackedData(SceneData):
    """A folder written by ``raygan data pack``: the paired part in memory, the
    unpaired parts streamed from this worker's Ray Data shards (or, without Ray,
    read whole: ``raygan train --local`` is for debugging)."""

    def __init__(self, data: DataConfig, batch: int, seed: int, dataset_shard=None):
        from pathlib import Path

        from raygan.data.semipaired import load_part, read_split

        root = Path(data.root)
        info = read_split(root)
        self.n_classes, self.size = info["n_classes"], info["size"]
        paired = load_part(root / "paired")
        self.paired_images, self.paired_labels = paired["image"], paired["label"]
        self.streams = None
        if dataset_shard is not None:
            from raygan.data.streams import UNPAIRED_IMAGES, UNPAIRED_LABELS, iterate_unpaired

            self.streams = {key: iterate_unpaired(dataset_shard(name), batch, data.shuffle_buffer, seed)
                            for key, name in (("image", UNPAIRED_IMAGES), ("label", UNPAIRED_LABELS))}
        else:
            self.unpaired_images = load_part(root / "unpaired_images")["image"]
            self.unpaired_labels = load_part(root / "unpaired_labels")["label"]

    streamed_rows = 0  # unpaired rows this worker took from Ray Data (reported with the metrics)

    def unpaired_image_batch(self, b, rng):
        if not self.streams:
            return super().unpaired_image_batch(b, rng)
        x = next(self.streams["image"])["image"]
        self.streamed_rows += len(x)
        return x

    def unpaired_label_batch(self, b, rng):
        if not self.streams:
            return super().unpaired_label_batch(b, rng)
        t = next(self.streams["label"])["label"]
        self.streamed_rows += len(t)
        return t


def one_hot(labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """int64 [B, H, W] -> float [B, N, H, W]."""
    return F.one_hot(labels, n_classes).permute(0, 3, 1, 2).float()


def vgg_loss(train: TrainConfig, device="cpu"):
    """The VGG19 perceptual loss, or None (and a line saying so) when its weights are absent."""
    from raygan.losses.segmentation import default_vgg19_file, load_vgg_perceptual

    vgg = load_vgg_perceptual(train.vgg_weights or None, device=device)
    if vgg is not None:
        return vgg.eval().requires_grad_(False)
    print(f"raygan: the VGG loss is off: {default_vgg19_file()} not found "
          "(put torchvision's vgg19 weights there or set train.vgg_weights)", flush=True)
    return None


# -- the harness --------------------------------------------------------------------------------

class LabelToImage(abc.ABC):
    """Builds what a method needs and runs one step (plain PyTorch).

    Class attributes say what a method uses: ``paired`` (P and D_c),
    ``unpaired_images`` (X_u and D_u), ``unpaired_labels`` (T_u), ``segmenter``
    (a separate S trained by the method).
    """
    paired = True
    unpaired_images = False
    unpaired_labels = False
    segmenter = False

    def __init__(self, cfg, t: dict, data: SceneData, device="cpu", grad_sync: Callable = no_sync,
                 seed: int = 0):
        from raygan.models.spade import SPADEGenerator
        from raygan.models.uncond_disc import UncondDiscriminator
        from raygan.models.unet_disc import UNetDiscriminator

        self.cfg, self.train, self.model = cfg, t["train"], t["model"]
        self.device, self.grad_sync = torch.device(device), grad_sync
        self.data, self.n = data, data.n_classes
        self.torch_rng = torch.Generator().manual_seed(seed)
        size, m = data.size, self.model
        self.g = SPADEGenerator(self.n, size, base=m.g_base, z_dim=m.z_dim,
                                wavelet=m.generator == "wavelet").to(device)
        self.d_c = UNetDiscriminator(self.n, size, base=m.d_base).to(device) if self.paired else None
        self.d_u = (UncondDiscriminator(size, base=m.d_base, wavelet=m.uncond_d == "wavelet").to(device)
                    if self.unpaired_images else None)
        self.s = UNetDiscriminator(self.n, size, base=m.d_base).to(device) if self.segmenter else None
        betas = (self.train.beta1, self.train.beta2)
        self.d_nets = [net for net in (self.d_c, self.d_u, self.s) if net is not None]
        self.g_optim = torch.optim.Adam(self.g.parameters(), lr=self.train.lr_g, betas=betas)
        self.d_optim = torch.optim.Adam([p for net in self.d_nets for p in net.parameters()],
                                        lr=self.train.lr_d, betas=betas)
        self.step_count = 0

    # -- batches ------------------------------------------------------------------------------
    def paired_indices(self, step: int, batch: int) -> torch.Tensor:
        return torch.randint(len(self.data.paired_labels), (batch,), generator=self.torch_rng)

    def batch(self, step: int) -> dict:
        b, data, dev = self.train.batch_size, self.data, self.device
        out = {}
        if self.paired:
            i = self.paired_indices(step, b)
            out["x_p"], out["t_p"] = data.paired_images[i].to(dev), one_hot(data.paired_labels[i], self.n).to(dev)
        if self.unpaired_images:
            out["x_u"] = data.unpaired_image_batch(b, self.torch_rng).to(dev)
        if self.unpaired_labels:
            out["t_u"] = one_hot(data.unpaired_label_batch(b, self.torch_rng), self.n).to(dev)
        return out

    def z(self, batch: int) -> torch.Tensor | None:
        if not self.model.z_dim:
            return None
        return torch.randn(batch, self.model.z_dim, generator=self.torch_rng).to(self.device)

    # -- what a method adds ------------------------------------------------------------------------
    @abc.abstractmethod
    def d_terms(self, batch: dict, fakes: dict) -> tuple[torch.Tensor, dict]:
        """The discriminators' loss on a batch and G's images for it, and its logged terms."""

    @abc.abstractmethod
    def g_terms(self, batch: dict) -> tuple[torch.Tensor, dict]:
        """G's loss on a batch, and its logged terms."""

    def fakes(self, batch: dict) -> dict:
        """G's images for the batch's label maps, for the D update (no gradient to G)."""
        with torch.no_grad():
            out = {}
            for key in ("t_p", "t_u"):
                if key in batch:
                    out[key] = self.g(batch[key], self.z(len(batch[key])))
            return out

    # -- one step --------------------------------------------------------------------------
    def step(self) -> dict:
        batch = self.batch(self.step_count)
        self.g.requires_grad_(False)
        for net in self.d_nets:
            net.requires_grad_(True)
        d_loss, d_logs = self.d_terms(batch, self.fakes(batch))
        self.d_optim.zero_grad(set_to_none=True)
        d_loss.backward()
        self.grad_sync([p for net in self.d_nets for p in net.parameters()])
        self.d_optim.step()
        self.d_optim.zero_grad(set_to_none=True)

        self.g.requires_grad_(True)
        for net in self.d_nets:
            net.requires_grad_(False)  # G's terms never train a discriminator (see semipaired's ablation B)
        self.g_optim.zero_grad(set_to_none=True)
        g_loss, g_logs = self.g_terms(batch)
        g_loss.backward()
        self.grad_sync(list(self.g.parameters()))
        self.g_optim.step()
        self.after_g_step()
        self.step_count += 1
        return {**d_logs, **g_logs, "loss/g_total": g_loss.item()}

    def after_g_step(self) -> None:
        """Hook for updates that follow G's (ablation B's D_c update)."""

    def generate(self, labels_onehot: torch.Tensor) -> torch.Tensor:
        """Images for label maps, in eval mode (BatchNorm running statistics). z comes from
        the global RNG, which evaluators seed, not from the training RNG: every evaluation
        sees the same z, and evaluating does not change what training draws next."""
        was = self.g.training
        self.g.eval()
        z = torch.randn(len(labels_onehot), self.model.z_dim).to(self.device) if self.model.z_dim else None
        with torch.no_grad():
            out = self.g(labels_onehot.to(self.device), z).cpu()
        self.g.train(was)
        return out

    # -- checkpoints -----------------------------------------------------------------------------
    def nets(self) -> dict:
        return {"g": self.g, "d_c": self.d_c, "d_u": self.d_u, "s": self.s}

    def state_dict(self) -> dict:
        state = {k: net.state_dict() for k, net in self.nets().items() if net is not None}
        state.update(g_optim=self.g_optim.state_dict(), d_optim=self.d_optim.state_dict(),
                     step=self.step_count, rng=self.torch_rng.get_state(), g_config=self.g.config)
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, net in self.nets().items():
            if net is not None:
                net.load_state_dict(state[k])
        self.g_optim.load_state_dict(state["g_optim"])
        self.d_optim.load_state_dict(state["d_optim"])
        self.step_count = state["step"]
        self.torch_rng.set_state(state["rng"])


# -- the family's entry points (raygan.loop calls these) -----------------------------------

def build(t: dict, device="cpu", grad_sync: Callable = no_sync, seed: int = 0, dataset_shard=None) -> LabelToImage:
    from raygan.search_space import method_module

    d = t["data"]
    data = (PackedData(d, t["train"].batch_size, seed, dataset_shard) if d.dataset == "packed"
            else SceneData(d))
    return method_module(t["method_name"]).Method(t["method"], t, data, device=device,
                                                  grad_sync=grad_sync, seed=seed)


def streams(cfg: dict) -> bool:
    """Whether trials of this plain config stream data through Ray Data."""
    return cfg["data"].get("dataset") == "packed"


def ray_datasets(t: dict) -> dict | None:
    """The Ray datasets a trial streams (the packed unpaired sets), for TorchTrainer."""
    if t["data"].dataset != "packed":
        return None
    from pathlib import Path

    from raygan.data.streams import unpaired_datasets

    root = Path(t["data"].root)
    return unpaired_datasets(root / "unpaired_images", root / "unpaired_labels", seed=t["train"].seed,
                             in_memory_mib=t["data"].in_memory_mib)


GRID_SHARED_ROWS = ("labels", "real")  # the rows of a trial's samples.png that every trial shares


def default_objective(cfg: dict) -> tuple[str, str]:
    """search.metric / mode when the experiment names none: the mIoU its evaluation reports."""
    from pathlib import Path

    segmenter = cfg["data"].get("segmenter")
    return (f"miou_{Path(segmenter).stem}" if segmenter else "miou_segnet"), "max"


class Evaluation:
    """Embedded scenes: mIoU of a segmenter trained on real scenes, Fréchet distance in its
    feature space. Given data.eval_root + data.segmenter: that segmenter's mIoU on those
    held-out pairs. Grid: label maps, real images, generated images."""
    grid_name = "labels_real_generated"
    provenance: dict = {}  # the family's metric names say their networks (miou_<segmenter>, fd_segnet)

    def __init__(self, t: dict, method: LabelToImage, device="cpu"):
        from raygan.metrics.label_eval import SceneEvaluator, packed_evaluator

        d, n, seed = t["data"], t["train"].eval_samples, t["train"].seed
        self.evaluator = (packed_evaluator(d.eval_root, d.segmenter, n, seed, device) if d.segmenter
                          else SceneEvaluator(n, method.data.size, seed=seed, device=device))

    def metrics(self, method: LabelToImage) -> dict:
        out = self.evaluator.metrics(method.generate)
        if isinstance(method.data, PackedData):
            out["data/streamed_rows"] = float(method.data.streamed_rows)
        return out

    def grid(self, method: LabelToImage) -> torch.Tensor:
        return self.evaluator.grid(method.generate)


make_evaluator = Evaluation


def prepare(t: dict, methods: list[str], where: str, progress=print, objectives=()) -> dict[str, str]:
    """In the driver, once: check the VGG weights and the user's segmenter and held-out
    split, or train/load the cached scene segmenter. Pins no knobs (returns {})."""
    from raygan.data.semipaired import read_split
    from raygan.losses.segmentation import load_vgg_perceptual
    from raygan.metrics.miou import load_segnet, scene_reference_stats

    if t["train"].vgg_weights:
        load_vgg_perceptual(t["train"].vgg_weights)  # a bad file is a one-line error here
    d, size = t["data"], t["data"].size
    if d.dataset == "packed":
        info = read_split(d.root)
        if not info["counts"]["unpaired_images"]:
            raise UserError(d.root, "has no unpaired part (packed with --ratio 1): it can be data.eval_root, "
                                    "not the training data")
        if info["layout"] != "scenes" and not d.segmenter:
            raise UserError(where, f"data.segmenter: a packed {info['layout']} dataset is scored with your own "
                                   "segmenter on held-out pairs (data.eval_root, data.segmenter)")
        size = info["size"]
    if d.segmenter:
        from raygan.data.scenes import N_CLASSES
        from raygan.metrics.label_eval import load_segmenter

        held = read_split(d.eval_root)
        want = (info["n_classes"] if d.dataset == "packed" else N_CLASSES, size)
        if (held["n_classes"], held["size"]) != want:
            raise UserError(d.eval_root, f"held-out split has {held['n_classes']} classes at {held['size']} px; "
                                         f"the training data has {want[0]} at {want[1]} px")
        load_segmenter(d.segmenter, held["n_classes"], size)  # a bad file is a one-line error here
        return {}
    scene_reference_stats(load_segnet(size), size)
    return {}
