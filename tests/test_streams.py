"""Parquet shards round-trip; unpaired streams really stream and shuffle. (How TorchTrainer splits
them across workers is checked on a real two-node run: tests/test_multinode.py.)"""
import json
import os
import sys
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from raygan.data.pack import decode_batch, read_meta, write_shards
from raygan.errors import UserError

N_UNPAIRED = 1200     # rows per unpaired set: many more than one shuffle buffer
ROWS_PER_SHARD = 100  # -> 12 shards
BUFFER, BATCH = 64, 16


def _records(n, size=8, seed=0, images=True, labels=True):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        yield (rng.integers(0, 256, (size, size, 3), dtype=np.uint8) if images else None,
               rng.integers(0, 7, (size, size), dtype=np.uint8) if labels else None)


# --- pack ------------------------------------------------------------------------------------


def test_pack_round_trip(tmp_path):
    records = list(_records(50, size=6, seed=1))
    dst = tmp_path / "paired"
    assert write_shards(iter(records), dst, rows_per_shard=16,
                        meta=dict(n_classes=7, size=6, kind="scenes")) == 50
    shards = sorted(dst.glob("part-*.parquet"))
    assert [p.name for p in shards] == [f"part-{i:05d}.parquet" for i in range(4)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    meta = json.loads((dst / "meta.json").read_text())
    assert meta == read_meta(dst)
    assert {k: meta[k] for k in ("n_classes", "size", "kind", "count", "columns", "shards")} == dict(
        n_classes=7, size=6, kind="scenes", count=50, columns=["image", "label"], shards=4)
    assert meta["raygan_version"]

    batches = [decode_batch({k: v.to_numpy(zero_copy_only=False) for k, v in
                             zip(t.column_names, t.columns)}) for t in map(pq.read_table, shards)]
    assert [len(b["index"]) for b in batches] == [16, 16, 16, 2]
    index = np.concatenate([b["index"] for b in batches])
    np.testing.assert_array_equal(index, np.arange(50))
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), np.stack([r[0] for r in records]))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in batches]), np.stack([r[1] for r in records]))
    # straight from pyarrow (zero-copy value buffer) decodes the same
    t = pq.read_table(shards[0])
    arrow = decode_batch({k: t[k] for k in t.column_names})
    np.testing.assert_array_equal(arrow["image"], batches[0]["image"])

    # labels only: just the label column
    lab = tmp_path / "labels"
    write_shards(_records(5, images=False), lab, meta=dict(n_classes=7, size=8, kind="scenes"))
    assert read_meta(lab)["columns"] == ["label"]
    assert pq.read_table(lab / "part-00000.parquet").column_names == ["label", "height", "width", "index"]


def test_pack_refuses_to_overwrite_and_bad_folders_are_one_line_errors(tmp_path):
    dst = tmp_path / "shards"
    write_shards(_records(10), dst, rows_per_shard=4, meta=dict(n_classes=7, size=8, kind="k"))
    before = {p.name: p.read_bytes() for p in dst.iterdir()}
    with pytest.raises(UserError, match="not empty") as e:
        write_shards(_records(3, seed=5), dst, meta=dict(n_classes=7, size=8, kind="k"))
    assert "\n" not in str(e.value) and e.value.where == str(dst)
    assert {p.name: p.read_bytes() for p in dst.iterdir()} == before  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shards"]   # no temporary folder left

    # an empty dst is fine; a failure half way leaves nothing behind
    (tmp_path / "empty").mkdir()
    assert write_shards(_records(3), tmp_path / "empty", meta=dict(n_classes=7, size=8, kind="k")) == 3

    def bad():
        yield from _records(5)
        yield np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8)
    with pytest.raises(UserError, match="record 5"):
        write_shards(bad(), tmp_path / "bad", rows_per_shard=2, meta={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "shards"]

    (dst / "meta.json").unlink()
    with pytest.raises(UserError, match="meta.json: missing") as e:
        read_meta(dst)
    assert "\n" not in str(e.value)
    (dst / "meta.json").write_text("{not json")
    with pytest.raises(UserError, match="malformed"):
        read_meta(dst)
    with pytest.raises(UserError, match="no such shard folder"):
        read_meta(tmp_path / "nowhere")
    for p in dst.glob("part-*.parquet"):
        p.unlink()
    (dst / "meta.json").write_bytes(before["meta.json"])
    with pytest.raises(UserError, match="no part"):
        read_meta(dst)


# --- streams (Ray) ---------------------------------------------------------------------------

ray = pytest.importorskip("ray")
BIN_BYTES = "RAY_DATA_PARQUET_BIN_PACKING_BYTES"


@pytest.fixture(scope="module")
def ray_session(local_ray):
    import ray.cloudpickle

    # Ray Data packs parquet row groups into ~128 MiB read units: the whole 1200-row
    # test set would be ONE block. Pack each 100-row shard alone (the env var is read
    # when a dataset is created) so that the test data streams like real data.
    old_bin = os.environ.get(BIN_BYTES)
    os.environ[BIN_BYTES] = "1"
    # Workers import nothing from tests/: ship this module's functions and classes by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    if old_bin is None:
        os.environ.pop(BIN_BYTES, None)
    else:
        os.environ[BIN_BYTES] = old_bin
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def unpaired_dirs(tmp_path_factory, ray_session):
    root = tmp_path_factory.mktemp("unpaired")
    meta = dict(n_classes=7, size=8, kind="test")
    write_shards(_records(N_UNPAIRED, seed=2, labels=False), root / "images", ROWS_PER_SHARD, meta)
    write_shards(_records(N_UNPAIRED, seed=3, images=False), root / "labels", ROWS_PER_SHARD, meta)
    return root / "images", root / "labels"


GATE = "raygan-test-streams-gate"


@ray.remote(num_cpus=0)
class Gate:
    """Lets the first `allow` shard files be read, holds every other read until released."""

    def __init__(self, allow):
        import asyncio

        self.allow, self.opened, self.released = allow, set(), asyncio.Event()

    async def enter(self, path):
        if path not in self.opened and len(self.opened) >= self.allow:
            await self.released.wait()
        self.opened.add(path)

    async def release(self):  # async: runs on the event loop that the waiters wait on
        self.released.set()

    async def opened_files(self):
        return sorted(self.opened)


def _gated_filesystem():
    """The local filesystem, except that files opened by Ray Data read tasks pass the Gate."""
    import pyarrow.fs as pafs

    class Handler(pafs.FileSystemHandler):
        def __init__(self):
            self.fs = pafs.LocalFileSystem()

        def __eq__(self, other):
            return isinstance(other, Handler)

        def __ne__(self, other):
            return not self == other

        def __reduce__(self):
            return Handler, ()

        def _gate(self, path):
            import ray

            name = ray.get_runtime_context().get_task_name() if ray.is_initialized() else None
            if name and "ReadFiles" in name:
                ray.get(ray.get_actor(GATE).enter.remote(path))

        def open_input_file(self, path):
            self._gate(path)
            return self.fs.open_input_file(path)

        def open_input_stream(self, path):
            self._gate(path)
            return self.fs.open_input_stream(path)

        def get_type_name(self):
            return "gated-local"

        def normalize_path(self, path):
            return self.fs.normalize_path(path)

        def get_file_info(self, paths):
            return self.fs.get_file_info(paths)

        def get_file_info_selector(self, selector):
            return self.fs.get_file_info(selector)

        def create_dir(self, path, recursive):
            self.fs.create_dir(path, recursive=recursive)

        def delete_dir(self, path):
            self.fs.delete_dir(path)

        def delete_dir_contents(self, path, missing_dir_ok=False):
            self.fs.delete_dir_contents(path, missing_dir_ok=missing_dir_ok)

        def delete_root_dir_contents(self):
            raise OSError("not supported")

        def delete_file(self, path):
            self.fs.delete_file(path)

        def move(self, src, dest):
            self.fs.move(src, dest)

        def copy_file(self, src, dest):
            self.fs.copy_file(src, dest)

        def open_output_stream(self, path, metadata):
            return self.fs.open_output_stream(path, metadata=metadata)

        def open_append_stream(self, path, metadata):
            return self.fs.open_append_stream(path, metadata=metadata)

    return pafs.PyFileSystem(Handler())


def test_unpaired_streams_stream_and_shuffle_independently(unpaired_dirs):
    from ray.data._internal.logical.operators import AbstractAllToAll
    from ray.data.dataset import MaterializedDataset

    from raygan.data.streams import UNPAIRED_IMAGES, UNPAIRED_LABELS, iterate_unpaired, unpaired_datasets

    images, labels = unpaired_dirs
    plain = unpaired_datasets(images, labels, seed=0)
    assert set(plain) == {UNPAIRED_IMAGES, UNPAIRED_LABELS}
    for ds in plain.values():  # lazy, and no barrier (shuffle / sort / randomize_block_order) in the plan
        assert not isinstance(ds, MaterializedDataset)
        ops, stack = [], [ds._logical_plan.dag]
        while stack:
            ops.append(stack.pop())
            stack.extend(ops[-1].input_dependencies)
        assert not [op for op in ops if isinstance(op, AbstractAllToAll)], ops

    # Streaming: at most 4 of the 12 image shards may be read until the first batch is
    # in hand (the 64-row shuffle buffer first fills from 2 blocks of 100 rows, and
    # the iterator may hold one finished block back). A barrier anywhere in the pipeline
    # (randomize_block_order, random_shuffle, materialize, ...) never gets there.
    gate = Gate.options(name=GATE).remote(allow=4)
    ray.get(gate.opened_files.remote())
    timed_out = []
    failsafe = threading.Timer(120, lambda: (timed_out.append(True), gate.release.remote()))
    failsafe.start()
    try:
        gated = unpaired_datasets(images, labels, seed=0, filesystem=_gated_filesystem())
        stream = iterate_unpaired(gated[UNPAIRED_IMAGES], BATCH, BUFFER, seed=0, epochs=1)
        first = next(stream)
        first_came_while_gated = not timed_out
        read_before_first_batch = ray.get(gate.opened_files.remote())
        ray.get(gate.release.remote())
        image_batches = [first, *stream]
        read_in_epoch = ray.get(gate.opened_files.remote())
    finally:
        failsafe.cancel()
        ray.kill(gate)
    assert first_came_while_gated, "the first batch only came once every shard could be read: not streaming"
    assert 2 <= len(read_before_first_batch) <= 4
    assert len(read_in_epoch) == N_UNPAIRED // ROWS_PER_SHARD  # the gate saw every shard read
    x = first["image"]
    assert x.dtype == torch.float32 and x.shape == (BATCH, 3, 8, 8) and -1 <= x.min() and x.max() <= 1

    # One epoch: every index exactly once (1200 = 75 x 16, nothing dropped), shuffled.
    image_order = np.concatenate([b["index"].numpy() for b in image_batches])
    np.testing.assert_array_equal(np.sort(image_order), np.arange(N_UNPAIRED))
    assert not (np.diff(image_order) > 0).all()
    # shuffled across shards, not shard by shard: the first 100 rows come from several shards
    assert len(np.unique(image_order[:ROWS_PER_SHARD] // ROWS_PER_SHARD)) > 1

    label_batches = list(iterate_unpaired(plain[UNPAIRED_LABELS], BATCH, BUFFER, seed=0, epochs=1))
    y = label_batches[0]["label"]
    assert y.dtype == torch.int64 and y.shape == (BATCH, 8, 8) and 0 <= y.min() and y.max() < 7
    label_order = np.concatenate([b["index"].numpy() for b in label_batches])
    np.testing.assert_array_equal(np.sort(label_order), np.arange(N_UNPAIRED))
    assert (label_order != image_order).mean() > 0.9  # independent streams

    # the decoded pixels are the packed ones
    want = np.stack([r[0] for r in _records(N_UNPAIRED, seed=2, labels=False)])
    got = (image_batches[0]["image"].numpy().transpose(0, 2, 3, 1) + 1) * 127.5
    np.testing.assert_allclose(got, want[image_batches[0]["index"].numpy()], atol=1e-3)


def test_small_unpaired_sets_are_read_once_and_reshuffled_every_epoch(unpaired_dirs, tmp_path):
    import shutil

    from raygan.data.streams import UNPAIRED_IMAGES, UNPAIRED_LABELS, iterate_unpaired, unpaired_datasets

    images, labels = (shutil.copytree(d, tmp_path / d.name) for d in unpaired_dirs)
    mib = sum(f.stat().st_size for d in (images, labels) for f in d.glob("*.parquet")) / 2**20
    held = unpaired_datasets(images, labels, seed=0, in_memory_mib=mib)  # exactly fits: read now
    shutil.rmtree(images)  # every epoch comes from memory: the shards are no longer needed
    shutil.rmtree(labels)
    orders = [np.concatenate([b["index"].numpy() for b in iterate_unpaired(held[name], BATCH, 0, seed=0, epochs=2)])
              for name in (UNPAIRED_IMAGES, UNPAIRED_LABELS)]
    for order in orders:  # two epochs, each every row once (no shuffle buffer: the reshuffle is the blocks')
        first, second = order[:N_UNPAIRED], order[N_UNPAIRED:]
        np.testing.assert_array_equal(np.sort(first), np.arange(N_UNPAIRED))
        np.testing.assert_array_equal(np.sort(second), np.arange(N_UNPAIRED))
        assert (first != second).mean() > 0.9  # a fresh order, not the first epoch's again
        blocks = [o.reshape(-1, ROWS_PER_SHARD)[:, 0] // ROWS_PER_SHARD for o in (first, second)]  # 1 shard = 1 block
        assert (blocks[0] != blocks[1]).any()  # the blocks come in a new order too
    assert (orders[0] != orders[1]).mean() > 0.9  # the two sets still shuffle independently

    from ray.data._internal.logical.operators import AbstractAllToAll

    def has_barrier(ds):  # randomize_block_order: fine over blocks in memory, it would stop a stream
        ops, stack = [], [ds._logical_plan.dag]
        while stack:
            ops.append(stack.pop())
            stack.extend(ops[-1].input_dependencies)
        return any(isinstance(op, AbstractAllToAll) for op in ops)

    assert all(has_barrier(ds) for ds in held.values())
    lazy = unpaired_datasets(*unpaired_dirs, seed=0, in_memory_mib=mib * 0.99)  # a little too big: streamed
    assert not any(has_barrier(ds) for ds in lazy.values())
