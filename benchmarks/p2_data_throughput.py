"""P2: images/s delivered to the trainer, Ray Data over packed parquet / torch DataLoader over a PNG folder
(target >= 1.5).

The data: procedural scenes packed by `raygan data pack scenes` (raygan.data.semipaired.pack);
its unpaired_images part (decoded uint8 arrays in parquet shards) is also written,
image by image, as a PNG folder. Three arms, in a rotating order every repetition:
A: raygan's streaming path as a trial runs it: unpaired_datasets() (with
   data.in_memory_mib's default: a set this small is read once into the object
   store and reshuffled there each epoch) + iterate_unpaired() (local shuffle buffer,
   decode to float [-1, 1] NCHW tensors), in a Ray cluster of --workers CPUs;
A0: the same with in_memory_mib=0: every epoch a new streaming read of the shards
   (file shuffle, in-block permutation), which was raygan's only path before;
B: DataLoader(shuffle=True, num_workers=--workers, persistent_workers=True) over a
   Dataset that opens each PNG with PIL and makes the same tensor.
One sample = --epochs epochs as a training run consumes them, everything from
building the dataset / loader on included. Usage:
python benchmarks/p2_data_throughput.py [--images 2000] [--size 64] [--batch 16] [--workers 2] [--epochs 5] [--reps 5]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import loadavg, machine_line, report


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
    ap.add_argument("--epochs", type=int, default=5, help="epochs per sample")
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
          f"tasks ask 0.05 CPU each) vs DataLoader(num_workers={args.workers}); {args.epochs} epochs per sample")

    def images_per_s(batches):
        t0, seen = time.perf_counter(), 0
        for x in batches():
            seen += len(x)
        return seen / (time.perf_counter() - t0)

    def ray_arm(in_memory_mib):
        def batches():
            ds = unpaired_datasets(shards, label_shards, seed=0, in_memory_mib=in_memory_mib)[UNPAIRED_IMAGES]
            stream = iterate_unpaired(ds, args.batch, args.shuffle_buffer, seed=0, epochs=args.epochs)
            return (b["image"] for b in stream)
        return lambda: images_per_s(batches)

    def loader_batches():
        loader = torch.utils.data.DataLoader(PNGFolder(png), batch_size=args.batch, shuffle=True, drop_last=True,
                                             num_workers=args.workers, persistent_workers=True)
        return (x for _ in range(args.epochs) for x in loader)

    arms = {"A  Ray Data, held in memory (default)": ray_arm(1024.0),
            "A0 Ray Data, streamed every epoch": ray_arm(0.0),
            "B  DataLoader, PNG folder": lambda: images_per_s(loader_batches)}
    for fn in arms.values():  # warm-up, unrecorded
        fn()
    got = {name: [] for name in arms}
    names = list(arms)
    for i in range(args.reps):
        for name in names[i % 3:] + names[:i % 3]:  # rotate which arm goes first
            got[name].append(arms[name]())
            print(f"  rep {i + 1} {name}: {got[name][-1]:.0f} images/s  (load {loadavg()})", flush=True)
    dl = got[names[2]]
    for name in names[:2]:
        report(name, got[name], names[2], dl, f"images/s ({args.epochs} epochs, start-up included)")
    ray.shutdown()


if __name__ == "__main__":
    main()
