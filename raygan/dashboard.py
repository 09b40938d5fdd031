"""`raygan dashboard`: the Ray dashboard and TensorBoard for a results folder, on 127.0.0.1.

Points to the dashboard of a running Ray cluster (RAY_ADDRESS, or one started on
this machine with `ray start`), or starts a local Ray head with its dashboard,
and serves TensorBoard on the results folder until Ctrl-C.
"""
from __future__ import annotations

import importlib.util
import json
import os
import socket
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from raygan.errors import UserError

LOOPBACK = "127.0.0.1"


def check_port_free(host: str, port: int, option: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            raise UserError(f"{host}:{port}", f"port {port} is in use (another dashboard or TensorBoard?): "
                                              f"pass {option} with a free port") from None


def _answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True  # it answered, if only to say 401
    except OSError:
        return False


def _auth_mode(dashboard_url: str) -> str:
    """'token' or 'disabled', as the dashboard reports it (a public endpoint)."""
    try:
        with urllib.request.urlopen(f"{dashboard_url}/api/authentication_mode", timeout=5) as r:
            return json.load(r).get("authentication_mode", "unknown")
    except (OSError, ValueError):
        return "unknown"


def _running_cluster(address: str) -> str | None:
    """Bootstrap address of the cluster to show, or None to start a local head."""
    if address == "local":
        return None
    if address != "auto":
        return address
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:  # a cluster running on this machine (`ray start`); private API
        from ray._private.services import find_gcs_addresses

        # "auto" lets ray.init pick it and take up its token authentication.
        return "auto" if find_gcs_addresses() else None
    except Exception:
        return None


def _connect(address: str) -> tuple[str, str]:
    """(dashboard URL, GCS address) of a running cluster."""
    if address.startswith(("http://", "https://")):
        return address.rstrip("/"), ""
    import ray

    try:
        ctx = ray.init(address=address, configure_logging=False, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UserError(address, f"no Ray cluster answers there ({str(e).splitlines()[0]}); "
                                 "pass --address local to start one") from None
    try:
        url = ctx.dashboard_url
        if not url:
            raise UserError(address, "this Ray cluster runs without a dashboard (install ray[default] on it)")
        return f"http://{url}", ctx.address_info["gcs_address"]
    finally:
        ray.shutdown()  # only this driver disconnects; the cluster keeps running


def _start_tensorboard(logdir: Path, host: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", host, "--port", str(port)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_tensorboard(proc: subprocess.Popen, logdir: Path, host: str, port: int) -> None:
    deadline = time.time() + 60
    while not _answers(f"http://{host}:{port}/"):
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            tail = (proc.stderr.read() or "").strip().splitlines()[-1:] or ["no output"]
            raise UserError(str(logdir), f"TensorBoard did not start: {tail[0]}")
        time.sleep(0.5)


def token_help(mode: str) -> list[str]:
    if mode == "token":
        return [
            "the dashboard asks for a token: paste the output of `ray get-auth-token` (it reads "
            "~/.ray/auth_token); the browser keeps it in a cookie",
            "REST calls send it as 'Authorization: Bearer <token>'; the ray CLI and SDK do so "
            "themselves when RAY_AUTH_MODE=token is set",
        ]
    if mode == "disabled":
        return ["token authentication is off on this cluster: whoever reaches the dashboard port can run "
                "code on it; keep it on 127.0.0.1 (or an SSH tunnel)"]
    return ["could not read the dashboard's authentication mode"]


def _stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and ``kill`` (SIGTERM) end ``serve`` through its clean-up (TensorBoard
    and an owned Ray head stopped), also when it was started with SIGINT ignored, as a
    script's background job is (the shell sets SIGINT to ignored, and Python keeps it)."""
    if threading.current_thread() is not threading.main_thread():
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, interrupt)


def serve(results_dir: str, port: int = 8265, tb_port: int = 6006, address: str = "auto",
          host: str = LOOPBACK, run_for: float | None = None, echo=print) -> int:
    """Show the dashboard and TensorBoard; blocks until Ctrl-C (or `run_for` seconds)."""
    logdir = Path(results_dir).expanduser()
    if not logdir.is_dir():
        raise UserError(results_dir, "no such folder: expected a results folder (output.dir of "
                                     "`raygan tune`, e.g. ./raygan_results)")
    if host != LOOPBACK:
        print(f"raygan: warning: serving on {host}: anyone who can reach this address can see the runs"
              " and, through the Ray dashboard, run code on this machine", file=sys.stderr)
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    if tensorboard:
        check_port_free(host, tb_port, "--tb-port")
    cluster = _running_cluster(address)
    if cluster is None:
        check_port_free(host, port, "--port")

    import ray

    _stop_on_signals()
    owned = cluster is None
    tb = _start_tensorboard(logdir, host, tb_port) if tensorboard else None  # starts while Ray does
    try:
        if owned:
            ctx = ray.init(include_dashboard=True, dashboard_host=host, dashboard_port=port,
                           configure_logging=False, log_to_driver=False)
            dashboard, gcs = f"http://{ctx.dashboard_url}", ctx.address_info["gcs_address"]
        else:
            dashboard, gcs = _connect(cluster)
        _stop_on_signals()  # again: ray.init installs its own SIGTERM handler (it exits without clean-up)
        if tb:
            _wait_for_tensorboard(tb, logdir, host, tb_port)
        mode = _auth_mode(dashboard)
        where = "local Ray head started here; Ctrl-C stops it" if owned else "running cluster"
        echo(f"raygan: Ray dashboard  {dashboard}   ({where})")
        if tb:
            echo(f"raygan: TensorBoard    http://{host}:{tb_port}   (logdir {logdir})")
        else:
            echo("raygan: TensorBoard is not installed: pip install 'tensorboard>=2.16' (or raygan[test])")
        for line in token_help(mode):
            echo(f"raygan: {line}")
        if owned:
            env = f"RAY_ADDRESS={gcs}" + (" RAY_AUTH_MODE=token" if mode == "token" else "")
            echo(f"raygan: to run searches on this Ray instance: {env} raygan tune <experiment.yaml>")
        if not owned and tb is None:
            return 0
        deadline = None if run_for is None else time.time() + run_for
        while deadline is None or time.time() < deadline:
            if tb and tb.poll() is not None:
                raise UserError(str(logdir), f"TensorBoard exited (code {tb.returncode})")
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if tb and tb.poll() is None:
            tb.terminate()
            try:
                tb.wait(10)
            except subprocess.TimeoutExpired:
                tb.kill()
        if owned and ray.is_initialized():
            ray.shutdown()
    return 0
