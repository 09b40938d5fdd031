"""`raygan generate`: a checkpoint's grid (G_s over G_t), PNGs for FID tools, an interpolation strip;
seeded as `raygan eval`, RSSA sampled through its compression, bad inputs one line."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image

from raygan.cli import main
from raygan.data.synthetic import few_shot_target
from raygan.evaluation.sampling import eval_codes, generate
from raygan.methods.base import FewShotData
from raygan.methods.fewshot import rssa, tgan
from raygan.methods.fewshot.sections import TrainConfig
from raygan.metrics.published import to_uint8
from raygan.models.checkpoint import EMBEDDED, load_source

SOURCE = load_source("embedded")
FAST = TrainConfig(batch_size=2, r1_every=2, pl_every=2)


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).astype(int)


def run(*args) -> int:
    return main(["generate", *map(str, args)])


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """A raygan tune results folder with one trial: a TGAN state after 2 steps (G_t != G_s)."""
    exp = tmp_path_factory.mktemp("results") / "tiny"
    folder = exp / "_trial_0a1b2c3d_1_lr=0.002" / "checkpoint_000001"
    folder.mkdir(parents=True)
    (exp / "experiment.yaml").write_text("method: {name: tgan}\ntrain: {steps: 2, eval_samples: 20}\n")
    (folder.parent / "params.json").write_text("{}")
    m = tgan.Method(tgan.Config(), {"train": FAST}, FewShotData(SOURCE, few_shot_target(32, 4)), seed=0)
    for _ in range(2):
        m.step()
    torch.save(m.state_dict(), folder / "state.pt")
    return folder.parent


def test_a_trial_gives_the_source_over_the_adapted_grid_pngs_and_a_strip(trial, tmp_path):
    out = tmp_path / "look"
    assert run(trial, "--out", out, "--n", 4, "--pngs", 5, "--steps", 4) == 0
    grid = pixels(out / "grid.png")
    assert grid.shape == (2 * 33 + 1, 4 * 33 + 1, 3)            # two rows (G_s found via experiment.yaml), 4 columns
    assert not np.array_equal(grid[:34], grid[33:])             # G_t moved away from G_s
    files = sorted((out / "samples").iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)] and pixels(files[0]).shape == (32, 32, 3)
    strip = pixels(out / "interpolation.png")
    assert strip.shape == (34, 4 * 33 + 1, 3)
    frames = [strip[1:33, 1 + 33 * i:33 + 33 * i] for i in range(4)]
    step = np.abs(frames[1] - frames[0]).mean()
    assert 0 < step < np.abs(frames[3] - frames[0]).mean()      # a path: neighbours closer than the ends
    record = json.loads((out / "generate.json").read_text())
    assert record["grid"]["rows"] == ["G_s", "G_t"] and record["source"] == "embedded"


def test_pngs_are_the_images_raygan_eval_scores_and_the_seed_picks_them(trial, tmp_path):
    assert run(trial, "--out", tmp_path / "a", "--pngs", 3, "--steps", 0, "--source", "none") == 0
    assert run(trial, "--out", tmp_path / "b", "--pngs", 3, "--steps", 0, "--seed", 1) == 0
    state = torch.load(trial / "checkpoint_000001" / "state.pt", weights_only=True)
    g = SOURCE.generator()
    g.load_state_dict(state["g_ema"])
    expected = to_uint8(generate(g, eval_codes(8, g.style_dim, 0), 0, 50))  # raygan eval --seed 0's samples
    for i in range(3):
        assert np.array_equal(pixels(tmp_path / "a" / "samples" / f"{i:06d}.png"), expected[i])
    assert not np.array_equal(pixels(tmp_path / "b" / "samples" / "000000.png"), expected[0])
    assert pixels(tmp_path / "a" / "grid.png").shape[0] == 34   # --source none: G_t's row only
    assert not (tmp_path / "a" / "interpolation.png").exists()


def test_truncation_pulls_every_sample_towards_the_mean_style(tmp_path):
    spread = {}
    for psi in (1.0, 0.0):
        out = tmp_path / f"psi{psi}"
        assert run(EMBEDDED, "--out", out, "--pngs", 8, "--steps", 0, "--truncation", psi) == 0
        images = np.stack([pixels(f) for f in sorted((out / "samples").iterdir())]).astype(float)
        spread[psi] = images.std(0).mean()
    assert spread[0.0] < 0.2 * spread[1.0]


def test_rssa_is_drawn_through_the_compression_its_state_keeps(tmp_path):
    m = rssa.Method(dataclasses.replace(rssa.Config(), invert_steps=5, compression_alpha=[0, 0, 0, 0, 1, 1, 1, 1]),
                    {"train": FAST}, FewShotData(SOURCE, few_shot_target(32, 4)), seed=0)
    state = m.state_dict()
    torch.save(state, tmp_path / "state.pt")
    assert run(tmp_path / "state.pt", "--out", tmp_path / "out", "--pngs", 2, "--steps", 0) == 0
    g = SOURCE.generator()
    g.load_state_dict(state["g_ema"])
    z = eval_codes(8, g.style_dim, 0)
    compressed = to_uint8(generate(g, z, 0, 50, latent_map=rssa.Method.sampling_map(state, g)))
    plain = to_uint8(generate(g, z, 0, 50))
    got = pixels(tmp_path / "out" / "samples" / "000000.png")
    assert np.array_equal(got, compressed[0]) and not np.array_equal(got, plain[0])


@pytest.mark.parametrize("case", ["missing", "steps", "truncation", "label_to_image", "exists"])
def test_bad_inputs_are_one_line_errors_and_write_nothing(tmp_path, capsys, case):
    out = tmp_path / "out"
    target, extra, expected = EMBEDDED, [], ""
    if case == "missing":
        target, expected = tmp_path / "nope.pt", "no such file or folder"
    elif case == "steps":
        extra, expected = ["--steps", 1], "--steps: expected 0 (no interpolation) or at least 2"
    elif case == "truncation":
        extra, expected = ["--truncation", -0.5], "--truncation: expected ψ >= 0"
    elif case == "label_to_image":
        target, expected = tmp_path / "labels.pt", "a label-to-image checkpoint"
        torch.save({"g_config": {"n_classes": 3}}, target)
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        expected = "already exists"
    assert run(target, "--out", out, *extra) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("raygan: error:") and expected in err, err
    assert (not out.exists()) if case != "exists" else [p.name for p in out.iterdir()] == ["keep.txt"]


def test_a_replicated_trial_is_drawn_from_seed_0s_best_evaluation(trial, tmp_path, capsys):
    import shutil

    folder = tmp_path / "_trial_0f0f0f0f_1"
    for i in range(2):
        (folder / f"seed_{i}" / "best").mkdir(parents=True)
    shutil.copy(trial / "checkpoint_000001" / "state.pt", folder / "seed_0" / "best" / "state.pt")
    shutil.copy(EMBEDDED, folder / "seed_1" / "best" / "state.pt")
    assert run(folder, "--out", tmp_path / "out", "--pngs", 1, "--steps", 0, "--source", "none") == 0
    assert "seed 0's best evaluation" in capsys.readouterr().out
    record = json.loads((tmp_path / "out" / "generate.json").read_text())
    assert record["checkpoint"].endswith("seed_0/best/state.pt")
    expected = tmp_path / "direct"
    assert run(trial, "--out", expected, "--pngs", 1, "--steps", 0, "--source", "none") == 0
    assert np.array_equal(pixels(tmp_path / "out" / "samples" / "000000.png"),
                          pixels(expected / "samples" / "000000.png"))
