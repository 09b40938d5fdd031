"""The realism classifier C of a folder target (DCL Eq. 3, raygan.metrics.domainnet): real target
images score high; noise, blank, blurred and source images low, whatever their compression and
resolution; cached by the data's fingerprint; refused when it cannot tell the two sets apart;
and the metrics computed with it (realism, fd_domainnet, intra_domainnet) score a collapsed,
noisy or blank generator badly."""
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from raygan.errors import UserError
from raygan.metrics import domainnet as C

from raygan.data.painted import scene

SIZE = 32


def tensors(images) -> torch.Tensor:
    from raygan.data.images import resize_crop

    x = np.stack([np.asarray(resize_crop(im, SIZE)) for im in images])
    return torch.from_numpy(x.copy()).permute(0, 3, 1, 2).float() / 127.5 - 1


def jpeg(im: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def draw(n, seed, style, how=lambda im: im):
    rng = np.random.default_rng(seed)
    return tensors([how(scene(rng, style)) for _ in range(n)])


def p_target(net, x) -> float:
    with torch.no_grad():
        return float(torch.sigmoid(net(x)["domain"]).mean())


LOW = lambda im: jpeg(im.resize((40, 32)).resize((80, 64)), 25)  # noqa: E731  half resolution, JPEG q25


@pytest.fixture(scope="module")
def trained():
    """C trained on 12 half-resolution JPEG target images against 48 pristine source images: a
    classifier may key on the artefacts instead of the domain."""
    target, other = draw(16, 0, "ink", LOW), draw(64, 1, "filled")
    (target, target_out), (other, other_out) = C.split(target), C.split(other)
    net = C.train_domainnet(target, other, steps=250)
    net.config["checks"] = C.heldout_checks(net, target_out, other_out)   # as load_domainnet keeps them
    return net, net.config["checks"]


def test_real_target_high_and_noise_blank_blur_and_source_low(trained):
    net, checks = trained
    assert checks["accuracy"] >= 0.9 and checks["target"] > 0.8 and checks["other"] < 0.2, C.describe(checks)
    assert max(checks[k] for k in C.HARD_NEGATIVES) < 0.5, C.describe(checks)
    C.check(checks, "shots/", "test sets")
    fresh = draw(40, 7, "ink")                      # unseen, and pristine where training had JPEGs
    assert p_target(net, fresh) > 0.8
    made = {"source": draw(40, 8, "filled"),
            "source as half-resolution JPEG": draw(40, 9, "filled", LOW),
            "noise": torch.rand(40, 3, SIZE, SIZE) * 2 - 1,
            "blank": torch.ones(40, 3, SIZE, SIZE) * (torch.rand(40, 3, 1, 1) * 2 - 1),
            "blank paper": fresh.mean((2, 3), keepdim=True).expand_as(fresh).clone(),
            "speckled paper": (fresh.mean((2, 3), keepdim=True) + 0.3 * torch.randn(fresh.shape)).clamp(-1, 1),
            "blurred target": draw(40, 7, "ink", lambda im: im.filter(ImageFilter.GaussianBlur(6)))}
    for name, x in made.items():
        assert p_target(net, x) < 0.2, name


def test_a_classifier_that_cannot_separate_its_sets_is_refused():
    target, other = draw(12, 0, "filled"), draw(12, 1, "filled")   # one domain on both sides
    (target, target_out), (other, other_out) = C.split(target), C.split(other)
    checks = C.heldout_checks(C.train_domainnet(target, other, steps=30), target_out, other_out)
    with pytest.raises(UserError, match="tells held-out target from non-target images apart only"):
        C.check(checks, "shots/", "test sets")
    good = {**dict.fromkeys(C.HARD_NEGATIVES, 0.0), "target": 1.0, "other": 0.0, "accuracy": 1.0}
    C.check(good, "shots/", "test sets")
    with pytest.raises(UserError, match="calls held-out noise images target"):  # fooled by one kind of failure
        C.check({**good, "noise": 0.6}, "shots/", "test sets")


def test_cached_by_the_data_fingerprint(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path))
    calls = []

    def data():
        calls.append(1)
        return draw(8, 0, "ink"), draw(8, 1, "filled")

    first = C.load_domainnet("key-a", SIZE, data, steps=5)
    again = C.load_domainnet("key-a", SIZE, data, steps=5)
    assert len(calls) == 1 and set(first.config["checks"]) >= {"target", "other", "accuracy", *C.HARD_NEGATIVES}
    assert again.config["checks"] == first.config["checks"]
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values()))
    C.load_domainnet("key-b", SIZE, data, steps=5)   # other data: another entry, trained
    assert len(calls) == 2 and len(list(tmp_path.glob("domainnet_*.pt"))) == 2


def test_augmentations_keep_the_shape_and_range_and_are_seeded():
    x = draw(6, 0, "ink")
    a = C.augment(x.clone(), torch.Generator().manual_seed(3))
    b = C.augment(x.clone(), torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b) and a.min() >= -1 and a.max() <= 1
    assert (a - x).abs().mean() > 0.01


def test_the_folder_metrics_score_collapse_noise_and_blank_paper_badly(trained, monkeypatch):
    """realism, fd_domainnet and intra_domainnet through the registry, with the fixture's C
    standing in for the one a folder target trains (that path: test_folder_target*.py)."""
    from raygan.evaluation.fewshot import EvalOptions, Run

    net, _ = trained
    target = draw(16, 0, "ink")
    monkeypatch.setattr(Run, "domainnet", lambda self: (net, "sha", "the fixture's sets"))
    monkeypatch.setattr(Run, "domainnet_target", lambda self: target)
    opts = EvalOptions(shots="unused: Run.domainnet is the fixture's", scs_edges="sobel")
    shots = target[:10]
    real = draw(60, 20, "ink")
    one = real[:1].expand(60, -1, -1, -1)
    fakes = {"real": real,
             "collapsed": (one + 0.02 * torch.randn(one.shape)).clamp(-1, 1),   # one image, faint noise
             "noise": (real.mean((2, 3), keepdim=True) + 0.5 * torch.randn(real.shape)).clamp(-1, 1),
             "blank paper": real.mean((2, 3), keepdim=True).expand_as(real).clone()}
    score = {name: {m: Run(opts, None, x, None, shots=(shots, "10 shots")).compute(m)[0].value
                    for m in ("realism", "fd_domainnet", "intra_domainnet")}
             for name, x in fakes.items()}
    good = score.pop("real")
    assert good["realism"] > 0.8, good
    for name, s in score.items():
        assert s["fd_domainnet"] > 2 * good["fd_domainnet"], (name, s, good)
    assert score["noise"]["realism"] < 0.2 and score["blank paper"]["realism"] < 0.2, score
    assert score["collapsed"]["intra_domainnet"] < 0.3 * good["intra_domainnet"], (score, good)
    assert score["blank paper"]["intra_domainnet"] < 0.3 * good["intra_domainnet"], (score, good)
    record = Run(opts, None, real, None).compute("realism")[0].record()
    assert "domainnet" in record["network"] and "held-out p(target)" in record["network"]
