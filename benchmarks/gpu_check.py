"""#18: the GPU check. Runs the `gpu` tests, then measures the GPU path; writes DIR/gpu_check.json.

Usage: bash benchmarks/gpu_check.sh [--cpu-dry-run] --out DIR   (the wrapper installs what is missing)
       python benchmarks/gpu_check.py [--cpu-dry-run] --out DIR [--source embedded] [--sections ...]

What it measures (the sizes: config-f widths at 256 px, batch 8, on one GPU; --cpu-dry-run: the same
code on CPU at tiny sizes, a smoke check and no performance claim):
- adaptation: the few-shot adaptation step (TGAN: the harness every few-shot method shares,
  lazy R1 + path length included) in fp32, bf16, bf16 + torch.compile; achieved TFLOP/s (FLOPs
  counted by torch.utils.flop_counter, on the step without the lazy regularisers) and their share
  of the GPU's dense bf16 peak (PEAK_BF16_TFLOPS, by name; unknown GPUs say so);
- modconv: the step with each modulated-conv form (train.modconv), beside what auto picks;
- ray_train: the step inside a 1-worker Ray Train run (1 GPU) vs the bare loop in this process;
- data_wait: the semi-paired step on a packed scene set (`raygan data pack scenes`), its unpaired
  batches from Ray Data (held in memory, the default for small sets, and streamed from the
  shards): the share of wall time the step waits for a batch.
Each timing is seconds per step over whole lazy-regularisation windows (r1_every steps) after
one window of warm-up, the device synchronised at both ends.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (puts the checkout on sys.path)

# Dense bf16 tensor-core peaks (vendor data sheets), TFLOP/s; the first name found in the device
# name wins (PCIe before the SXM entry of the same chip).
PEAK_BF16_TFLOPS = [("H100 PCIe", 756.0), ("H100", 989.0), ("H200", 989.0), ("GH200", 989.0), ("A100", 312.0),
                    ("L40S", 362.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("B200", 2250.0)]
SECTIONS = ("gpu_tests", "adaptation", "modconv", "ray_train", "data_wait")


@dataclasses.dataclass
class Sizes:
    source: dict      # Generator kwargs of the random source written for the run (or "embedded")
    batch: int
    window: int       # steps per timed window: train.r1_every (path length every window/4 steps)
    data_size: int
    data_n: int
    data_model: dict  # the label-to-image networks' widths (model section)


GPU_SIZES = Sizes(dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512),
                  batch=8, window=16, data_size=128, data_n=1000, data_model={})
DRY_SIZES = Sizes(dict(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32),
                  batch=2, window=2, data_size=32, data_n=100, data_model=dict(g_base=8, d_base=8, z_dim=8))


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def seconds_per_step(method, warmup: int, steps: int, device) -> float:
    for _ in range(warmup):
        method.step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        method.step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def write_source(path: Path, g_config: dict) -> str:
    """A randomly initialised StyleGAN2 with these widths, as a rosinality-layout file: the step's
    cost does not depend on the weights, and nothing needs downloading."""
    from raygan.models.checkpoint import random_source, save_source

    save_source(random_source(g_config), path)
    return str(path)


def fewshot_config(checkpoint: str, sizes: Sizes, **train) -> dict:
    window = sizes.window
    return {"method": {"name": "tgan"}, "model": {"checkpoint": checkpoint}, "data": {},
            "train": {"batch_size": sizes.batch, "r1_every": window, "pl_every": max(1, window // 4), **train}}


def peak_bf16(name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS if key in name), None)


def device_info(device: str) -> dict:
    import ray
    import torch

    info = {"device": device, "torch": torch.__version__, "ray": ray.__version__, "cuda": torch.version.cuda,
            "cpus": os.cpu_count()}
    if device == "cuda":
        name = torch.cuda.get_device_name()
        info.update(name=name, gpus=torch.cuda.device_count(), peak_bf16_tflops=peak_bf16(name),
                    peak_note="dense bf16, vendor data sheet" if peak_bf16(name) else f"unknown GPU {name!r}: no peak")
    else:
        info.update(name="cpu", gpus=0, peak_bf16_tflops=None, peak_note="CPU: no bf16 tensor-core peak")
    return info


def gpu_tests(dry_run: bool) -> dict:
    if dry_run:  # the dry run is itself one of the suite's tests
        return {"rc": None, "summary": "not run (--cpu-dry-run)"}
    root = Path(__file__).resolve().parent.parent
    p = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
                       cwd=root, capture_output=True, text=True)
    lines = [x for x in p.stdout.strip().splitlines() if x.strip()]
    return {"rc": p.returncode, "summary": lines[-1] if lines else "", "failures": [x for x in lines if "FAILED" in x]}


def adaptation(checkpoint: str, sizes: Sizes, device: str, peak: float | None) -> dict:
    """The step in each precision. TFLOP/s come from the step without its lazy regularisers
    (r1 = pl_weight = 0): FlopCounterMode cannot follow R1's and path length's autograd.grad
    (its module tracker refuses a leaf input), so FLOPs and time are both taken on that step."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from raygan.train.loop import build_method

    variants = {"fp32": dict(precision="fp32", channels_last=False), "bf16": dict(precision="bf16"),
                "bf16+compile": dict(precision="bf16", compile=True)}
    _, plain, _ = build_method(fewshot_config(checkpoint, sizes, r1=0.0, pl_weight=0.0, precision="fp32"), device)
    plain.step()
    with FlopCounterMode(display=False) as counter:
        plain.step()
    flops = counter.get_total_flops()  # the same ops in every variant
    del plain
    rows = {}
    for name, knobs in variants.items():
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        row = {}
        for kind, extra in (("", {}), ("plain_", dict(r1=0.0, pl_weight=0.0))):
            _, method, _ = build_method(fewshot_config(checkpoint, sizes, **knobs, **extra), device)
            t0 = time.perf_counter()
            warmup = sizes.window * (2 if method.accel.compile else 1)  # compiling: more graphs to build
            sec = seconds_per_step(method, warmup, sizes.window, device)
            row[f"{kind}sec_per_step"] = sec
            row[f"{kind}warmup_s"] = time.perf_counter() - t0 - sec * sizes.window  # compiling included
            row["accel"] = dataclasses.asdict(method.accel)
            del method
        row["tflops"] = flops / row["plain_sec_per_step"] / 1e12
        row["share_of_bf16_peak"] = row["tflops"] / peak if peak else None
        if device == "cuda":
            row["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        rows[name] = row
    return {"method": "tgan", "g_config": sizes.source, "batch": sizes.batch, "window": sizes.window,
            "plain_flops_per_step": flops, "rows": rows,
            "bf16_speedup": rows["fp32"]["sec_per_step"] / rows["bf16"]["sec_per_step"],
            "compile_speedup": rows["bf16"]["sec_per_step"] / rows["bf16+compile"]["sec_per_step"]}


def modconv(checkpoint: str, sizes: Sizes, device: str) -> dict:
    from raygan.models.accel import MODCONV_AUTO
    from raygan.train.loop import build_method

    out = {}
    for form in ("fused", "unfused"):
        _, method, _ = build_method(fewshot_config(checkpoint, sizes, modconv=form), device)
        out[form] = seconds_per_step(method, sizes.window, sizes.window, device)
    return {**out, "faster": min(out, key=out.get), "auto_picks": MODCONV_AUTO[device],
            "precision": "bf16" if device == "cuda" else "fp32"}


def _train_worker(config: dict) -> None:
    """One Ray Train worker: the same step as the bare loop, timed the same way."""
    import ray.train
    import torch

    from raygan.train.loop import build_method

    device = ray.train.torch.get_device() if config["use_gpu"] else torch.device("cpu")
    torch.set_num_threads(config["threads"])
    _, method, _ = build_method(config["cfg"], str(device))
    sec = seconds_per_step(method, config["window"], config["window"], device)
    # To the driver through a file (one machine): Train v2's Result.metrics holds only what was
    # reported with a checkpoint.
    Path(config["result_file"]).write_text(json.dumps({"sec_per_step": sec}))


def ray_train(checkpoint: str, sizes: Sizes, device: str, storage: Path) -> dict:
    import torch
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from raygan.train.loop import build_method

    cfg = fewshot_config(checkpoint, sizes)
    _, method, _ = build_method(cfg, device)
    bare = seconds_per_step(method, sizes.window, sizes.window, device)
    del method
    cuda = device == "cuda"
    threads = torch.get_num_threads()
    result_file = storage / "worker_result.json"
    storage.mkdir(parents=True, exist_ok=True)
    trainer = TorchTrainer(
        _train_worker, train_loop_config={"cfg": cfg, "use_gpu": cuda, "window": sizes.window, "threads": threads,
                                          "result_file": str(result_file)},
        torch_config=TorchConfig(backend="nccl" if cuda else "gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=cuda, resources_per_worker={"CPU": 1}),
        run_config=ray.train.RunConfig(name="gpu_check_train", storage_path=str(storage)))
    t0 = time.perf_counter()
    trainer.fit()
    inside = json.loads(result_file.read_text())["sec_per_step"]
    return {"bare_sec_per_step": bare, "ray_train_sec_per_step": inside, "ratio": inside / bare,
            "run_wall_s": time.perf_counter() - t0, "use_gpu": cuda, "torch_threads": threads}


def data_wait(sizes: Sizes, device: str, root: Path) -> dict:
    from raygan.data.semipaired import pack
    from raygan.registry import family_of
    from raygan.search_space import typed
    from raygan.train.loop import build_method

    pack("scenes", root / "packed", ratio=0.05, seed=0, size=sizes.data_size, n_train=sizes.data_n)
    out = {"size": sizes.data_size, "n_train": sizes.data_n, "batch": sizes.batch}
    for mode, mib in (("in_memory", 1024.0), ("streamed", 0.0)):
        cfg = {"method": {"name": "semipaired"}, "model": dict(sizes.data_model),
               "data": {"dataset": "packed", "root": str(root / "packed"), "in_memory_mib": mib},
               "train": {"batch_size": sizes.batch}}
        datasets = family_of("semipaired").ray_datasets(typed(cfg))
        _, method, _ = build_method(cfg, device, dataset_shard=datasets.__getitem__)
        waited = [0.0]
        for kind in ("unpaired_image_batch", "unpaired_label_batch"):
            take = getattr(method.data, kind)

            def timed(b, rng, take=take):
                t0 = time.perf_counter()
                x = take(b, rng)
                waited[0] += time.perf_counter() - t0
                return x
            setattr(method.data, kind, timed)
        steps = sizes.window * 2
        for _ in range(sizes.window):  # warm-up: the pipeline starts
            method.step()
        sync(device)
        waited[0] = 0.0
        t0 = time.perf_counter()
        for _ in range(steps):
            method.step()
        sync(device)
        wall = time.perf_counter() - t0
        out[mode] = {"sec_per_step": wall / steps, "wait_share": waited[0] / wall}
        for stream in method.data.streams.values():
            stream.close()  # now, while Ray is up (not at garbage collection after ray.shutdown)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for gpu_check.json (and the run's scratch files)")
    ap.add_argument("--cpu-dry-run", action="store_true", help="the same code on CPU at tiny sizes")
    ap.add_argument("--source", choices=["random", "embedded"], default="random",
                    help="the adaptation's source: random weights at the run's widths, or the embedded model")
    ap.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    ap.add_argument("--budget-s", type=float, default=420.0, help="sections not started by then are skipped")
    args = ap.parse_args(argv)

    import ray
    import torch

    t_start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.cpu_dry_run and not torch.cuda.is_available():
        print("gpu_check: no CUDA device (use --cpu-dry-run on CPU)", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu_dry_run else "cuda"
    if args.cpu_dry_run:
        # One thread: two OpenMP threads on two cores that other jobs share run a tiny step
        # ~100x slower (measured: 9 s instead of 0.1 s). The dry run checks code, not speed.
        torch.set_num_threads(1)
    sizes = DRY_SIZES if args.cpu_dry_run else GPU_SIZES
    results = {"command": " ".join(["benchmarks/gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
               "dry_run": args.cpu_dry_run, "device": device_info(device)}
    scratch_dir = tempfile.TemporaryDirectory(prefix="gpu_check_")  # the source .pt, packed scenes, Ray storage
    scratch = Path(scratch_dir.name)
    checkpoint = "embedded" if args.source == "embedded" else write_source(scratch / "source.pt", sizes.source)
    if args.source == "embedded":
        sizes = dataclasses.replace(sizes, source="embedded")
    if {"ray_train", "data_wait"} & set(args.sections):
        os.environ.pop("RAY_ADDRESS", None)
        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    peak = results["device"]["peak_bf16_tflops"]
    steps = {"gpu_tests": lambda: gpu_tests(args.cpu_dry_run),
             "adaptation": lambda: adaptation(checkpoint, sizes, device, peak),
             "modconv": lambda: modconv(checkpoint, sizes, device),
             "ray_train": lambda: ray_train(checkpoint, sizes, device, scratch / "ray"),
             "data_wait": lambda: data_wait(sizes, device, scratch)}
    try:
        for name in args.sections:
            if time.perf_counter() - t_start > args.budget_s:
                results[name] = {"skipped": f"over the {args.budget_s:g} s budget"}
                continue
            t0 = time.perf_counter()
            results[name] = steps[name]()
            results[name]["section_s"] = time.perf_counter() - t0
            print(f"gpu_check: {name}: {json.dumps(results[name], default=str)}", flush=True)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        scratch_dir.cleanup()
        results["seconds"] = time.perf_counter() - t_start
        (out / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"gpu_check: wrote {out / 'gpu_check.json'} in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
