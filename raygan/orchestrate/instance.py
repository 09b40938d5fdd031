"""Which Ray instance a command runs on, said in one line before anything runs there.

With no address, raygan does what ``ray.init()`` does: RAY_ADDRESS, else the
instance the last ``ray start`` on this machine recorded, else a new local one.
Not ``ray.init(address="auto")``: besides that recorded instance, "auto" joins any
Ray instance it finds among this machine's processes, such as the one another
``raygan tune`` started for itself, whose trials die when that job ends.
"""
from __future__ import annotations

import os
import socket
import sys
import tempfile
from pathlib import Path

from raygan.errors import UserError

LOCAL = "local"  # --address local: always a fresh local instance
FRESH = "--address local starts a fresh one"
PROBE_S = 5.0  # ray.init retries a silent address for minutes; a TCP connect says so at once


def _recorded() -> tuple[str | None, Path]:
    """(address, file): what the last ``ray start`` on this machine recorded, the instance
    ``ray.init()`` joins when given no address (ray.init's documentation:
    /tmp/ray/ray_current_cluster; the folder is Ray's temp folder, $RAY_TMPDIR when set)."""
    if "RAY_TMPDIR" in os.environ:
        base = os.environ["RAY_TMPDIR"]
    elif sys.platform.startswith("linux") and "TMPDIR" in os.environ:
        base = os.environ["TMPDIR"]
    elif sys.platform.startswith(("linux", "darwin")):
        base = "/tmp"
    else:
        base = tempfile.gettempdir()
    path = Path(base) / "ray" / "ray_current_cluster"
    try:
        return path.read_text().strip() or None, path
    except OSError:
        return None, path


def _probe(address: str, where: str, hint: str) -> None:
    """A one-line error unless something listens at HOST:PORT (also ray://HOST:PORT)."""
    host, sep, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise UserError(where, f"expected a Ray address HOST:PORT (e.g. 10.0.0.5:6379), got '{address}'; {hint}")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_S).close()
    except OSError as e:
        why = e.strerror or str(e) or type(e).__name__
        raise UserError(where, f"no Ray instance answers at {address} ({why}); {hint}") from None


def _check(target: str, where: str, hint: str) -> None:
    """A one-line error unless ``target`` (not local, not auto) is a Ray HOST:PORT that answers."""
    if target.startswith(("http://", "https://")):
        raise UserError(where, f"{target} is a dashboard's address; give its Ray instance's HOST:PORT "
                               "(6379 by default, the one `ray start --head` prints)")
    _probe(target, where, hint)


def _address_check(address: str) -> tuple[str, str]:
    return f"--address {address}", f"`ray start --head` prints the address of the instance it starts; {FRESH}"


def check_address(address: str | None) -> None:
    """The checks of an explicit ``--address`` that need neither Ray nor torch: the CLI runs
    them before its heavy imports, so that a mistyped address is a one-line error at once
    (connect() runs them again, for RAY_ADDRESS and the recorded instance too)."""
    if address is not None and address not in (LOCAL, "auto"):
        _check(address, *_address_check(address))


def _count(n: float, what: str) -> str:
    return f"{n:g} {what}{'' if n == 1 else 's'}"


def _resources(free: bool) -> str:
    import ray

    total, now = ray.cluster_resources(), ray.available_resources()
    cpus, gpus = (total.get(k, 0.0) for k in ("CPU", "GPU"))
    if not free:
        return f"{_count(cpus, 'CPU')}, {_count(gpus, 'GPU')}"
    return (f"{_count(cpus, 'CPU')} ({now.get('CPU', 0.0):g} free now), "
            f"{_count(gpus, 'GPU')} ({now.get('GPU', 0.0):g} free)")


def connect(address: str | None = None, *, dashboard: bool, configure_logging: bool = False) -> str:
    """Start or join Ray and return the line that says which (for the caller to print).

    ``address``: None (RAY_ADDRESS, else the instance ``ray start`` recorded on this
    machine, else a new local one), ``"local"`` (a new local instance even when one
    runs), or anything ``ray.init`` takes (HOST:PORT, ray://HOST:PORT, auto).
    ``dashboard``: a new instance serves its dashboard on 127.0.0.1 (also the State
    API that Ray Train polls). Raises UserError, one line, when nothing answers."""
    import ray

    if ray.is_initialized():
        unused = f"; --address {address} not used" if address else ""
        return (f"raygan: Ray: already initialised in this process (the instance at "
                f"{ray.get_runtime_context().gcs_address}), {_resources(free=True)}{unused}")
    env = os.environ.get("RAY_ADDRESS") or None  # ray.init takes an empty RAY_ADDRESS as unset
    recorded, record = _recorded()
    if address is not None:
        target, origin = address, "from --address"
        where, hint = _address_check(address)
    elif env is not None:
        target, where, origin, hint = env, f"RAY_ADDRESS={env}", "from RAY_ADDRESS, not started by this command", \
            f"correct or unset RAY_ADDRESS; {FRESH}"
    elif recorded is not None:
        # ray.init() itself joins it (and takes up its token authentication, as it does
        # only for an instance it finds on its own).
        target, where, origin, hint = None, str(record), \
            "not started by this command: `ray start` or another job", \
            f"the last `ray start` on this machine recorded it here (deleting the file forgets it); {FRESH}"
    else:
        target, where, origin, hint = LOCAL, "ray.init", "", FRESH
    if target not in (LOCAL, "auto"):
        _check(target or recorded, where, hint)

    kwargs = {"include_dashboard": dashboard, "configure_logging": configure_logging}
    if dashboard:
        kwargs["dashboard_host"] = "127.0.0.1"
    try:
        ctx = ray.init(address=target, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(where, f"could not join Ray at {target or recorded} ({first}); {hint}") from None
    url = getattr(ctx, "dashboard_url", "") or ""
    shown = f"; dashboard http://{url}" if url else ""
    if target == LOCAL:
        return f"raygan: Ray: a new local instance, {_resources(free=False)}{shown}"
    at = (getattr(ctx, "address_info", None) or {}).get("gcs_address") or target or recorded
    tail = "" if address is not None else f"; {FRESH}"
    return f"raygan: Ray: joined the running instance at {at} ({origin}), {_resources(free=True)}{shown}{tail}"
