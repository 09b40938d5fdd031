"""P5: training throughput with 2 Ray Train workers / 1 worker, 1 torch thread each (target >= 1.7).

DCL (paper defaults, embedded task) in a TorchTrainer through raygan's fit_trial,
--batch images per worker per step (weak scaling: the global batch doubles with
2 workers; gradients are all-reduced over gloo every D and G step). A run's
sample: images/s = workers x batch / median step time of rank 0 after --warmup
steps (ranks wait for each other in the all-reduce). 2- and 1-worker runs alternate.
Usage: python benchmarks/p5_scaling.py [--reps 5] [--steps 30] [--batch 4]
"""
from __future__ import annotations

import argparse

from _common import alternate, machine_line, report
from _train_timing import CLOCKS, dcl_config, ray_step_times, start_ray, steady


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4, help="per worker")
    args = ap.parse_args()

    cfg = dcl_config(args.steps, args.batch, threads=1)
    start_ray(num_cpus=2)
    print(machine_line())
    print(f"DCL, {args.steps} steps/run (first {args.warmup} dropped), batch {args.batch} per worker, "
          "1 torch thread and 1 CPU per worker")

    samples = {1: [], 2: []}

    def throughput(workers):
        def go():
            samples[workers].append([workers * args.batch / t
                                     for t in steady(ray_step_times(cfg, num_workers=workers)[0], args.warmup)])
            return samples[workers][-1][0]
        return go

    alternate(args.reps, throughput(2), throughput(1), "2 workers", "1 worker", warmup=False)
    for k, clock in enumerate(CLOCKS):
        print(f"-- images/s by the {clock} time per step" + (" (as if each worker had its own idle core)" if k else ""))
        report("2 workers", [s[k] for s in samples[2]], "1 worker", [s[k] for s in samples[1]], "images/s")


if __name__ == "__main__":
    main()
