"""Rosinality-layout checkpoints load unchanged; bad files are one-line errors; a checkpoint is
written atomically (a kill during a write never leaves a half file)."""
import pickle
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from raygan.errors import UserError
from raygan.cache import save_atomic
from raygan.models.checkpoint import EMBEDDED, infer_generator_config, load_file, load_source
from raygan.models.stylegan2 import Discriminator, Generator


def test_converted_rosinality_file_loads_key_for_key(tmp_path):
    torch.manual_seed(0)
    g = Generator(64, style_dim=64, n_mlp=3, channel_multiplier=1, channel_max=128)
    path = tmp_path / "converted.pt"
    torch.save({"g_ema": g.state_dict(), "latent_avg": torch.zeros(64)}, path)  # no raygan metadata
    src = load_source(str(path))
    assert {k: src.g_config[k] for k in ("size", "style_dim", "n_mlp")} == dict(size=64, style_dim=64, n_mlp=3)
    g2 = src.generator()  # (channel_multiplier, channel_max) may differ where both give the same widths
    assert g2.state_dict().keys() == g.state_dict().keys()
    z = torch.randn(2, 64)
    noise = g.make_noise()
    assert torch.allclose(g([z], noise=noise)[0], g2([z], noise=noise)[0])


def test_infer_config_for_full_size_port_generator():
    g = Generator(256, channel_multiplier=2)
    assert infer_generator_config(g.state_dict()) == dict(
        size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)


def test_training_checkpoint_with_discriminator(tmp_path):
    g, d = Generator(32, style_dim=32, n_mlp=2, channel_max=32), Discriminator(32, channel_max=32)
    path = tmp_path / "train.pt"
    save_atomic({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict()}, path)
    src = load_source(str(path))
    assert torch.equal(src.discriminator().final_linear[1].weight, d.final_linear[1].weight)


def test_embedded_checkpoint_is_present_and_loads():
    src = load_source("embedded")
    assert src.path == str(EMBEDDED) and src.size == 32 and src.latent_avg is not None


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("case", ["missing", "truncated", "pickle", "not_stylegan", "wrong_shapes", "text"])
def test_bad_checkpoints_are_user_errors(tmp_path, case):
    path = tmp_path / f"{case}.pt"
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=32)
    if case == "truncated":
        torch.save({"g_ema": g.state_dict()}, path)
        path.write_bytes(path.read_bytes()[:5000])
    elif case == "pickle":
        path.write_bytes(pickle.dumps({"g_ema": Payload()}))
    elif case == "not_stylegan":
        torch.save({"model": torch.zeros(3)}, path)
    elif case == "wrong_shapes":
        sd = g.state_dict()
        sd["conv1.conv.weight"] = torch.zeros(1, 3, 3, 3, 3)
        torch.save({"g_ema": sd}, path)
    elif case == "text":
        path.write_text("hello")
    with pytest.raises(UserError) as e:
        load_source(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# --- atomic checkpoints (no Ray) ----------------------------------------------------------------

WRITER = """
import sys, torch
from raygan.cache import save_atomic
big = {"g_ema": {f"w{i}": torch.full((1024, 1024), float(i)) for i in range(8)}}  # 32 MiB
print("ready", flush=True)
n = 0
while True:
    n += 1
    save_atomic({**big, "step": n}, sys.argv[1])
"""


def test_a_kill_during_a_checkpoint_write_never_leaves_a_half_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    rng = random.Random(0)
    for attempt in range(4):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE, text=True)
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 1.5))  # somewhere inside one of the writes (each takes ~0.1-0.5 s)
        writer.send_signal(signal.SIGKILL)
        writer.wait()
        if target.exists():  # the last complete write, loaded in full
            state = load_file(target)
            assert state["step"] >= 1 and len(state["g_ema"]) == 8
            assert all(torch.equal(state["g_ema"][f"w{i}"], torch.full((1024, 1024), float(i))) for i in range(8))
        # any leftover is a hidden temporary file, never the checkpoint's name
        assert all(p.name.startswith(".checkpoint.pt.") for p in tmp_path.iterdir() if p != target)
    assert target.exists()  # at least one write completed in all that time

    # a checkpoint cut short (what a non-atomic write would leave) is a one-line error
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt, truncated") as e:
        load_file(target)
    assert "\n" not in str(e.value) and str(target) in str(e.value)
