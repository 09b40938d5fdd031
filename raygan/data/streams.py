"""Ray Data pipelines for the large unpaired sets of semi-paired label-to-image training.

Semi-paired training sees three sources:

* the small paired set P = {(image, label map)}: NOT a Ray dataset. It is
  small enough to be replicated to every worker (plain tensors in the train
  loop config, or loaded from a small file in each worker), and every worker
  samples from all of it;
* the large unpaired images X_u and unpaired label maps T_u: two SEPARATE,
  independently shuffled Ray datasets read lazily from parquet shards (see
  :mod:`raygan.data.pack`), or, when small, read once into the object store
  (:func:`held_in_memory`). They are passed as ``datasets=`` to TorchTrainer,
  which splits each across the workers (``ray.train.DataConfig``, by default
  ``datasets_to_split="all"``: a ``streaming_split(world_size, equal=True)``
  per dataset, so every worker sees a disjoint, equally long part of each
  epoch). In a worker, ``ray.train.get_dataset_shard(name)`` gives that part
  and :func:`iterate_unpaired` turns it into endless batches of tensors.

Driver side::

    datasets = unpaired_datasets(image_dir, label_dir, seed)
    TorchTrainer(loop, datasets=datasets, dataset_config=data_config(), ...)

Worker side::

    images = iterate_unpaired(ray.train.get_dataset_shard(UNPAIRED_IMAGES), batch, buffer, seed + rank)
    labels = iterate_unpaired(ray.train.get_dataset_shard(UNPAIRED_LABELS), batch, buffer, seed + rank)
    x_u, t_u = next(images)["image"], next(labels)["label"]

This is the only module below ``raygan/orchestrate`` that imports ray.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from raygan.data.pack import decode_batch, read_meta
from raygan.errors import UserError

UNPAIRED_IMAGES = "unpaired_images"
UNPAIRED_LABELS = "unpaired_labels"
_META_COLUMNS = ("height", "width", "index")
# Read tasks ask for a sliver of a CPU: Train workers of concurrent trials hold the
# whole CPUs, and a read task that waits for a free 1-CPU slot never runs (the
# trial then hangs on its first batch).
DATA_TASK_CPUS = 0.05


def _stream_seeds(seed: int, n: int, *extra: int) -> list[int]:
    """``n`` independent 31-bit seeds derived from ``seed`` (and ``extra``, e.g. an epoch)."""
    entropy = [int(x) & 0xFFFFFFFF for x in (seed, *extra)]
    return [int(s) for s in np.random.SeedSequence(entropy).generate_state(n) % (2**31 - 1)]


def _read(path: str, column: str, seed: int, meta: dict | None, filesystem=None):
    import ray.data

    if meta is not None and column not in meta["columns"]:
        raise UserError(path, f"holds columns {meta['columns']}, not '{column}' (packed from the wrong set?)")
    # Shuffling without a barrier. A full random_shuffle() is an all-to-all exchange
    # of every row, every epoch; randomize_block_order() is cheaper but is an
    # all-to-all barrier too (it collects ALL block refs, i.e. waits for every read
    # task, before it emits the first block), which stops streaming. Instead:
    # 1. the shard files are shuffled at read time (FileShuffleConfig: a fresh
    #    order each execution, i.e. each epoch, derived from `seed`), so the read
    #    units -- Ray Data packs up to ~128 MiB of row groups into one read task /
    #    block -- are random sets of shards arriving in a random order;
    # 2. the rows inside each block are permuted (a one-to-one map fused into the
    #    read task: no extra pass, no barrier);
    # 3. iterate_unpaired() mixes neighbouring blocks in a local shuffle buffer.
    shuffle = ray.data.FileShuffleConfig(seed=seed, reseed_after_execution=True)
    ds = ray.data.read_parquet(path, filesystem=filesystem, shuffle=shuffle, partitioning=None,
                               num_cpus=DATA_TASK_CPUS)
    ds = ds.select_columns([column, *_META_COLUMNS])
    return ds.map_batches(_permute_rows, batch_size=None, batch_format="pyarrow",
                          udf_modifying_row_count=False, num_cpus=DATA_TASK_CPUS)


def _permute_rows(table):
    """Rows of one block in random order. Unseeded on purpose: it must differ per
    epoch and a streamed epoch is not bit-reproducible anyway (task timing decides
    which worker gets which block)."""
    return table.take(np.random.default_rng().permutation(table.num_rows))


def unpaired_datasets(image_shards: str, label_shards: str, seed: int, *,
                      filesystem=None, in_memory_mib: float = 0.0) -> dict:
    """Two independently shuffled datasets over unpaired image / label-map shards.

    Returns ``{"unpaired_images": Dataset, "unpaired_labels": Dataset}`` (rows:
    ``image`` or ``label`` bytes plus ``height``, ``width``, ``index``), for
    ``TorchTrainer(datasets=...)``. Nothing is read until iteration starts,
    unless both shard folders together hold at most ``in_memory_mib`` MiB: they
    are then read once now (:func:`held_in_memory`).
    ``filesystem`` (a ``pyarrow.fs.FileSystem``) is for remote storage; the
    local meta.json checks are then skipped and the sets always stream.
    """
    image_shards, label_shards = str(image_shards), str(label_shards)
    mi = ml = None
    if filesystem is None:
        mi, ml = read_meta(image_shards), read_meta(label_shards)
        if mi.get("size") is not None and ml.get("size") is not None and mi["size"] != ml["size"]:
            raise UserError(label_shards, f"label maps are {ml['size']} but images ({image_shards}) "
                                          f"are {mi['size']}: pack both at one size")
    si, sl = _stream_seeds(seed, 2)  # independent streams: different file orders
    sets = {UNPAIRED_IMAGES: _read(image_shards, "image", si, mi, filesystem),
            UNPAIRED_LABELS: _read(label_shards, "label", sl, ml, filesystem)}
    if filesystem is None and _mib(image_shards) + _mib(label_shards) <= in_memory_mib:
        sets = {name: held_in_memory(ds) for name, ds in sets.items()}
    return sets


def _mib(folder: str) -> float:
    return sum(f.stat().st_size for f in Path(folder).glob("*.parquet")) / 2**20


def held_in_memory(ds):
    """A set read once into Ray's object store, reshuffled there every epoch: the blocks
    in a fresh random order, the rows inside each block permuted anew. Streaming from
    the shards re-plans and restarts the reads every epoch (~1 s on 2 cores), which a
    small set never earns back (benchmarks/RESULTS.md, P2). The barrier of
    randomize_block_order costs nothing here: every block is already in memory."""
    return ds.materialize().randomize_block_order().map_batches(
        _permute_rows, batch_size=None, batch_format="pyarrow", udf_modifying_row_count=False,
        num_cpus=DATA_TASK_CPUS)


def data_config():
    """The ``dataset_config`` for TorchTrainer: split both unpaired datasets across workers."""
    import ray.train

    return ray.train.DataConfig(datasets_to_split=[UNPAIRED_IMAGES, UNPAIRED_LABELS])


def to_tensors(batch: dict) -> dict:
    """A decoded numpy batch as torch tensors: ``image`` float [-1, 1] [B, 3, H, W],
    ``label`` int64 [B, H, W], ``index`` int64 [B]."""
    import torch

    batch = decode_batch(batch)
    out = {"index": torch.from_numpy(np.array(batch["index"], np.int64))}  # a writable copy
    if "image" in batch:
        x = batch["image"].transpose(0, 3, 1, 2).astype(np.float32)  # a new, writable array
        x *= 1 / 127.5
        x -= 1
        out["image"] = torch.from_numpy(x)
    if "label" in batch:
        out["label"] = torch.from_numpy(batch["label"].astype(np.int64))
    return out


def iterate_unpaired(shard, batch_size: int, shuffle_buffer: int, seed: int,
                     epochs: int | None = None) -> Iterator[dict]:
    """Batches of tensors from a dataset shard (``ray.train.get_dataset_shard(...)``, or
    any ``Dataset`` / ``DataIterator``), epoch after epoch, endlessly unless ``epochs``.

    Each epoch is a fresh streaming execution of the shard (new file order),
    mixed through a local shuffle buffer of at least ``shuffle_buffer`` rows
    (0: none) whose seed changes with the epoch; the last incomplete batch is
    dropped. Yields dicts of ``image`` float [-1, 1] [B, 3, H, W] and/or
    ``label`` int64 [B, H, W], with ``index`` int64 [B], on the CPU (move them
    with ``.to(device, non_blocking=True)``).

    With a ``streaming_split`` shard (what Train hands out) every epoch starts
    with a barrier across the workers: all workers must draw the same number of
    batches (they do with equal batch sizes: Train splits with ``equal=True``).
    ``iter_batches`` + :func:`to_tensors` rather than ``iter_torch_batches``: the
    binary columns need the one-buffer decode of :func:`raygan.data.pack.decode_batch`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    epoch = 0
    while epochs is None or epoch < epochs:
        local_seed = _stream_seeds(seed, 1, epoch)[0]
        n = 0
        for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy", drop_last=True,
                                        local_shuffle_buffer_size=shuffle_buffer or None,
                                        local_shuffle_seed=local_seed if shuffle_buffer else None):
            n += 1
            yield to_tensors(batch)
        if n == 0:
            raise UserError("unpaired data", f"a worker's shard holds fewer than batch_size={batch_size} "
                                             "rows: use more data, fewer workers or a smaller batch")
        epoch += 1
