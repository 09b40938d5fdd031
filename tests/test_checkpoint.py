"""Rosinality-layout checkpoints load unchanged; bad files are one-line errors."""
import pickle

import pytest
import torch

from raygan.errors import UserError
from raygan.cache import save_atomic
from raygan.models.checkpoint import EMBEDDED, infer_generator_config, load_source
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
