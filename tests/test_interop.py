"""Interop with the rosinality StyleGAN2 port's files at full size (256 px, channel_multiplier 2).

The expected layout is written out by hand from METHODS.md ("Checkpoint interop"), not read off
raygan's modules; raygan's Generator/Discriminator only supply randomly initialised tensors.
"""
import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from raygan.train.loop import build_method
from raygan.models.checkpoint import load_file, load_source
from raygan.models.stylegan2 import Discriminator, Generator
from raygan.search_space import load_experiment

REPO = Path(__file__).resolve().parents[1]
TRAINING_KEYS = {"g", "d", "g_ema", "g_optim", "d_optim", "args"}
# Tensors where the file's "g" differs from its "g_ema" (shared storage elsewhere keeps the file small).
G_DIFFERS = ["style.1.weight", "conv1.conv.weight", "convs.11.conv.weight", "to_rgbs.5.conv.weight"]


def port_args(**over):
    """The port's train.py options as its checkpoints store them (an argparse.Namespace)."""
    args = dict(path="lmdb/ffhq", arch="stylegan2", iter=800000, batch=16, n_sample=64, size=256, r1=10.0,
                path_regularize=2.0, path_batch_shrink=2, d_reg_every=16, g_reg_every=4, mixing=0.9,
                ckpt=None, lr=0.002, channel_multiplier=2, wandb=False, local_rank=0, augment=False,
                augment_p=0.0, ada_target=0.6, ada_length=500000, ada_every=256, latent=512, n_mlp=8,
                start_iter=0, distributed=False)
    args.update(over)
    return argparse.Namespace(**args)


def adam_state(params, reg_every):
    ratio = reg_every / (reg_every + 1)  # the port's lazy-regularisation correction
    return torch.optim.Adam(params, lr=0.002 * ratio, betas=(0.0 ** ratio, 0.99 ** ratio)).state_dict()


def expected_generator_keys():
    """Generator(256, style_dim=512, n_mlp=8, channel_multiplier=2), key for key, from the spec."""
    keys = [f"style.{i}.{p}" for i in range(1, 9) for p in ("weight", "bias")]  # style.0 is PixelNorm
    keys += ["input.input"]
    keys += ["conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias",
             "conv1.noise.weight", "conv1.activate.bias"]
    keys += ["to_rgb1.bias", "to_rgb1.conv.weight", "to_rgb1.conv.modulation.weight",
             "to_rgb1.conv.modulation.bias"]
    for i in range(12):  # 8 -> 256 px: an upsampling conv (even) and a plain one (odd) per resolution
        keys += [f"convs.{i}.conv.weight", f"convs.{i}.conv.modulation.weight",
                 f"convs.{i}.conv.modulation.bias", f"convs.{i}.noise.weight", f"convs.{i}.activate.bias"]
        if i % 2 == 0:
            keys.append(f"convs.{i}.conv.blur.kernel")
    for k in range(6):
        keys += [f"to_rgbs.{k}.bias", f"to_rgbs.{k}.conv.weight", f"to_rgbs.{k}.conv.modulation.weight",
                 f"to_rgbs.{k}.conv.modulation.bias", f"to_rgbs.{k}.upsample.kernel"]
    keys += [f"noises.noise_{k}" for k in range(13)]
    return keys


def expected_discriminator_keys():
    """Discriminator(256, channel_multiplier=2), key for key, from the spec."""
    keys = ["convs.0.0.weight", "convs.0.1.bias"]
    for k in range(1, 7):  # ResBlocks 256 -> 4 px
        keys += [f"convs.{k}.conv1.0.weight", f"convs.{k}.conv1.1.bias", f"convs.{k}.conv2.0.kernel",
                 f"convs.{k}.conv2.1.weight", f"convs.{k}.conv2.2.bias", f"convs.{k}.skip.0.kernel",
                 f"convs.{k}.skip.1.weight"]
    keys += ["final_conv.0.weight", "final_conv.1.bias"]
    keys += [f"final_linear.{i}.{p}" for i in (0, 1) for p in ("weight", "bias")]
    return keys


@pytest.fixture(scope="module")
def port256(tmp_path_factory):
    """A 256-px training checkpoint in the port's layout; returns (path, the dict that was saved)."""
    torch.manual_seed(0)
    g, d = Generator(256, style_dim=512, n_mlp=8, channel_multiplier=2), Discriminator(256, channel_multiplier=2)
    g_ema = g.state_dict()
    state = {
        "g": {k: v + 1 if k in G_DIFFERS else v for k, v in g_ema.items()},
        "d": d.state_dict(),
        "g_ema": g_ema,
        "g_optim": adam_state(g.parameters(), 4),
        "d_optim": adam_state(d.parameters(), 16),
        "args": port_args(),
    }
    path = tmp_path_factory.mktemp("port") / "100000.pt"
    torch.save(state, path)
    return path, state


def test_256px_training_checkpoint_has_the_ports_layout_key_for_key(port256):
    path, _ = port256
    state = load_file(path)
    assert set(state) == TRAINING_KEYS
    exp_g, exp_d = expected_generator_keys(), expected_discriminator_keys()
    assert len(exp_g) == len(set(exp_g)) == 16 + 1 + 5 + 4 + 12 * 5 + 6 + 6 * 5 + 13
    assert len(exp_d) == len(set(exp_d)) == 2 + 6 * 7 + 2 + 4
    for name in ("g_ema", "g"):
        assert sorted(state[name]) == sorted(exp_g), set(state[name]) ^ set(exp_g)
    assert sorted(state["d"]) == sorted(exp_d), set(state["d"]) ^ set(exp_d)

    g, d = state["g_ema"], state["d"]
    assert g["input.input"].shape == (1, 512, 4, 4)
    assert g["style.8.weight"].shape == (512, 512)
    assert g["convs.11.conv.weight"].shape == (1, 128, 128, 3, 3)  # 256 px: 64 * channel_multiplier
    assert g["to_rgbs.5.conv.weight"].shape == (1, 3, 128, 1, 1)
    assert d["convs.0.0.weight"].shape == (128, 3, 1, 1)
    assert d["final_conv.0.weight"].shape == (512, 513, 3, 3)  # 512 + the minibatch-stddev channel
    assert d["final_linear.0.weight"].shape == (512, 512 * 4 * 4)

    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    blur = torch.outer(k1, k1) / torch.outer(k1, k1).sum()
    up_kernels = [f"convs.{i}.conv.blur.kernel" for i in range(0, 12, 2)] + \
                 [f"to_rgbs.{k}.upsample.kernel" for k in range(6)]
    for key in up_kernels:
        assert torch.equal(g[key], blur * 4), key
    for k in range(1, 7):
        for key in (f"convs.{k}.conv2.0.kernel", f"convs.{k}.skip.0.kernel"):
            assert d[key].shape == (4, 4) and torch.equal(d[key], blur), key
            assert d[key].sum().item() == pytest.approx(1.0)
    sizes = [4, 8, 8, 16, 16, 32, 32, 64, 64, 128, 128, 256, 256]
    for k, r in enumerate(sizes):
        assert g[f"noises.noise_{k}"].shape == (1, 1, r, r), k


def test_argparse_namespace_and_optimiser_state_load_safely(tmp_path):
    g, d = Generator(32, style_dim=32, n_mlp=2, channel_max=32), Discriminator(32, channel_max=32)
    g_optim = torch.optim.Adam(g.parameters(), lr=0.002, betas=(0.0, 0.99))
    d_optim = torch.optim.Adam(d.parameters(), lr=0.002, betas=(0.0, 0.99))
    for p in [*g.parameters(), *d.parameters()]:
        p.grad = torch.ones_like(p)
    g_optim.step(), d_optim.step()  # optimiser state with tensors (exp_avg, exp_avg_sq, step)
    path = tmp_path / "010000.pt"
    torch.save({"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict(), "g_optim": g_optim.state_dict(),
                "d_optim": d_optim.state_dict(), "args": port_args(size=32, ckpt="checkpoint/005000.pt"),
                "ada_aug_p": 0.0}, path)
    state = load_file(path)
    assert isinstance(state["args"], argparse.Namespace)
    assert state["args"].size == 32 and state["args"].ckpt == "checkpoint/005000.pt" and state["args"].r1 == 10.0
    assert torch.equal(state["g_optim"]["state"][0]["exp_avg"], g_optim.state_dict()["state"][0]["exp_avg"])
    src = load_source(str(path))
    assert src.size == 32
    assert torch.equal(src.discriminator().final_linear[1].weight, d.final_linear[1].weight)


def write_experiment(tmp_path, checkpoint, name="interop"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: {name}
        method: {{name: tgan}}
        model: {{checkpoint: {json.dumps(str(checkpoint))}}}
        train: {{steps: 1, batch_size: 2, eval_samples: 20, torch_threads: 1}}
        """))
    return path


def test_256px_port_checkpoint_through_the_experiment_yaml(tmp_path, port256):
    ckpt, saved = port256
    exp = load_experiment(write_experiment(tmp_path, ckpt))
    assert exp.trial_config["model"]["checkpoint"] == str(ckpt) and not exp.space
    t, method, source = build_method(exp.trial_config)
    assert source.g_config == dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=2, channel_max=512)
    for g in (method.g_source, method.g):
        assert g.size == 256 and g.n_latent == 14
        sd = g.state_dict()
        assert sd.keys() == saved["g_ema"].keys()
        for key in [*G_DIFFERS, "input.input", "convs.0.conv.blur.kernel", "noises.noise_12"]:
            assert torch.equal(sd[key], saved["g_ema"][key]), key  # g_ema, not g
    d_sd = method.d.state_dict()
    assert d_sd.keys() == saved["d"].keys()
    assert all(torch.equal(d_sd[k], v) for k, v in saved["d"].items())
    assert method.shots.shape[-2:] == (256, 256)
    torch.manual_seed(0)
    with torch.no_grad():
        img, _ = method.g([torch.randn(1, 512)])
    assert img.shape == (1, 3, 256, 256) and torch.isfinite(img).all()


@pytest.mark.parametrize("case", ["missing", "truncated", "missing_key", "wrong_shape"])
def test_bad_checkpoint_via_cli_is_one_line_exit_2(tmp_path, port256, case):
    ckpt, saved = port256
    bad = tmp_path / f"{case}.pt"
    if case == "missing":
        bad = tmp_path / "nope" / "100000.pt"
    elif case == "truncated":
        with open(ckpt, "rb") as f:
            bad.write_bytes(f.read(1_000_000))
    elif case == "missing_key":
        g_ema = {k: v for k, v in saved["g_ema"].items() if k != "convs.5.noise.weight"}
        torch.save({"g_ema": g_ema, "d": saved["d"], "args": port_args()}, bad)
    else:
        g_ema = dict(saved["g_ema"], **{"to_rgbs.2.conv.weight": torch.zeros(1, 3, 256, 1, 1)})  # 512 in
        torch.save({"g_ema": g_ema, "d": saved["d"], "args": port_args()}, bad)
    cfg = write_experiment(tmp_path, bad)
    proc = subprocess.run([sys.executable, "-m", "raygan.cli", "train", str(cfg), "--local",
                           "--output", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip()
    assert proc.returncode == 2, (proc.returncode, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(f"raygan: error: {bad}: "), err
    assert not (tmp_path / "out" / "interop" / "checkpoint.pt").exists()
