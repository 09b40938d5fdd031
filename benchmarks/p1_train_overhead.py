"""P1: steady-state step time of the DCL trainer inside Ray Train (1 worker) / the bare PyTorch loop
(target <= 1.05).

Both run raygan.train.loop.run on the same config (DCL paper defaults, embedded task,
batch --batch, --threads torch threads, one evaluation at the very end); the
same timer wraps every step in both, and a run's sample is the median step time
after --warmup steps, on three clocks (wall, thread CPU, process CPU: see _train_timing). A is a 1-worker TorchTrainer through raygan's fit_trial
(the path `raygan train` / `raygan tune` take), B the bare loop in this process;
they alternate, --reps each. Usage:
python benchmarks/p1_train_overhead.py [--reps 5] [--steps 40] [--batch 4] [--threads 1]
"""
from __future__ import annotations

import argparse

from _common import alternate, machine_line, report
from _train_timing import CLOCKS, bare_step_times, dcl_config, ray_step_times, start_ray, steady


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--worker-niceness", type=int, default=None,
                    help="RAY_worker_niceness for this run (Ray's default 15 lowers workers' CPU priority, which "
                         "only shows when other jobs compete for the cores); 0: same priority as the bare loop")
    args = ap.parse_args()
    if args.worker_niceness is not None:
        import os

        os.environ["RAY_worker_niceness"] = str(args.worker_niceness)

    cfg = dcl_config(args.steps, args.batch, args.threads)
    start_ray()
    print(machine_line())
    print(f"DCL, {args.steps} steps/run (first {args.warmup} dropped), batch {args.batch}, "
          f"{args.threads} torch thread(s); 1 Train worker holding 1 CPU")
    samples = {"ray": [], "bare": []}

    def sample(name, fn):
        def go():
            samples[name].append(steady(fn(), args.warmup))
            return samples[name][-1][0]
        return go

    alternate(args.reps, sample("ray", lambda: ray_step_times(cfg)[0]), sample("bare", lambda: bare_step_times(cfg)),
              "Ray Train", "bare loop", warmup=False)
    for k, clock in enumerate(CLOCKS):
        print(f"-- {clock} time per step")
        report("Ray Train (1 worker)", [s[k] for s in samples["ray"]], "bare loop", [s[k] for s in samples["bare"]],
               "s/step")


if __name__ == "__main__":
    main()
