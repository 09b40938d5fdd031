"""`raygan dashboard`: errors before anything starts, and a real start bound to 127.0.0.1 only."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from raygan.cli import main
from raygan.dashboard import _running_cluster

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("busy", ["--port", "--tb-port"])
def test_port_in_use_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, busy):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ports = {"--port": _free_port(), "--tb-port": _free_port()}
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", ports[busy]))
        blocker.listen()
        code = main(["dashboard", str(tmp_path), "--address", "local",
                     "--port", str(ports["--port"]), "--tb-port", str(ports["--tb-port"])])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and err.startswith("raygan: error: ")
    assert f"port {ports[busy]} is in use" in err and f"pass {busy}" in err


def test_missing_results_dir(tmp_path, capsys):
    code = main(["dashboard", str(tmp_path / "nope"), "--address", "local"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert err.startswith(f"raygan: error: {tmp_path / 'nope'}: no such folder")


def test_address_choice(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.1.2.3:6379")
    assert _running_cluster("auto") == "10.1.2.3:6379"
    assert _running_cluster("local") is None
    assert _running_cluster("http://127.0.0.1:8265") == "http://127.0.0.1:8265"


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_serves_both_on_loopback_only_and_stops_on_sigint_even_when_started_with_it_ignored(tmp_path, ray_tmp):
    """A real start; then Ctrl-C stops it although it was started as a script's background job
    is, which inherits SIGINT as ignored (and Python keeps it ignored)."""
    results, home = tmp_path / "results", tmp_path / "home"
    results.mkdir()
    home.mkdir()
    port, tb_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_tmp))  # the new head's token goes to $HOME/.ray/auth_token
    proc = subprocess.Popen(
        [sys.executable, "-m", "raygan.cli", "dashboard", str(results), "--address", "local",
         "--port", str(port), "--tb-port", str(tb_port), "--run-for", "90"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "to run searches" in line:
                break
        out = "".join(lines)
        assert f"Ray dashboard  http://127.0.0.1:{port} " in out, out
        assert f"TensorBoard    http://127.0.0.1:{tb_port} " in out, out
        assert "ray get-auth-token" in out and "Authorization: Bearer <token>" in out

        dash = f"http://127.0.0.1:{port}"
        assert _status(f"http://127.0.0.1:{tb_port}/") == 200
        token = (home / ".ray" / "auth_token").read_text().strip()
        assert _status(f"{dash}/api/version") == 401
        assert _status(f"{dash}/api/version", {"Authorization": "Bearer wrong"}) == 403
        assert _status(f"{dash}/api/version", {"Authorization": f"Bearer {token}"}) == 200

        node_ip = re.search(r"RAY_ADDRESS=([0-9.]+):\d+", out).group(1)
        if not node_ip.startswith("127."):
            for p in (port, tb_port):
                with pytest.raises(OSError):
                    socket.create_connection((node_ip, p), timeout=3).close()

        # The printed line reaches this head: a second `raygan dashboard` points to it.
        joined = dict(env, **dict(kv.split("=", 1) for kv in
                                  re.search(r"(RAY_ADDRESS=\S+ RAY_AUTH_MODE=token)", out).group(1).split()))
        second = subprocess.run(
            [sys.executable, "-m", "raygan.cli", "dashboard", str(results), "--tb-port", str(_free_port()),
             "--run-for", "0"], cwd=REPO, env=joined, capture_output=True, text=True, timeout=90)
        assert second.returncode == 0, second.stderr[-2000:]
        assert f"Ray dashboard  {dash}   (running cluster)" in second.stdout, second.stdout
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0
    time.sleep(1)
    with pytest.raises(OSError):  # both servers are gone
        socket.create_connection(("127.0.0.1", tb_port), timeout=3).close()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_stops_on_sigterm_through_its_clean_up(tmp_path, ray_tmp):
    """SIGTERM (as `kill` sends) stops it as Ctrl-C does (the test above)."""
    results = tmp_path / "results"
    results.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(HOME=str(tmp_path), RAY_TMPDIR=str(ray_tmp))
    proc = subprocess.Popen(
        [sys.executable, "-m", "raygan.cli", "dashboard", str(results), "--address", "local",
         "--port", str(_free_port()), "--tb-port", str(_free_port()), "--run-for", "90"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if "to run searches" in line:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
