"""Few-shot adaptation to the user's own images, before any Ray: a folder of shots, a reference
set, the checks and one-line errors, the metric set a folder target takes (the end-to-end
search: test_folder_target_e2e.py)."""
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from raygan.cli import main
from raygan.data import images as I
from raygan.errors import UserError
from raygan import weights as W
from raygan.metrics.inception import FIDInception
from raygan.models.stylegan2 import Discriminator, Generator

from raygan.data.painted import write_scenes

SIZE = 64


def write_images(folder, n, seed, size=(80, 64)):
    """n small RGB images (non-square, so the centre crop matters): coloured discs on a plain ground."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size[1], :size[0]]
    for i in range(n):
        img = np.empty((size[1], size[0], 3), np.uint8)
        img[:] = rng.integers(0, 256, 3)
        cx, cy, r = rng.uniform(20, 60), rng.uniform(16, 48), rng.uniform(6, 20)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = rng.integers(0, 256, 3)
        Image.fromarray(img).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A 64-px rosinality-layout source, 6 shots and 12 reference images (ink outlines on
    paper), 24 source-domain images (filled shapes), and stand-in Inception and VGG16 weights of
    the right architectures in one $RAYGAN_WEIGHTS folder."""
    root = tmp_path_factory.mktemp("folder_target")
    torch.manual_seed(0)
    g = Generator(SIZE, style_dim=32, n_mlp=2, channel_max=32)
    d = Discriminator(SIZE, channel_max=32)
    ckpt = root / "source64.pt"
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), "latent_avg": torch.zeros(32)}, ckpt)
    wdir = root / "weights"
    wdir.mkdir()
    torch.save(FIDInception().state_dict(), wdir / W.KNOWN["inception"].file)
    import torchvision

    vgg = torchvision.models.vgg16(weights=None).features  # LPIPS reads only the conv trunk
    torch.save({f"features.{k}": v for k, v in vgg.state_dict().items()}, wdir / W.KNOWN["vgg16"].file)
    return {"ckpt": ckpt, "shots": write_scenes(root / "shots", 6, 0, "ink"),
            "reference": write_scenes(root / "reference", 12, 1, "ink"),
            "source_images": write_scenes(root / "source_images", 24, 2, "filled"), "weights": wdir}


@pytest.fixture
def weights_env(assets, tmp_path, monkeypatch):
    monkeypatch.setenv(W.DIR_VAR, str(assets["weights"]))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def experiment(tmp_path, assets, name="folder", **over):
    text = textwrap.dedent(f"""\
        name: {name}
        method:
          name: cdc
          lambda_dist: {{loguniform: [100, 5000]}}
        data:
          target: {assets['shots']}
          shots: 6
          reference: {assets['reference']}
        model: {{checkpoint: {assets['ckpt']}}}
        train: {{steps: 2, batch_size: 2, eval_every: 2, eval_samples: 20, torch_threads: 1}}
        eval: {{metrics: [fid, intra_lpips]}}
        search: {{num_samples: 2, max_concurrent: 2, metric: fid, mode: min, searcher: random}}
        scaling: {{cpus_per_worker: 0.5}}
        """)
    for key, value in over.items():
        text = text.replace(key, value)
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


# ---- the shots ---------------------------------------------------------------------------------

def test_shots_are_chosen_by_seed_resized_and_centre_cropped(assets):
    shots, files = I.load_shots(assets["shots"], 4, seed=3, size=SIZE)
    assert shots.shape == (4, 3, SIZE, SIZE) and shots.min() >= -1 and shots.max() <= 1
    assert files == sorted(files) and len(set(files)) == 4
    assert I.load_shots(assets["shots"], 4, seed=3, size=SIZE)[1] == files        # the same seed, the same shots
    assert any(I.load_shots(assets["shots"], 4, seed=s, size=SIZE)[1] != files for s in range(4, 8))
    # 80x64 -> shorter side 64 (already), centre crop drops 8 columns on each side
    with Image.open(files[0]) as im:
        expect = np.asarray(im.convert("RGB"))[:, 8:72]
    got = ((shots[0].permute(1, 2, 0) + 1) * 127.5).round().byte().numpy()
    assert np.abs(got.astype(int) - expect.astype(int)).max() <= 1


@pytest.mark.parametrize("case", ["missing", "empty", "too_few", "unreadable", "not_an_image"])
def test_bad_target_folders_are_one_line_errors_before_ray(tmp_path, assets, capsys, case):
    folder = tmp_path / "shots"
    if case != "missing":
        write_images(folder, 0 if case == "empty" else (3 if case == "too_few" else 6), 5)
    named = folder
    if case == "unreadable":
        named = folder / "img_02.png"
        named.write_bytes(named.read_bytes()[:40])  # truncated PNG
    elif case == "not_an_image":
        named = folder / "notes.txt"
        named.write_text("not an image")
    path = experiment(tmp_path, assets, **{str(assets["shots"]): str(folder)})
    out = tmp_path / "out"
    assert main(["tune", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"raygan: error: {named}"), err
    assert not out.exists()  # nothing written, Ray never started
    expected = {"missing": "no such folder", "empty": "found 0", "too_few": "data.shots is 6: expected at least 6 images, found 3",
                "unreadable": "not a readable image", "not_an_image": "not an image file"}[case]
    assert expected in err, err


@pytest.mark.parametrize("case", ["missing", "unreadable", "with_the_embedded_target"])
def test_bad_source_images_are_one_line_errors_before_ray(tmp_path, assets, capsys, weights_env, case):
    folder = write_images(tmp_path / "source", 4, 7)
    named = folder
    if case == "missing":
        folder = named = tmp_path / "nowhere"
    elif case == "unreadable":
        named = folder / "img_01.png"
        named.write_bytes(named.read_bytes()[:40])  # truncated PNG
    over = {"  shots: 6\n": f"  shots: 6\n  source_images: {folder}\n"}
    if case == "with_the_embedded_target":
        over = {f"target: {assets['shots']}": "target: sketches", f"  reference: {assets['reference']}\n": "",
                "  shots: 6\n": f"  shots: 6\n  source_images: {folder}\n"}
    path = experiment(tmp_path, assets, **over)
    out = tmp_path / "out"
    assert main(["tune", str(path), "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and not out.exists(), err   # one line, nothing written, Ray never started
    expected = {"missing": f"{named}: no such folder (expected a folder of source images)",
                "unreadable": f"{named}: not a readable image",
                "with_the_embedded_target": "data.source_images: the embedded sketches' realism classifier is "
                                            "raygan's ShapesNet"}[case]
    assert expected in err, err


def test_embedded_only_metrics_are_refused_on_a_folder_target(tmp_path, assets, capsys, weights_env):
    path = experiment(tmp_path, assets, **{"metrics: [fid, intra_lpips]": "metrics: [fid, fd_shapesnet]"})
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fd_shapesnet uses raygan's ShapesNet" in err


def test_fid_without_a_reference_folder_is_refused_and_fid_shots_is_the_default(tmp_path, assets, capsys,
                                                                               weights_env):
    path = experiment(tmp_path, assets, **{f"  reference: {assets['reference']}\n": ""})
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "fid/kid on a folder target need data.reference" in capsys.readouterr().err
    from raygan.families.fewshot import default_objective
    from raygan.search_space import load_experiment

    plain = experiment(tmp_path, assets, name="plain", **{f"  reference: {assets['reference']}\n": "",
                                                         "eval: {metrics: [fid, intra_lpips]}\n": "",
                                                         "metric: fid, mode: min, ": ""})
    exp = load_experiment(plain)
    assert exp.search.metric == "fid_shots" and default_objective(exp.trial_config) == ("fid_shots", "min")


def test_missing_weights_and_unreported_objective_are_one_line_errors(tmp_path, assets, capsys, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(W.DIR_VAR, raising=False)
    path = experiment(tmp_path, assets)
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"raygan: error: {W.KNOWN['inception'].file}: missing"), err
    # ... naming the metrics that need it and the ones that would not (none of the embedded-only)
    assert err.endswith("; eval.metrics: fid needs it; scs (with sobel edges), realism, fd_domainnet, intra_domainnet "
                        "need no weights"), err
    path = experiment(tmp_path, assets, name="lpips_only", **{"metrics: [fid, intra_lpips]": "metrics: [intra_lpips]",
                                                            "metric: fid, mode: min": "metric: intra_lpips, mode: max"})
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"raygan: error: {W.KNOWN['vgg16'].file}: missing") and "eval.metrics: intra_lpips needs it" in err, err
    monkeypatch.setenv(W.DIR_VAR, str(assets["weights"]))
    path = experiment(tmp_path, assets, name="objective", **{"metric: fid,": "metric: kid,"})
    assert main(["tune", str(path), "--output", str(tmp_path / "out")]) == 2
    assert "'kid' is not reported" in capsys.readouterr().err


def test_image_folder_helpers_refuse_what_they_cannot_read(tmp_path):
    write_images(tmp_path / "ok", 2, 0)
    (tmp_path / "ok" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    assert len(I.image_files(tmp_path / "ok")) == 2
    (tmp_path / "ok" / "sub").mkdir()
    with pytest.raises(UserError, match="a folder"):
        I.image_files(tmp_path / "ok")


def test_without_the_weights_a_folder_target_takes_the_weights_free_set_and_says_so(tmp_path, assets, capsys,
                                                                                    monkeypatch):
    from raygan.search_space import load_experiment
    from raygan.train.loop import prepare

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path / "cache"))
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(W.DIR_VAR, raising=False)
    path = experiment(tmp_path, assets, **{"eval: {metrics: [fid, intra_lpips]}\n": "",
                                           "metric: fid, mode: min, ": ""})
    exp = load_experiment(path)
    assert (exp.search.metric, exp.search.mode) == ("fd_domainnet", "min")  # the default objective follows the set
    cfg = prepare(exp.trial_config, [exp.method], exp.path, objectives=exp.search.objectives)
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("metrics: realism, diversity, fd_domainnet, scs_sobel, diversity_at_saturation, "
                                 "saturated_at_step: the weights-free set of a folder target"), printed[0]
    assert f"{W.KNOWN['inception'].file}: missing" in printed[0] and "eval.metrics chooses" in printed[0]
    # C against G_s's samples (no data.source_images), and the trials pinned to this set
    assert any(line.startswith("C: held-out p(target)") and "samples of G_s" in line
               and "(no data.source_images given)" in line for line in printed), printed
    assert cfg["eval"]["metrics"] == ["realism", "diversity", "fd_domainnet", "scs"]
    assert cfg["eval"]["diversity"] == "domainnet"
