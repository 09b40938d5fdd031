"""`raygan pretrain FOLDER` end to end: 2 Ray Train workers on a folder of images (in their own
processes, on their own Ray temp folder), the driver killed (SIGKILL) after a checkpoint,
`--resume` continuing from it to the end; the exported source then adapts to a 10-image
folder target (`raygan train --local`) and `raygan generate` draws it."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from raygan.cli import main
from raygan.data.painted import write_scenes
from raygan.models.checkpoint import load_source
from raygan.orchestrate.diagnostics import TRACE_ENV

STEPS = 30
EVERY = 3
ARGS = ["--size", "32", "--style-dim", "32", "--n-mlp", "2", "--channel-max", "32", "--channel-multiplier", "1",
        "--batch", "2", "--workers", "2", "--cpus-per-worker", "0.5", "--eval-every", str(EVERY), "--eval-samples", "20",
        "--steps", str(STEPS)]


def _traces(out):
    return [[json.loads(line) for line in open(out / "log" / "worker_trace" / f"rank{r}.jsonl")] for r in (0, 1)]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_pretrain_on_two_workers_resumes_after_a_kill_and_its_source_adapts(tmp_path, ray_tmp, capsys):
    images = write_scenes(tmp_path / "images", 32, 0, "ink")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_TMPDIR=str(ray_tmp), **{TRACE_ENV: "1"})
    cmd = [sys.executable, "-m", "raygan.cli", "pretrain", str(images), "--out", str(out)]
    driver = subprocess.Popen(cmd + ARGS, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    # Killed as Train's first checkpoint (step EVERY) appears: a SIGKILL while Train rewrites its
    # record of the run (checkpoint_manager_snapshot.json, not written atomically) leaves it
    # unreadable and the resume fails (seen once, killing later; see the session-17 note).
    while not list((out / "run").glob("checkpoint_*")):
        assert driver.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline, "no checkpoint in time"
        time.sleep(0.2)
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait()
    assert not (out / "source.pt").exists()

    resumed = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint of step" in resumed.stdout + resumed.stderr
    saved = torch.load(out / "source.pt", weights_only=True)
    assert set(saved) == {"g", "d", "g_ema", "latent_avg", "g_config", "d_config"}
    assert (out / "source.png").stat().st_size > 0

    # two ranks, each run: the second started from a checkpoint of the first and trained to the end
    for rank in _traces(out):
        starts = [e for e in rank if e["event"] == "start"]
        assert len(starts) == 2 and starts[0]["restored_step"] is None and all(s["world"] == 2 for s in starts)
        assert EVERY <= starts[1]["restored_step"] < STEPS
        syncs_after = [e for e in rank[rank.index(starts[1]):] if e["event"] == "sync"]
        assert len(syncs_after) == 2 * (STEPS - starts[1]["restored_step"])  # D and G each step, none redone
    a, b = ([e["params"] for e in r if e["event"] == "sync"] for r in _traces(out))
    assert a == b  # the ranks' parameters never drift apart (gradients averaged)

    # the source is what every command reads: it adapts to a folder target, and generate draws it
    target = write_scenes(tmp_path / "target", 10, 1, "filled")
    space = tmp_path / "adapt.yaml"
    space.write_text(textwrap.dedent(f"""
        name: adapt
        method: {{name: tgan}}
        data: {{target: {target}, shots: 10}}
        model: {{checkpoint: {out / 'source.pt'}}}
        train: {{steps: 4, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}}
        eval: {{metrics: [scs]}}
        search: {{metric: scs_sobel, mode: max}}
        """))
    capsys.readouterr()
    assert main(["train", str(space), "--local", "--output", str(tmp_path / "adapted")]) == 0
    assert "step=2 " in (progress := capsys.readouterr().out) and " eta=" in progress  # with an ETA till the end
    adapted = tmp_path / "adapted" / "adapt" / "checkpoint.pt"
    assert torch.load(adapted, weights_only=True)["step"] == 4
    assert load_source(str(adapted)).size == 32
    assert main(["generate", str(adapted), "--source", str(out / "source.pt"), "--n", "4", "--pngs", "0",
                 "--steps", "0", "--out", str(tmp_path / "drawn")]) == 0
    assert (tmp_path / "drawn" / "grid.png").stat().st_size > 0
    capsys.readouterr()
