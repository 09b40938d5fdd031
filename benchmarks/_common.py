"""Shared helpers of the benchmark scripts: the machine line, load average, medians, A/B alternation."""
from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

# The scripts run from a checkout (python benchmarks/pX.py): make raygan importable without an install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def machine_line() -> str:
    """CPU count, torch and ray versions (imported here: the caller already pays for them), load."""
    import ray
    import torch

    return (f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}, ray {ray.__version__}, "
            f"python {sys.version.split()[0]}, load average {loadavg()}")


def median(xs) -> float:
    return statistics.median(xs)


def alternate(reps: int, a, b, label_a="A", label_b="B", warmup: bool = True):
    """Run a() and b() alternately (A B A B ...; B first on odd repetitions to cancel drift),
    after one unrecorded warm-up call each. Returns the lists of their return values."""
    if warmup:
        a(), b()
    ra, rb = [], []
    for i in range(reps):
        for name, fn, out in ((label_a, a, ra), (label_b, b, rb))[:: 1 if i % 2 == 0 else -1]:
            out.append(fn())
            print(f"  rep {i + 1} {name}: {out[-1]:.4g}  (load {loadavg()})", flush=True)
    return ra, rb


def report(name_a: str, ra, name_b: str, rb, unit: str, ratio_of: str = "a/b") -> float:
    ma, mb = median(ra), median(rb)
    print(f"{name_a}: median {ma:.4g} {unit}  {[round(x, 4) for x in ra]}")
    print(f"{name_b}: median {mb:.4g} {unit}  {[round(x, 4) for x in rb]}")
    ratio = ma / mb if ratio_of == "a/b" else mb / ma
    pairs = [x / y if ratio_of == "a/b" else y / x for x, y in zip(ra, rb)]
    print(f"ratio of medians ({ratio_of}): {ratio:.3f}; median of the {len(pairs)} per-repetition ratios "
          f"(A and B of one repetition ran back to back): {median(pairs):.3f}  {[round(r, 3) for r in pairs]}")
    return ratio
