"""#18 where CUDA is present (`pytest -m gpu`; benchmarks/gpu_check.sh runs them): a bf16 adaptation
step at 256 px against fp32, the all-reduce over NCCL between two processes, and a one-worker GPU
trial through `raygan tune`. Skipped without CUDA."""
import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

REPO = Path(__file__).resolve().parents[1]


def config_f_source():
    """A randomly initialised 256-px StyleGAN2 with config-f widths (the step does not depend on the weights)."""
    from raygan.models.checkpoint import random_source

    return random_source(dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512))


@pytest.mark.timeout(300)
def test_a_bf16_adaptation_step_at_256px_matches_fp32():
    from raygan.methods.base import FewShotData
    from raygan.methods.fewshot import tgan
    from raygan.methods.fewshot.sections import TrainConfig

    source = config_f_source()
    shots = torch.rand(8, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    z = torch.randn(4, 512, generator=torch.Generator().manual_seed(2)).cuda()
    runs = {}
    for precision in ("fp32", "bf16"):
        train = TrainConfig(batch_size=8, precision=precision, channels_last=precision == "bf16", modconv="unfused")
        m = tgan.Method(tgan.Config(), {"train": train}, FewShotData(source, shots), device="cuda", seed=0)
        seen = []
        m.d.convs[1].register_forward_hook(lambda mod, i, out: seen.append(out.dtype))
        torch.manual_seed(3)
        logs = {k: float(v) for k, v in m.step().items()}  # step 0: R1 and path length included
        with torch.no_grad():
            image = m.g([z], randomize_noise=False)[0].float()
        runs[precision] = logs, image, seen
    (l32, img32, seen32), (l16, img16, seen16) = runs["fp32"], runs["bf16"]
    # D's passes: fakes and reals of the D step, R1's (fp32), the G step's fakes
    assert seen32 == [torch.float32] * 4 and seen16 == [torch.bfloat16, torch.bfloat16, torch.float32, torch.bfloat16]
    # The regularisers run in fp32 on the same weights in both runs: nearly equal. The adversarial
    # terms come from bf16 passes: within a few percent.
    assert l16["loss/r1"] == pytest.approx(l32["loss/r1"], rel=1e-2)
    assert l16["loss/path_length"] == pytest.approx(l32["loss/path_length"], rel=1e-2)
    for k in ("loss/d_adv", "loss/g_adv", "loss/g_total"):
        assert l16[k] == pytest.approx(l32[k], rel=5e-2, abs=1e-3), k
    # After one Adam step (every weight moves by about ±lr) G's images still agree.
    assert (img16 - img32).norm() / img32.norm() < 0.05


NCCL_SCRIPT = """
import os, torch, torch.distributed as dist
from raygan.orchestrate.train import all_reduce_mean
rank = int(os.environ["RANK"])
torch.cuda.set_device(rank)
dist.init_process_group("nccl")
a = torch.nn.Parameter(torch.zeros(3, device="cuda"))
b = torch.nn.Parameter(torch.zeros(2, 2, device="cuda"))
a.grad = torch.full((3,), float(rank + 1), device="cuda")  # b has no gradient on either rank
all_reduce_mean([a, b])
print(f"rank {rank}: {a.grad.tolist()} {b.grad.flatten().tolist()} {a.grad.device}", flush=True)
dist.destroy_process_group()
"""


@pytest.mark.timeout(180)
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_the_all_reduce_of_data_parallelism_runs_over_nccl_between_two_processes(tmp_path):
    script = tmp_path / "nccl_all_reduce.py"
    script.write_text(NCCL_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)],
                       capture_output=True, text=True, env=env, timeout=170)
    assert p.returncode == 0, p.stderr[-2000:]
    for rank in (0, 1):
        assert f"rank {rank}: [1.5, 1.5, 1.5] [0.0, 0.0, 0.0, 0.0] cuda:{rank}" in p.stdout


@pytest.mark.timeout(400)
def test_a_one_worker_gpu_trial_through_raygan_tune(tmp_path, monkeypatch):
    from raygan.cli import main

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "gpu.yaml").write_text(textwrap.dedent("""
        name: gpu
        method: {name: tgan}
        train: {steps: 4, batch_size: 4, eval_every: 2, eval_samples: 20, lr: {grid: [0.002]}}
        search: {num_samples: 1, max_concurrent: 1}
        scaling: {use_gpu: true, cpus_per_worker: 1.0}
    """))
    assert main(["tune", str(tmp_path / "gpu.yaml"), "--output", str(tmp_path / "out")]) == 0
    exp_dir = tmp_path / "out" / "gpu"
    (row,) = list(csv.DictReader(open(exp_dir / "results.csv")))
    assert row["status"] == "ok" and int(row["step"]) in (2, 4)
    states = sorted(exp_dir.rglob("state.pt"))
    assert states
    state = torch.load(states[-1], weights_only=True)  # no map_location: tensors come back where they were
    assert state["mean_path"].device.type == "cuda" and state["step"] in (2, 4)
