"""A semi-paired dataset on disk: ``raygan data pack`` writes it, training reads it.

``DST/paired``, ``DST/unpaired_images`` and ``DST/unpaired_labels`` are parquet
shard folders (:mod:`raygan.data.pack`) of one split by the supervision ratio r
(:func:`raygan.data.scenes.semi_paired_split`): the paired set is small and is
loaded whole by every worker; the unpaired sets are streamed by Ray Data
(:mod:`raygan.data.streams`). ``DST/split.json`` records how it was made.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import torch

from raygan.errors import UserError

PARTS = ("paired", "unpaired_images", "unpaired_labels")
SPLIT_FILE = "split.json"


def _scene_records(indices, seed: int, size: int):
    from raygan.data.scenes import _check_size, _render_one

    _check_size(size)
    for i in indices:  # scene i depends only on (seed, i): render exactly the ones needed
        image, label = _render_one(np.random.default_rng([seed, int(i)]), size)
        yield (image * 255).round().clip(0, 255).astype(np.uint8), label.astype(np.uint8)


def _layout_records(layout, indices):
    for i in indices:
        yield layout[int(i)]


def pack(src: str, dst, layout: str = "scenes", ratio: float = 0.05, seed: int = 0, size: int = 32,
         n_train: int = 2000, split: str = "train") -> dict:
    """Write the three parts of a semi-paired split of ``src`` (``scenes`` or a
    dataset folder in ``layout``) into ``dst``; returns split.json's content."""
    from raygan.data.pack import write_shards
    from raygan.data.scenes import N_CLASSES, semi_paired_split

    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UserError(dst, "already exists and is not empty; refusing to overwrite it")
    if layout == "scenes":
        n, n_classes = n_train, N_CLASSES
        records = lambda idx: _scene_records(idx, seed, size)  # noqa: E731
    else:
        from raygan.data.layouts import open_layout

        data = open_layout(layout, src, split, size)
        n, n_classes = len(data), data.n_classes
        records = lambda idx: _layout_records(data, idx)  # noqa: E731
    parts = semi_paired_split(n, ratio, seed)
    tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        meta = {"n_classes": n_classes, "size": size, "kind": layout}
        for part, idx, keep in (("paired", parts.paired, (0, 1)), ("unpaired_images", parts.unpaired_images, (0,)),
                                ("unpaired_labels", parts.unpaired_labels, (1,))):
            if len(idx) == 0:
                continue  # r = 1: a held-out split for evaluation (data.eval_root) has pairs only
            rows = ((r[0] if 0 in keep else None, r[1] if 1 in keep else None) for r in records(idx))
            write_shards(rows, tmp / part, meta=meta)
        info = {"source": src, "layout": layout, "ratio": parts.ratio, "requested_ratio": ratio, "seed": seed,
                "size": size, "n_classes": n_classes,
                "counts": {p: len(getattr(parts, p)) for p in PARTS}}
        (tmp / SPLIT_FILE).write_text(json.dumps(info, indent=1))
        os.rename(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return info


def read_split(root) -> dict:
    root = Path(root)
    path = root / SPLIT_FILE
    if not path.is_file():
        raise UserError(root, f"not a packed semi-paired dataset (no {SPLIT_FILE}; write it with raygan data pack)")
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(path, f"malformed ({type(e).__name__}); pack the dataset again") from None


def load_part(folder) -> dict[str, torch.Tensor]:
    """A whole shard folder in memory: ``image`` float [-1, 1] [N, 3, H, W] and/or ``label`` int64 [N, H, W]."""
    import pyarrow.parquet as pq

    from raygan.data.pack import SHARD_GLOB, decode_batch, read_meta

    read_meta(folder)
    table = pq.ParquetDataset(sorted(Path(folder).glob(SHARD_GLOB))).read()
    batch = decode_batch({c: table.column(c) for c in table.column_names})
    out = {}
    if "image" in batch:
        out["image"] = torch.from_numpy(batch["image"].transpose(0, 3, 1, 2).astype(np.float32)) / 127.5 - 1
    if "label" in batch:
        out["label"] = torch.from_numpy(batch["label"].astype(np.int64))
    return out
