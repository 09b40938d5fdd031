"""Parquet shards of decoded, resized arrays, so that streaming needs no per-step decode.

A shard folder holds ``part-00000.parquet``, ``part-00001.parquet``, ... and
``meta.json``. Each row is one record:

* ``image``  binary, the raw bytes of a uint8 H x W x 3 array (C order), when images are stored;
* ``label``  binary, the raw bytes of a uint8 H x W label map, when labels are stored;
* ``height``, ``width`` (int32) and ``index`` (int64, the record's position in the input).

All records of a folder share one H x W, so a batch decodes with a single
``np.frombuffer`` over the joined bytes (see :func:`decode_batch`).

A folder is written atomically: into a temporary sibling that is renamed to
``dst`` at the end, and never over an existing non-empty ``dst``.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np

from raygan.errors import UserError

META_FILE = "meta.json"
SHARD_GLOB = "part-*.parquet"
COLUMNS = ("image", "label")
MAX_SHARD_BYTES = 1 << 30  # pyarrow binary columns use 32-bit offsets: stay well below 2 GiB
_REQUIRED_META = ("columns", "count", "size", "n_classes", "kind")


def _shard_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def _nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def _check(arr, kind: str, i: int, dst: Path) -> np.ndarray:
    arr = np.asarray(arr)
    want = 3 if kind == "image" else 2
    if arr.dtype != np.uint8 or arr.ndim != want or (kind == "image" and arr.shape[2] != 3):
        shape = "H x W x 3" if kind == "image" else "H x W"
        raise UserError(dst, f"record {i}: {kind} must be a uint8 {shape} array, "
                             f"got {arr.dtype} {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


def write_shards(records: Iterable[tuple[np.ndarray | None, np.ndarray | None]], dst: Path,
                 rows_per_shard: int = 512, meta: dict | None = None) -> int:
    """Write ``records`` ((image or None, label or None) pairs) as parquet shards into ``dst``.

    The first record decides which columns are stored (a None stays None for
    every record); every record must have the same H x W. ``meta`` (typically
    ``n_classes``, ``size``, ``kind``) is stored in ``meta.json`` with ``count``,
    ``columns``, ``shards``, ``height``, ``width`` and the raygan version added.
    Returns the number of records written.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    import raygan

    dst = Path(dst)
    if rows_per_shard < 1:
        raise ValueError(f"rows_per_shard must be >= 1, got {rows_per_shard}")
    if _nonempty(dst):
        raise UserError(dst, "already exists and is not empty; refusing to overwrite it "
                             "(remove it or choose another folder)")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.parent / f".{dst.name}.tmp-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
    except OSError as e:
        raise UserError(dst, f"cannot create the shard folder ({e.strerror})") from None

    columns: tuple[str, ...] | None = None
    hw: tuple[int, int] | None = None
    count = shards = 0
    pending: dict[str, list] = {}
    pending_bytes = 0

    def flush() -> None:
        nonlocal shards, pending_bytes
        n = len(pending["index"])
        if n == 0:
            return
        arrays = {c: pa.array(pending[c], type=pa.binary()) for c in columns}
        arrays["height"] = pa.array(np.full(n, hw[0], np.int32))
        arrays["width"] = pa.array(np.full(n, hw[1], np.int32))
        arrays["index"] = pa.array(np.asarray(pending["index"], np.int64))
        pq.write_table(pa.table(arrays), tmp / _shard_name(shards), row_group_size=n)
        shards += 1
        for v in pending.values():
            v.clear()
        pending_bytes = 0

    try:
        for i, record in enumerate(records):
            try:
                image, label = record
            except (TypeError, ValueError):
                raise UserError(dst, f"record {i}: expected an (image, label) pair") from None
            if columns is None:
                columns = tuple(c for c, v in zip(COLUMNS, (image, label)) if v is not None)
                if not columns:
                    raise UserError(dst, "record 0 has neither an image nor a label")
                pending = {c: [] for c in (*columns, "index")}
            present = tuple(c for c, v in zip(COLUMNS, (image, label)) if v is not None)
            if present != columns:
                raise UserError(dst, f"record {i} has columns {list(present)}, "
                                     f"but earlier records have {list(columns)}")
            for c, v in zip(COLUMNS, (image, label)):
                if v is None:
                    continue
                v = _check(v, c, i, dst)
                if hw is None:
                    hw = v.shape[:2]
                elif v.shape[:2] != hw:
                    raise UserError(dst, f"record {i}: {c} is {v.shape[0]}x{v.shape[1]}, "
                                         f"but earlier records are {hw[0]}x{hw[1]} (resize first)")
                b = v.tobytes()
                pending[c].append(b)
                pending_bytes += len(b)
            pending["index"].append(i)
            count += 1
            if len(pending["index"]) >= rows_per_shard or pending_bytes >= MAX_SHARD_BYTES:
                flush()
        if count == 0:
            raise UserError(dst, "no records to write")
        flush()

        info = dict(meta or {})
        info.setdefault("size", int(hw[0]) if hw[0] == hw[1] else [int(hw[0]), int(hw[1])])
        info.setdefault("n_classes", None)
        info.setdefault("kind", None)
        info.update(count=count, columns=list(columns), shards=shards, height=int(hw[0]),
                    width=int(hw[1]), raygan_version=raygan.__version__)
        with open(tmp / META_FILE, "w") as f:
            json.dump(info, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())

        # rename(2) replaces an empty directory but fails on a non-empty one, so a
        # folder that appeared meanwhile (another writer) is never clobbered.
        try:
            os.rename(tmp, dst)
        except OSError as e:
            if e.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
                raise UserError(dst, "already exists and is not empty; refusing to overwrite it "
                                     "(remove it or choose another folder)") from None
            raise UserError(dst, f"cannot move the finished shards into place ({e.strerror})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return count


def read_meta(dst) -> dict:
    """The ``meta.json`` of a shard folder, with one-line UserErrors for anything missing."""
    dst = Path(dst)
    if not dst.is_dir():
        raise UserError(dst, "no such shard folder (write it with raygan.data.pack.write_shards)")
    path = dst / META_FILE
    if not path.is_file():
        raise UserError(path, "missing: not a raygan shard folder, or its writing did not finish")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        detail = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise UserError(path, f"malformed ({detail}); rewrite the shard folder") from None
    if not isinstance(meta, dict):
        raise UserError(path, "malformed: expected a JSON object")
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise UserError(path, f"malformed: missing {', '.join(missing)}")
    if not meta["columns"] or not set(meta["columns"]) <= set(COLUMNS):
        raise UserError(path, f"malformed: columns must be a non-empty subset of {list(COLUMNS)}")
    if not any(dst.glob(SHARD_GLOB)):
        raise UserError(dst, f"no {SHARD_GLOB} shards next to {META_FILE}")
    return meta


def _binary_values(col) -> bytes | memoryview:
    """The concatenated bytes of a binary column: the value buffer of a pyarrow
    array (no copy), or the values of a numpy object array joined."""
    import pyarrow as pa

    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if isinstance(col, pa.Array):
        if col.null_count or not (pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type)):
            return b"".join(col.to_pylist())
        width = 8 if pa.types.is_large_binary(col.type) else 4
        offsets = np.frombuffer(col.buffers()[1], np.int32 if width == 4 else np.int64,
                                count=len(col) + 1, offset=col.offset * width)
        return memoryview(col.buffers()[2])[int(offsets[0]):int(offsets[-1])]
    return b"".join(col)


def decode_batch(batch: dict) -> dict:
    """Turn the binary ``image`` / ``label`` columns of a batch into uint8 arrays.

    ``image`` becomes [B, H, W, 3], ``label`` [B, H, W] (read-only views of one
    joined buffer); the other columns pass through unchanged.
    """
    out = dict(batch)
    present = [c for c in COLUMNS if c in batch]
    if not present:
        return out
    h, w = np.asarray(batch["height"]), np.asarray(batch["width"])
    n = len(h)
    if n == 0:
        for c in present:
            out[c] = np.zeros((0, 0, 0, 3) if c == "image" else (0, 0, 0), np.uint8)
        return out
    if (h != h[0]).any() or (w != w[0]).any():
        raise ValueError("decode_batch: rows of different sizes in one batch")
    H, W = int(h[0]), int(w[0])
    for c in present:
        shape = (n, H, W, 3) if c == "image" else (n, H, W)
        buf = _binary_values(batch[c])
        if len(buf) != int(np.prod(shape)):
            raise ValueError(f"decode_batch: column {c} holds {len(buf)} bytes, expected {shape}")
        out[c] = np.frombuffer(buf, np.uint8).reshape(shape)
    return out
