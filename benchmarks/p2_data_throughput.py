"""P2: images/s delivered to the trainer, Ray Data over packed parquet / torch DataLoader over a PNG folder
(target >= 1.5).

The data: procedural scenes packed by `raygan data pack scenes` (raygan.data.semipaired.pack);
its unpaired_images part (decoded uint8 arrays in parquet shards) is also written,
image by image, as a PNG folder. A: raygan's own streaming path: unpaired_datasets()
+ iterate_unpaired() (file shuffle, in-block permutation, local shuffle buffer,
decode to float [-1, 1] NCHW tensors), in a Ray cluster of --workers CPUs.
B: DataLoader(shuffle=True, num_workers=--workers) over a Dataset that opens each
PNG with PIL and makes the same tensor. One sample = one full epoch, start-up
included (both pay it every epoch: Ray Data starts a new streaming execution,
the DataLoader forks its workers). Usage:
python benchmarks/p2_data_throughput.py [--images 2000] [--size 64] [--batch 16] [--workers 2] [--reps 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import alternate, machine_line, median, report


class PNGFolder:
    """The straightforward image-folder dataset: one PNG per item, decoded on access."""

    def __init__(self, folder):
        self.files = sorted(Path(folder).glob("*.png"))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        import torch
        from PIL import Image

        x = np.asarray(Image.open(self.files[i]).convert("RGB"), np.float32).transpose(2, 0, 1)
        return torch.from_numpy(x / 127.5 - 1)


def write_data(root: Path, images: int, size: int) -> tuple[Path, Path, Path, int]:
    import pyarrow.parquet as pq
    from PIL import Image

    from raygan.data.pack import decode_batch
    from raygan.data.semipaired import pack

    info = pack("scenes", root / "packed", ratio=0.05, seed=0, size=size, n_train=round(images * 2 / 0.95))
    shards = root / "packed" / "unpaired_images"
    png = root / "png"
    png.mkdir()
    for part in sorted(shards.glob("part-*.parquet")):
        batch = decode_batch({k: v for k, v in pq.read_table(part).to_pydict().items()})
        for idx, img in zip(batch["index"], batch["image"]):
            Image.fromarray(img).save(png / f"{idx:06d}.png")
    return shards, root / "packed" / "unpaired_labels", png, info["counts"]["unpaired_images"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--shuffle-buffer", type=int, default=256, help="raygan's default data.shuffle_buffer")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()

    import os

    os.environ.pop("RAY_ADDRESS", None)
    import ray
    import ray.data
    import torch

    from raygan.data.streams import UNPAIRED_IMAGES, iterate_unpaired, unpaired_datasets

    root = Path(tempfile.mkdtemp(prefix="raygan_p2_"))
    t0 = time.perf_counter()
    shards, label_shards, png, n = write_data(root, args.images, args.size)
    mb = lambda p: sum(f.stat().st_size for f in Path(p).iterdir()) / 2**20  # noqa: E731
    print(f"wrote {n} scenes at {args.size} px in {time.perf_counter() - t0:.1f} s: parquet {mb(shards):.1f} MiB, "
          f"PNG folder {mb(png):.1f} MiB")

    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, configure_logging=False, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    print(machine_line())
    print(f"batch {args.batch}, {args.workers} workers: a Ray cluster of {args.workers} CPUs (raygan's read "
          f"tasks ask 0.05 CPU each) vs DataLoader(num_workers={args.workers}); one epoch per sample")

    first = {"Ray Data": [], "DataLoader": []}  # seconds to the first batch, and images/s after it

    def epoch(name, batches):
        t0, seen, t1 = time.perf_counter(), 0, None
        for x in batches():
            seen += len(x)
            if t1 is None:
                t1, seen = time.perf_counter(), 0
        t2 = time.perf_counter()
        first[name].append((t1 - t0, seen / (t2 - t1)))
        return (seen + args.batch) / (t2 - t0)

    def ray_batches():
        ds = unpaired_datasets(shards, label_shards, seed=0)[UNPAIRED_IMAGES]
        return (b["image"] for b in iterate_unpaired(ds, args.batch, args.shuffle_buffer, seed=0, epochs=1))

    loader = torch.utils.data.DataLoader(PNGFolder(png), batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers)

    ra, rb = alternate(args.reps, lambda: epoch("Ray Data", ray_batches), lambda: epoch("DataLoader", lambda: loader),
                       "Ray Data", "DataLoader")
    report("Ray Data, packed parquet", ra, "DataLoader, PNG folder", rb, "images/s (whole epoch)")
    for name, rows in first.items():
        rows = rows[-args.reps:]  # without the warm-up epoch
        print(f"{name}: first batch after median {median([r[0] for r in rows]):.2f} s; after it "
              f"median {median([r[1] for r in rows]):.0f} images/s  {[round(r[1]) for r in rows]}")
    print(f"ratio after the first batch (Ray Data / DataLoader): "
          f"{median([r[1] for r in first['Ray Data'][-args.reps:]]) / median([r[1] for r in first['DataLoader'][-args.reps:]]):.3f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
