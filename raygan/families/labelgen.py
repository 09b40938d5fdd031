"""The label-to-image family's wiring: the paired and unpaired data a method trains on (embedded
scenes, or a packed dataset streamed through Ray Data), its evaluation (mIoU), and the checks and
caches built once in the driver. The methods themselves are raygan/methods/labelgen/."""
from __future__ import annotations

from typing import Callable

import torch

from raygan.errors import UserError
from raygan.methods.labelgen.harness import LabelToImage
from raygan.methods.labelgen.sections import SECTIONS, DataConfig
from raygan.registry import Family
from raygan.sync import no_sync

# -- data -------------------------------------------------------------------------------------

class SceneData:
    """P, X_u and T_u of the embedded scenes, in memory (they are small at 32 px)."""

    def __init__(self, data: DataConfig):
        from raygan.data.scenes import N_CLASSES, render_scenes
        from raygan.data.splits import semi_paired_split

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
            self.unpaired_images = self.unpaired_labels = None  # streamed, never held whole
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



def build(t: dict, device="cpu", grad_sync: Callable = no_sync, seed: int = 0, dataset_shard=None) -> LabelToImage:
    from raygan.registry import method_module

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
        from raygan.evaluation.label_scoring import SceneEvaluator, packed_evaluator

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


def prepare(t: dict, methods: list[str], where: str, progress=print, objectives=()) -> dict[str, str]:
    """In the driver, once: check the VGG weights and the user's segmenter and held-out
    split, or train/load the cached scene segmenter. Pins no knobs (returns {})."""
    from raygan.data.semipaired import read_split
    from raygan.models.vgg import load_vgg_perceptual
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
        from raygan.evaluation.label_scoring import load_segmenter

        held = read_split(d.eval_root)
        want = (info["n_classes"] if d.dataset == "packed" else N_CLASSES, size)
        if (held["n_classes"], held["size"]) != want:
            raise UserError(d.eval_root, f"held-out split has {held['n_classes']} classes at {held['size']} px; "
                                         f"the training data has {want[0]} at {want[1]} px")
        load_segmenter(d.segmenter, held["n_classes"], size)  # a bad file is a one-line error here
        return {}
    scene_reference_stats(load_segnet(size), size)
    return {}


FAMILY = Family(name="labelgen", build=build, evaluation=Evaluation, prepare=prepare,
                default_objective=default_objective, sections=SECTIONS, streams=streams,
                ray_datasets=ray_datasets, grid_shared_rows=("labels", "real"))
