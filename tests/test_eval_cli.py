"""`raygan eval`: finding checkpoints, scores with provenance, never overwriting, one-line errors."""
import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from raygan.commands import evaluate as E
from raygan.runs import find_checkpoint
from raygan.metrics import diversity as D
from raygan.cli import main
from raygan.metrics import features as Fe
from raygan import weights as W
from raygan.metrics.inception import FIDInception
from raygan.metrics.published import to_uint8
from raygan.metrics.realism import realism
from raygan.models.checkpoint import EMBEDDED, load_source


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A raygan cache holding the ShapesNet that `raygan eval` loads (the test-size one,
    tests/conftest.py), and that net."""
    d = tmp_path_factory.mktemp("raygan_cache")
    return d, Fe.load_shapesnet(32, cache_dir=d)


@pytest.fixture(scope="module")
def torch_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / W.KNOWN["inception"].file
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(FIDInception().state_dict(), path)
    return home, path


@pytest.fixture
def env(cache, torch_home, monkeypatch):
    monkeypatch.setenv("RAYGAN_CACHE", str(cache[0]))
    monkeypatch.setenv("TORCH_HOME", str(torch_home[0]))
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(W.DIR_VAR, raising=False)


def _ckpt(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir(parents=True)
    return shutil.copy(EMBEDDED, folder / "g.pt")


def test_embedded_metrics_with_provenance_next_to_the_checkpoint(env, cache, tmp_path, capsys):
    ckpt = _ckpt(tmp_path)
    assert main(["eval", str(ckpt), "--metrics", "fd_shapesnet,realism,intra_shapesnet", "--samples", "64"]) == 0
    written = list(ckpt.parent.glob("eval_*.json"))
    assert len(written) == 1
    report = json.loads(written[0].read_text())
    assert report["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    scores = {r["metric"]: r for r in report["scores"]}
    assert set(scores) == {"fd_shapesnet", "realism", "intra_shapesnet"}
    for r in scores.values():
        assert r["samples"] == 64 and "shapesnet" in r["network"] and len(r["weights_sha256"]) == 64
        assert np.isfinite(r["value"])
    # the same number as computing it by hand on the same z and noise
    src = load_source(str(ckpt))
    z = torch.randn(64, 128, generator=torch.Generator().manual_seed(10_000))
    images = E.generate(src.generator(), z, seed=0, batch=50, device="cpu")
    assert scores["realism"]["value"] == pytest.approx(realism(images, cache[1]), rel=1e-6)
    out = capsys.readouterr().out
    assert "fd_shapesnet" in out and "reference" in out and str(written[0]) in out
    # a second run never overwrites the first
    assert main(["eval", str(ckpt), "--metrics", "realism", "--samples", "8"]) == 0
    assert len(list(ckpt.parent.glob("eval_*.json"))) == 2
    assert json.loads(written[0].read_text()) == report


def test_fid_kid_is_with_stand_in_inception(env, cache, torch_home, tmp_path, capsys):
    """Reference = the generator's own images written as PNGs: FID ~ 0 end to end."""
    ckpt = _ckpt(tmp_path)
    src = load_source(str(ckpt))
    z = torch.randn(10, 128, generator=torch.Generator().manual_seed(10_000))
    own = to_uint8(E.generate(src.generator(), z, seed=0, batch=50, device="cpu"))
    ref = tmp_path / "ref"
    ref.mkdir()
    for i, img in enumerate(own):
        Image.fromarray(img).save(ref / f"{i:03d}.png")
    out = tmp_path / "scores.json"
    assert main(["eval", str(ckpt), "--metrics", "fid,kid,is", "--samples", "10", "--reference", str(ref),
                 "--out", str(out)]) == 0
    scores = {r["metric"]: r for r in json.loads(out.read_text())["scores"]}
    sha = hashlib.sha256(torch_home[1].read_bytes()).hexdigest()
    for name in ("fid", "kid", "is"):
        r = scores[name]
        assert r["weights_sha256"] == sha and "UNVERIFIED" in r["network"] and r["samples"] == 10
        assert "bicubic 299" in r["resize"]
    assert abs(scores["fid"]["value"]) < 1e-3
    assert str(ref.resolve()) in scores["fid"]["reference"]
    assert scores["kid"]["extra"]["subset_size"] == 10 and "std" in scores["kid"]
    assert 1.0 <= scores["is"]["value"] <= 1008 and scores["is"]["extra"]["splits"] == 10
    assert len(list(cache[0].glob("ref_inception_10_*.npz"))) == 1    # reference features cached
    # --out never overwrites
    before = out.read_bytes()
    assert main(["eval", str(ckpt), "--metrics", "fid", "--samples", "10", "--reference", str(ref),
                 "--out", str(out)]) == 2
    assert out.read_bytes() == before
    assert "already exists" in capsys.readouterr().err


def test_missing_inception_weights_is_one_line(cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAYGAN_CACHE", str(cache[0]))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.delenv("RAYGAN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.delenv(W.DIR_VAR, raising=False)
    ckpt = _ckpt(tmp_path)
    assert main(["eval", str(ckpt), "--metrics", "fid", "--samples", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and W.KNOWN["inception"].file in err and err.startswith("raygan: error:")
    assert "--metrics: fid needs it; scs (with sobel edges), fd_shapesnet, realism, intra_shapesnet " \
           "need no weights" in err, err  # the switch named, the embedded metrics offered
    assert not list(ckpt.parent.glob("eval_*.json"))


def test_finds_checkpoints_of_trials_and_runs(tmp_path):
    exp = tmp_path / "exp"
    trial = exp / "_trial_ab12cd34_1_lr=0.1_2026-01-01_00-00-00"
    trial.mkdir(parents=True)
    (trial / "result.json").write_text(json.dumps({"step": 5, "trial_id": "ab12cd34"}) + "\n")
    runs = exp / "_train" / "train_ab12cd34"
    for stamp in ("2026-01-01_00-00-10.5", "2026-01-01_00-00-20.1"):
        (runs / f"checkpoint_{stamp}").mkdir(parents=True)
        (runs / f"checkpoint_{stamp}" / "state.pt").write_bytes(b"")
    latest = runs / "checkpoint_2026-01-01_00-00-20.1" / "state.pt"
    assert find_checkpoint(trial) == latest                      # a Tune trial whose Train run checkpoints
    own = exp / "_trial_ef56ab78_2_lr=0.2_2026-01-01_00-00-00"     # a one-worker trial checkpoints to Tune
    for i in (0, 1, 10):
        (own / f"checkpoint_{i:06d}").mkdir(parents=True)
        (own / f"checkpoint_{i:06d}" / "state.pt").write_bytes(b"")
    assert find_checkpoint(own) == own / "checkpoint_000010" / "state.pt"
    assert find_checkpoint(runs) == latest                       # a Ray Train run folder
    assert find_checkpoint(latest.parent) == latest              # a checkpoint_* folder
    assert find_checkpoint(latest) == latest                     # the file itself
    local = tmp_path / "local"
    local.mkdir()
    (local / "checkpoint.pt").write_bytes(b"")
    assert find_checkpoint(local) == local / "checkpoint.pt"    # raygan train --local


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("raygan: error:"), err
    for n in needles:
        assert n in err, err


def test_bad_inputs_are_one_line_errors(env, tmp_path, capsys):
    _fails(["eval", str(tmp_path / "none.pt")], capsys, "none.pt", "no such")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    _fails(["eval", str(text), "--metrics", "realism"], capsys, "notes.pt", "corrupt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(EMBEDDED.read_bytes()[:5000])
    _fails(["eval", str(cut), "--metrics", "realism"], capsys, "cut.pt", "truncated")
    _fails(["eval", str(EMBEDDED), "--metrics", "fid,bogus"], capsys, "bogus", "fid, kid")
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(["eval", str(empty)], capsys, "no checkpoint here")
    labels = tmp_path / "spade.pt"
    torch.save({"g": {"w": torch.zeros(1)}, "g_config": {"n_classes": 8, "size": 32}}, labels)
    _fails(["eval", str(labels), "--metrics", "realism"], capsys, "label-to-image")
    wrong = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), wrong)
    _fails(["eval", str(_ckpt(tmp_path)), "--metrics", "fid", "--samples", "4", "--inception", str(wrong)],
           capsys, "wrong.pth", "wrong architecture")
    _fails(["eval", str(_ckpt(tmp_path / "b")), "--metrics", "intra_lpips", "--lpips-net", "alex", "--samples", "4",
            "--lpips-weights", str(wrong)], capsys, "wrong.pth", "AlexNet's state dict")


def test_intra_lpips_alex_with_stand_in_backbone(env, torch_home, tmp_path):
    """torchvision's AlexNet layout (only `features.*` matters to LPIPS), random weights."""
    from torchvision.models import alexnet

    torch.manual_seed(1)
    path = torch_home[0] / "hub" / "checkpoints" / W.KNOWN["alexnet"].file
    torch.save({k: v for k, v in alexnet().state_dict().items() if k.startswith("features.")}, path)
    try:
        ckpt = _ckpt(tmp_path)
        out = tmp_path / "lpips.json"
        assert main(["eval", str(ckpt), "--metrics", "intra_lpips", "--lpips-net", "alex", "--samples", "24",
                     "--out", str(out)]) == 0
        (r,) = json.loads(out.read_text())["scores"]
        assert r["metric"] == "intra_lpips" and "alex" in r["network"] and r["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert "UNVERIFIED" in r["network"] and "<= 50 per cluster" in r["reference"]
        src = load_source(str(ckpt))
        z = torch.randn(24, 128, generator=torch.Generator().manual_seed(10_000))
        images = E.generate(src.generator(), z, seed=0, batch=50, device="cpu")
        from raygan.data.synthetic import few_shot_target

        expected = D.intra_cluster_diversity(images, few_shot_target(32, 10, 0), D.lpips_distance("alex", path=path))
        assert r["value"] == pytest.approx(expected, rel=1e-6)
    finally:
        path.unlink()
