"""A semi-paired dataset on disk: ``raygan data pack`` writes it, training reads it.

``DST/paired``, ``DST/unpaired_images`` and ``DST/unpaired_labels`` are parquet
shard folders (:mod:`raygan.data.pack`) of one split by the supervision ratio r
(:func:`raygan.data.splits.semi_paired_split`): the paired set is small and is
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
_SPLIT_KEYS = ("layout", "size", "n_classes", "counts")


def _scene_records(indices, seed: int, size: int):
    from raygan.data.scenes import _check_size, _render_one

    _check_size(size)
    for i in indices:  # scene i depends only on (seed, i): render exactly the ones needed
        image, label = _render_one(np.random.default_rng([seed, int(i)]), size)
        yield (image * 255).round().clip(0, 255).astype(np.uint8), label.astype(np.uint8)


def _layout_records(layout, indices):
    for i in indices:
        yield layout[int(i)]


def _check_pack_args(layout: str, ratio: float, size: int, n_train: int) -> None:
    """The numeric options of ``raygan data pack``, checked before anything is read or written."""
    if not 0.0 < ratio <= 1.0:  # also rejects NaN
        raise UserError("--ratio", f"expected a supervision ratio r = |P| / (|P| + |X_u|) in (0, 1], got {ratio:g}")
    if layout == "scenes" and (size < 32 or size % 16):
        raise UserError("--size", f"expected a multiple of 16 that is >= 32 for scenes, got {size}")
    if size < 1:
        raise UserError("--size", f"expected a positive side length, got {size}")
    if layout == "scenes" and n_train < 1:
        raise UserError("--n", f"expected at least 1 scene, got {n_train}")


def pack(src: str, dst, layout: str = "scenes", ratio: float = 0.05, seed: int = 0, size: int = 32,
         n_train: int = 2000, split: str = "train") -> dict:
    """Write the three parts of a semi-paired split of ``src`` (``scenes`` or a
    dataset folder in ``layout``) into ``dst``; returns split.json's content."""
    from raygan.data.pack import write_shards
    from raygan.data.scenes import N_CLASSES
    from raygan.data.splits import semi_paired_split

    dst = Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise UserError(dst, "already exists and is not empty; refusing to overwrite it")
    _check_pack_args(layout, ratio, size, n_train)
    if layout == "scenes":
        n, n_classes = n_train, N_CLASSES
        records = lambda idx: _scene_records(idx, seed, size)  # noqa: E731
    else:
        from raygan.data.layouts import open_layout

        data = open_layout(layout, src, split, size)
        n, n_classes = len(data), data.n_classes
        records = lambda idx: _layout_records(data, idx)  # noqa: E731
    parts = semi_paired_split(n, ratio, seed)
    sizes = {p: len(getattr(parts, p)) for p in PARTS}
    if ratio < 1 and not all(sizes.values()):  # r = 1 (all paired, e.g. a held-out split) has no unpaired parts
        raise UserError(src, f"{n} {'scenes' if layout == 'scenes' else 'images'} at --ratio {ratio:g} split into "
                             f"{sizes}: each part needs at least one (more images, or --ratio 1 for pairs only)")
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
    """``split.json`` of a packed folder, after checking that its three parts are
    complete, so that a damaged folder fails here and not inside a Ray worker."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(root, "no such folder (expected one written by raygan data pack)")
    path = root / SPLIT_FILE
    if not path.is_file():
        raise UserError(root, f"not a packed semi-paired dataset (no {SPLIT_FILE}; write it with raygan data pack)")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(path, f"malformed ({type(e).__name__}); pack the dataset again") from None
    if not isinstance(info, dict) or any(k not in info for k in _SPLIT_KEYS):
        raise UserError(path, f"malformed: expected a JSON object with {', '.join(_SPLIT_KEYS)}; pack the dataset again")
    for part in PARTS:
        if not isinstance(info["counts"], dict) or info["counts"].get(part, 1):  # r = 1: no unpaired parts
            _check_part(root / part)
    return info


def _check_part(folder: Path) -> None:
    """meta.json present, every shard's parquet footer readable, and the rows meta.json counts all there."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raygan.data.pack import SHARD_GLOB, read_meta

    meta = read_meta(folder)
    rows = 0
    for shard in sorted(folder.glob(SHARD_GLOB)):
        try:
            rows += pq.read_metadata(shard).num_rows
        except (OSError, ValueError, pa.ArrowException) as e:
            raise UserError(shard, f"corrupt or truncated parquet shard ({type(e).__name__}); "
                                   "pack the dataset again") from None
    if rows != meta["count"]:
        raise UserError(folder, f"its shards hold {rows} rows but meta.json counts {meta['count']!r} "
                                "(a shard is missing); pack the dataset again")


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
