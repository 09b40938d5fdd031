"""Which Ray instance `raygan tune` runs on, said in one line before the first trial
(raygan/orchestrate/instance.py). Each case runs in its own process, on its own Ray temp
folder (RAY_TMPDIR: where `ray start` records its address), so that neither this test
process nor other Ray instances on the machine are touched."""
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")

MICRO = """
name: micro
method: {name: dcl, lambda1: {loguniform: [0.5, 5.0]}}
train: {steps: 2, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}
search: {num_samples: 1, max_concurrent: 1}
scaling: {cpus_per_worker: 0.5}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(ray_tmp: Path, own_home: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env["RAY_TMPDIR"] = str(ray_tmp)
    if own_home:  # the head's token goes to $HOME/.ray/auth_token, where its drivers look for it
        (ray_tmp / "home").mkdir(exist_ok=True)
        env["HOME"] = str(ray_tmp / "home")
    return env


def _lines(script: str, env: dict, timeout: float = 120) -> list[str]:
    """stdout lines of a Python script that prints connect()'s lines, in a fresh process."""
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout.strip().splitlines()


@pytest.fixture
def ray_head(ray_tmp):
    """A 1-CPU head started by `ray start --block` on its own temp folder; stopped by
    signalling that command (not `ray stop`, which stops every Ray instance of the machine)."""
    port = _free_port()
    env = _env(ray_tmp, own_home=True)
    head = subprocess.Popen([RAY, "start", "--head", "--num-cpus", "1", "--port", str(port),
                             "--include-dashboard=false", "--block"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = ray_tmp / "ray" / "ray_current_cluster"
    try:
        deadline = time.time() + 90
        while not (record.is_file() and record.read_text().strip()):
            assert head.poll() is None, "ray start exited"
            assert time.time() < deadline, "ray start did not record its address in time"
            time.sleep(0.3)
        yield env, port
    finally:
        if head.poll() is None:
            head.send_signal(signal.SIGTERM)  # ray start --block stops its processes on SIGTERM
            try:
                head.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(head.pid, signal.SIGKILL)
                head.wait()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_joins_the_ray_start_instance_by_default_and_local_starts_a_fresh_one(ray_head):
    """Which instance each address gives, said in one line; a new local instance says so with its
    resources and dashboard, and a second connect in the same process says the address is unused."""
    env, port = ray_head
    lines = _lines(f"""
        import os
        import ray
        from raygan.orchestrate.instance import connect
        for address in (None, "127.0.0.1:{port}", "local", "RAY_ADDRESS"):
            if address == "RAY_ADDRESS":
                os.environ["RAY_ADDRESS"], address = "127.0.0.1:{port}", None
            print(connect(address, dashboard=address == "local"))
            print("gcs", ray.get_runtime_context().gcs_address)
            if address == "local":  # already initialised: said, and the address not used
                print(connect("10.0.0.1:1", dashboard=True))
            ray.shutdown()
    """, env)
    assert len(lines) == 9, lines
    again = lines.pop(6)
    lines, gcs = lines[::2], [g.split()[-1] for g in lines[1::2]]
    joined = r"raygan: Ray: joined the running instance at \S+:{port} \({how}\), 1 CPU \(1 free now\), 0 GPUs \(0 free\)"
    assert re.fullmatch(joined.format(port=port, how="not started by this command: `ray start` or another job")
                        + "; --address local starts a fresh one", lines[0]), lines[0]
    assert re.fullmatch(joined.format(port=port, how="from --address"), lines[1]), lines[1]
    assert re.fullmatch(r"raygan: Ray: a new local instance, \d+ CPUs?, 0 GPUs; dashboard http://127\.0\.0\.1:\d+",
                        lines[2]), lines[2]
    assert re.fullmatch(r"raygan: Ray: already initialised in this process \(the instance at \S+:\d+\), "
                        r"\d+ CPUs? \([\d.]+ free now\), 0 GPUs \(0 free\); --address 10\.0\.0\.1:1 not used",
                        again), again
    assert re.fullmatch(joined.format(port=port, how="from RAY_ADDRESS, not started by this command")
                        + "; --address local starts a fresh one", lines[3]), lines[3]
    assert gcs[0] == gcs[1] == gcs[3] and gcs[0].endswith(f":{port}")
    assert not gcs[2].endswith(f":{port}")  # --address local: another instance, although one runs


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_recorded_instance_that_is_gone_is_one_line(ray_tmp):
    """`ray start` recorded an address and the instance died without `ray stop`: no hang."""
    record = ray_tmp / "ray" / "ray_current_cluster"
    record.parent.mkdir()
    record.write_text(f"127.0.0.1:{_free_port()}")
    lines = _lines("""
        from raygan.errors import UserError
        from raygan.orchestrate.instance import connect
        try:
            connect(None, dashboard=False)
        except UserError as e:
            print(e)
    """, _env(ray_tmp), timeout=60)
    assert len(lines) == 1 and lines[0].startswith(f"{record}: no Ray instance answers at 127.0.0.1:"), lines
    assert "--address local starts a fresh one" in lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("address, expected", [
    ("127.0.0.1:{port}", "no Ray instance answers at 127.0.0.1:{port} (Connection refused)"),
    ("nowhere", "expected a Ray address HOST:PORT (e.g. 10.0.0.5:6379), got 'nowhere'"),
])
def test_a_bad_address_is_one_line_and_writes_nothing(ray_tmp, tmp_path, address, expected):
    port = _free_port()  # nothing listens there
    address, expected = address.format(port=port), expected.format(port=port)
    space = tmp_path / "micro.yaml"
    space.write_text(textwrap.dedent(MICRO))
    out = tmp_path / "out"
    for cmd in (["tune", str(space)], ["train", str(space)]):
        argv = [*cmd, "--output", str(out), "--address", address]
        # the CLI in a fresh process, which then says whether torch or ray had been imported
        script = f"import sys; from raygan.cli import main; rc = main({argv!r}); print(sorted(m for m in " \
                 "('torch', 'ray') if m in sys.modules)); sys.exit(rc)"
        p = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=_env(ray_tmp), capture_output=True,
                           text=True, timeout=150)
        err = p.stderr.strip()
        assert p.returncode == 2, err[-3000:]
        assert err.count("\n") == 0 and err.startswith(f"raygan: error: --address {address}: {expected}"), err
        assert p.stdout.strip() == "[]"  # checked before the heavy imports: no traceback, and at once
    assert not (out / "micro").exists() or not any((out / "micro").iterdir())  # no results to refuse a rerun
