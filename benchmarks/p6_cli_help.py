"""P6: wall time of `raygan --help` (target <= 1.5 s).

Runs the installed entry point (or `python -m raygan.cli` with --module) in a fresh
process --reps times and reports the median; with --importtime it also lists the
slowest imports (python -X importtime). Usage: python benchmarks/p6_cli_help.py [--reps 9]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from _common import loadavg, median


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--module", action="store_true", help="time `python -m raygan.cli --help` instead")
    ap.add_argument("--importtime", action="store_true", help="also print the 10 slowest imports")
    args = ap.parse_args()

    exe = shutil.which("raygan") or os.path.join(os.path.dirname(sys.executable), "raygan")
    cmd = [sys.executable, "-m", "raygan.cli", "--help"] if args.module or not os.path.exists(exe) else [exe, "--help"]
    from importlib.metadata import version  # versions without importing torch or ray

    print(f"machine: {os.cpu_count()} CPUs, torch {version('torch')}, ray {version('ray')}, "
          f"python {sys.version.split()[0]}, load average {loadavg()}")
    print("command:", " ".join(cmd))
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
    print(f"raygan --help: median {median(times):.3f} s over {args.reps}  {[round(t, 3) for t in times]}")
    probe = subprocess.run([sys.executable, "-c", "import sys, raygan.cli; "
                            "print(sorted(m for m in ('torch', 'ray', 'numpy', 'yaml') if m in sys.modules))"],
                           check=True, capture_output=True, text=True)
    print("heavy modules imported by raygan.cli:", probe.stdout.strip())
    assert "usage" in out.stdout.lower()
    if args.importtime:
        r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import raygan.cli"],
                           capture_output=True, text=True)
        rows = [line.split("|") for line in r.stderr.splitlines() if line.startswith("import time:")][1:]
        rows = sorted(((int(c), name.strip()) for _, c, name in rows), reverse=True)[:10]
        for us, name in rows:
            print(f"  {us / 1000:8.1f} ms cumulative  {name}")


if __name__ == "__main__":
    main()
