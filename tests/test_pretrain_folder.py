"""`raygan pretrain FOLDER` before Ray: its one-line errors, the experiment it writes, the
stylegan2 method's state, and the exported source (the run through Ray Train, killed and
resumed: test_pretrain_e2e.py)."""
import pytest
import torch
import yaml

from raygan.cli import main
from raygan.data.painted import write_scenes
from raygan.models.checkpoint import load_source
from raygan.orchestrate import pretrain as P
from raygan.search_space import load_experiment
from raygan.train.loop import build_method

TINY = ["--size", "32", "--style-dim", "32", "--n-mlp", "2", "--channel-max", "32", "--channel-multiplier", "1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_scenes(tmp_path_factory.mktemp("pretrain") / "images", 12, 0, "ink")


def _opts(images, out, **kw):
    return P.PretrainOptions(folder=str(images), out=str(out), size=32, style_dim=32, n_mlp=2, channel_multiplier=1,
                             channel_max=32, batch=2, steps=4, eval_every=2, eval_samples=20, **kw)


@pytest.mark.parametrize("case", ["no_folder", "truncated", "size", "no_out", "resume_nothing", "run_exists",
                                  "not_empty", "resume_fewer_steps", "resume_broken_yaml", "eval_samples", "style_dim"])
def test_bad_input_is_one_line_exit_2_nothing_written(case, images, tmp_path, capsys):
    out = tmp_path / "out"
    folder, extra = str(images), []
    if case == "no_folder":
        folder = str(tmp_path / "nope")
    elif case == "truncated":
        bad = tmp_path / "bad"
        bad.mkdir()
        for f in list(images.iterdir())[:3]:
            (bad / f.name).write_bytes(f.read_bytes())
        (bad / "cut.png").write_bytes((images / "ink_000.png").read_bytes()[:100])
        folder = str(bad)
    elif case == "size":
        extra = ["--size", "48"]
    elif case == "eval_samples":
        extra = ["--eval-samples", "5"]
    elif case == "style_dim":
        extra = ["--style-dim", "0"]
    elif case == "resume_nothing":
        out.mkdir()
        extra = ["--resume"]
    elif case == "run_exists":
        out.mkdir()
        (out / P.EXPERIMENT).write_text("name: pretrain\n")
    elif case == "not_empty":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif case == "resume_fewer_steps":
        out.mkdir()
        (out / P.EXPERIMENT).write_text(f"name: pretrain\nmethod: {{name: stylegan2}}\n"
                                        f"data: {{target: {images}, shots: 0}}\ntrain: {{steps: 10}}\n")
        extra = ["--resume", "--steps", "5"]
    elif case == "resume_broken_yaml":
        out.mkdir()
        (out / P.EXPERIMENT).write_text("name: [pretrain\n")
        extra = ["--resume"]
    before = {p: p.read_bytes() for p in out.rglob("*")} if out.exists() else None
    argv = ["pretrain", folder] + ([] if case == "no_out" else ["--out", str(out)]) + TINY[2:] + extra
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("raygan: error: ") and "Traceback" not in err
    expected = {"no_folder": "nope", "truncated": "cut.png", "size": "48: expected one of 32, 64",
                "no_out": "needs --out", "resume_nothing": "holds no pretraining run to resume",
                "run_exists": "pass --resume to continue it", "not_empty": "not an empty folder",
                "resume_fewer_steps": "5: fewer than the run's 10 steps",
                "resume_broken_yaml": "pretrain.yaml: malformed YAML",
                "eval_samples": "--eval-samples: 5: expected at least 20",
                "style_dim": "--style-dim: 0: expected at least 1"}[case]
    assert expected in err, err
    assert ({p: p.read_bytes() for p in out.rglob("*")} if out.exists() else None) == before  # nothing written


def test_the_experiment_trains_stylegan2_on_every_image_from_the_written_init(images, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    opts = _opts(images, out, workers=2)
    P.write_init(opts, out / P.INIT)
    (out / P.EXPERIMENT).write_text(yaml.safe_dump(P.experiment(opts, out)))
    exp = load_experiment(out / P.EXPERIMENT)  # what `raygan train OUT/pretrain.yaml` would run
    cfg = exp.trial_config
    assert cfg["method"]["name"] == "stylegan2" and cfg["data"]["shots"] == 0
    assert cfg["train"]["train_noise_strengths"] is True and exp.scaling.num_workers == 2
    assert exp.search.objectives == [(cfg["eval"]["metrics"][0], "min")]
    init = load_source(str(out / P.INIT))
    assert init.g_config == dict(size=32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32)

    t, method, _ = build_method(cfg)
    assert len(method.shots) == 12  # every image of the folder
    assert any("noise.weight" in n for n, p in method.g.named_parameters() if p in set(method.g_trainable))
    for _ in range(2):
        method.step()
    state = method.state_dict()
    codes = torch.randn(4096, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the trained g_ema's mean W, not the initial network's
        assert torch.allclose(state["latent_avg"], method.g_ema.style(codes).mean(0))
    assert not torch.allclose(state["latent_avg"], init.latent_avg)
    assert torch.equal(method.state_dict()["latent_avg"], state["latent_avg"])  # the same codes every time

    path = P.export(state, out)
    src = load_source(str(path))  # read as every other command reads a source
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"g", "d", "g_ema", "latent_avg", "g_config", "d_config"}
    assert all(torch.equal(v, state["g_ema"][k]) for k, v in src.g_state.items())
    assert (out / "source.png").stat().st_size > 0


def test_shots_zero_needs_a_folder_target(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("name: s\nmethod: {name: stylegan2}\ndata: {shots: 0}\n")
    assert main(["train", str(space), "--local"]) == 2
    assert "data.shots: 0 (every image) needs a folder target" in capsys.readouterr().err
