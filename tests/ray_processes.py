"""What the tests that kill a Ray driver share: clearing up the Ray processes it left behind."""
from __future__ import annotations

import os
import signal


def kill_leftovers(ray_tmp) -> None:
    """SIGKILL whatever a killed run's Ray left behind: only the processes whose command line
    names its own temp folder ``ray_tmp``."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace")
        except OSError:
            continue
        if str(ray_tmp) in cmdline:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
