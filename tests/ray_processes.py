"""What the tests that kill a Ray driver share: clearing up the Ray processes it left behind."""
from __future__ import annotations

import os
import signal
import time


def kill_leftovers(ray_tmp, settle_s: float = 1.0, limit_s: float = 15.0) -> None:
    """SIGKILL whatever a killed run's Ray left behind: only the processes whose command line
    names its own temp folder ``ray_tmp``; swept again until none has been found for
    ``settle_s`` (a dying raylet may still be starting a worker, which would otherwise live on
    and write into the run's folder)."""
    deadline, quiet_since = time.time() + limit_s, time.time()
    while time.time() < deadline and time.time() - quiet_since < settle_s:
        if _sweep(ray_tmp):
            quiet_since = time.time()
        time.sleep(0.2)


def _sweep(ray_tmp) -> bool:
    """Kill the matching processes once; whether there were any."""
    found = False
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if str(ray_tmp) in cmdline and int(pid) != os.getpid():
            found = True
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
    return found
