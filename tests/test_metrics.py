import math
import warnings

import numpy as np
import pytest
import torch

from raygan.cache import fingerprint
from raygan.data import synthetic as S
from raygan.metrics import diversity as D
from raygan.metrics import features as Fe
from raygan.metrics.frechet import fd_shapesnet, feature_stats, frechet_distance, reference_stats
from raygan.metrics.realism import realism

TEST_STEPS = 80  # a short training run: enough for the domain head, not for the published recipe


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("raygan_cache")


@pytest.fixture(scope="module")
def net(cache_dir):
    return Fe.load_shapesnet(32, cache_dir=cache_dir, steps=TEST_STEPS)


# ---- ShapesNet ------------------------------------------------------------------------------

def test_shapesnet_shapes(net):
    x = S.held_out("source", 6)
    out = net(x)
    assert out["domain"].shape == (6,)
    assert out["kind"].shape == (6, len(S.KINDS)) and out["count"].shape == (6, S.MAX_SHAPES)
    assert net.features(x).shape == (6, Fe.FEATURE_DIM)
    layers = net.layer_features(x)
    assert len(layers) >= 3 and all(f.dim() == 4 and f.shape[0] == 6 for f in layers)
    assert not net.training


def test_shapesnet_domain_head_works(net):
    acc = Fe.heldout_accuracy(net, n=200)
    assert acc["domain"] > 0.97, acc


def test_shapesnet_cache(net, cache_dir, capsys):
    path = cache_dir / f"shapesnet_32px_{Fe.VERSION}_{TEST_STEPS}steps.pt"
    assert path.is_file()
    again = Fe.load_shapesnet(32, cache_dir=cache_dir, steps=TEST_STEPS)
    assert "trained" not in capsys.readouterr().out          # loaded, not retrained
    for (k, a), b in zip(net.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), k
    assert not again.training


def test_shapesnet_corrupt_cache_retrains(tmp_path, capsys):
    path = tmp_path / f"shapesnet_16px_{Fe.VERSION}_3steps.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="unusable"):
        fresh = Fe.load_shapesnet(16, cache_dir=tmp_path, steps=3)
    assert "trained" in capsys.readouterr().out
    assert isinstance(fresh, Fe.ShapesNet)
    blob = torch.load(path, weights_only=True)                 # overwritten with a good file
    assert blob["version"] == Fe.VERSION and blob["size"] == 16
    assert not list(tmp_path.glob("*.tmp*"))


def test_shapesnet_env_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path))
    assert Fe._cache_path(None, 64, Fe.DEFAULT_STEPS) == tmp_path / f"shapesnet_64px_{Fe.VERSION}.pt"


def test_test_size_networks_are_cached_under_their_own_names(tmp_path, monkeypatch):
    """$RAYGAN_TEST_NETWORKS=1 (tests/conftest.py) trains ShapesNet and SegNet at test size, into
    files whose names say so: a later real run never loads them, nor their reference stats."""
    from raygan.cache import TEST_NETWORKS
    from raygan.metrics import frechet, miou as M

    monkeypatch.setenv("RAYGAN_CACHE", str(tmp_path))
    monkeypatch.setenv(TEST_NETWORKS, "1")
    shapes, seg = Fe.load_shapesnet(16), M.load_segnet(32)  # (scenes are at least 32 px)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"segnet_32px_{M.VERSION}_{M.TEST_STEPS}steps_{M.TEST_SCENES}scenes.pt",
        f"shapesnet_16px_{Fe.VERSION}_{Fe.TEST_STEPS}steps_{Fe.TEST_SCENES}scenes.pt"]
    assert seg.steps == M.TEST_STEPS
    frechet.sketch_reference_stats(shapes, 16, n=20)
    (stats,) = tmp_path.glob("ref_sketches_*")
    assert stats.name == f"ref_sketches_16px_20_{Fe.VERSION}_{fingerprint(shapes, 10)}.npz"
    monkeypatch.setenv(TEST_NETWORKS, "yes")
    with pytest.raises(ValueError, match="must be 0 or 1"):
        Fe.load_shapesnet(16)


# ---- realism --------------------------------------------------------------------------------

def test_realism(net):
    tgt, src = S.held_out("target", 100, seed=3), S.held_out("source", 100, seed=3)
    assert realism(tgt, net) > 0.9
    assert realism(src, net) < 0.1
    mixed = realism(torch.cat([tgt, src]), net, batch_size=7)
    assert mixed == pytest.approx((realism(tgt, net) + realism(src, net)) / 2, abs=1e-5)


# ---- Fréchet distance -----------------------------------------------------------------------

def test_fd_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).standard_normal((400, 12)) @ np.diag(np.arange(1, 13))
    mu, sigma = feature_stats(feats)
    assert mu.shape == (12,) and sigma.shape == (12, 12)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6


def test_fd_diagonal_gaussians_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.5])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    # ||mu1-mu2||^2 = 1 + 0 + 6.25; sum(a + b - 2 sqrt(ab)) = (1+9-6) + (4+1-4) + 0 = 5
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(12.25, abs=1e-9)


def test_fd_singular_covariance_is_finite():
    feats = np.random.default_rng(1).standard_normal((5, 16))   # rank 4 < 16 dims
    other = np.random.default_rng(2).standard_normal((5, 16))
    d = frechet_distance(*feature_stats(feats), *feature_stats(other))
    assert math.isfinite(d) and d > 0
    dead = np.random.default_rng(3).standard_normal((300, 10))
    dead[:, 4] = 0                                               # a dead ReLU feature
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(frechet_distance(*feature_stats(dead), *feature_stats(dead))) < 1e-9


def test_fd_shapesnet(net):
    tgt_a, tgt_b = S.held_out("target", 300, seed=1), S.held_out("target", 300, seed=2)
    src = S.held_out("source", 300, seed=1)
    same = fd_shapesnet(tgt_a, tgt_a, net)
    near, far = fd_shapesnet(tgt_a, tgt_b, net), fd_shapesnet(src, tgt_b, net)
    assert abs(same) < 1e-3 * far
    assert 0 < near < far / 5
    assert fd_shapesnet(src, reference_stats(tgt_b, net), net) == pytest.approx(far, rel=1e-6)


# ---- intra-cluster diversity ----------------------------------------------------------------

def _mse(a, b):
    return ((a - b) ** 2).mean((1, 2, 3))


def _reference_diversity(samples, shots, dist, cap, seed=0):
    """Plain-loop restatement of the protocol: nearest shot, seeded cap, all pairs, mean of means."""
    n, m = len(samples), len(shots)
    assign = []
    for i in range(n):
        ds = [float(dist(samples[i:i + 1], shots[j:j + 1])) for j in range(m)]
        assign.append(min(range(m), key=lambda j: ds[j]))
    means = []
    for j in range(m):
        members = [i for i in range(n) if assign[i] == j]
        if len(members) > cap:
            perm = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed + j)).tolist()
            members = sorted(members[p] for p in perm[:cap])
        pairs = [float(dist(samples[a:a + 1], samples[b:b + 1])) for a in members for b in members if a < b]
        if pairs:
            means.append(sum(pairs) / len(pairs))
    return sum(means) / len(means)


@pytest.mark.parametrize("cap", [50, 4])
def test_intra_cluster_diversity_matches_reference(cap):
    g = torch.Generator().manual_seed(0)
    samples, shots = torch.randn(37, 3, 4, 4, generator=g), torch.randn(4, 3, 4, 4, generator=g)
    ref = _reference_diversity(samples, shots, _mse, cap)
    plain = D.intra_cluster_diversity(samples, shots, _mse, max_per_cluster=cap, batch_size=5)
    split = D.PerceptualDistance(lambda x: [x], lambda fa, fb: _mse(fa[0], fb[0]))
    fast = D.intra_cluster_diversity(samples, shots, split, max_per_cluster=cap, batch_size=5)
    assert plain == pytest.approx(ref, rel=1e-9)
    assert fast == pytest.approx(ref, rel=1e-6)
    # the cap matters: with 37 samples in 4 clusters, some cluster exceeds 4 members
    if cap == 4:
        assert ref != pytest.approx(_reference_diversity(samples, shots, _mse, 50), rel=1e-6)


def test_intra_cluster_diversity_identical_samples_is_zero(net):
    shots = S.few_shot_target()
    samples = shots[:3].repeat_interleave(20, 0)                 # 3 clusters of identical images
    assert D.intra_cluster_diversity(samples, shots, _mse) == 0.0
    _, dist = D.make_distance("shapesnet", net=net)
    assert D.intra_cluster_diversity(samples, shots, dist) == pytest.approx(0.0, abs=1e-7)
    assert math.isnan(D.intra_cluster_diversity(shots[:2], shots, _mse))   # no cluster with 2 members


def test_shapesnet_distance(net):
    name, dist = D.make_distance("shapesnet", net=net)
    assert name == "intra_shapesnet"
    a, b = S.held_out("target", 8, seed=4), S.held_out("target", 8, seed=5)
    d = dist(a, b)
    assert d.shape == (8,) and (d > 0).all() and torch.allclose(dist(b, a), d, atol=1e-6)
    assert dist(a, a).abs().max() < 1e-6
    # the split path matches the direct call and the plain callable path gives the same diversity
    samples = S.held_out("target", 40, seed=6)
    shots = S.few_shot_target()
    fast = D.intra_cluster_diversity(samples, shots, dist)
    slow = D.intra_cluster_diversity(samples, shots, lambda x, y: dist(x, y))
    assert fast == pytest.approx(slow, rel=1e-5) and fast > 0


# ---- LPIPS backbones from the torch hub cache -----------------------------------------------

def test_make_distance_without_weights(tmp_path, monkeypatch, net):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert D.make_distance("auto", net=net)[0] == "intra_shapesnet"
    with pytest.raises(FileNotFoundError, match="vgg16-397923af.pth"):
        D.make_distance("lpips_vgg")
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        D.make_distance("lpips_alex")
    with pytest.raises(ValueError):
        D.make_distance("inception")


@pytest.mark.parametrize("backbone", ["vgg", "alex"])
def test_make_distance_lpips_from_local_file(tmp_path, monkeypatch, backbone):
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.manual_seed(0)
    ref = (torchvision.models.vgg16 if backbone == "vgg" else torchvision.models.alexnet)()
    path = tmp_path / "hub" / "checkpoints" / D.backbone_file(backbone).name
    path.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), path)
    kind = "auto" if backbone == "vgg" else "lpips_alex"
    name, dist = D.make_distance(kind)
    assert name == f"intra_lpips_{backbone}"
    # the backbone holds the file's weights (first and last conv)
    convs = [m for m in dist.model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    ref_convs = [m for m in ref.features if isinstance(m, torch.nn.Conv2d)]
    assert torch.equal(convs[0].weight, ref_convs[0].weight)
    assert torch.equal(convs[-1].bias, ref_convs[-1].bias)
    a, b = S.held_out("target", 4, seed=7), S.held_out("source", 4, seed=7)
    d = dist(a, b)
    assert d.shape == (4,) and torch.isfinite(d).all() and (d > 0).all()
    assert dist(a, a).abs().max() == 0
    # embed/compare split agrees with the lpips package's own forward (on upsampled inputs)
    up = lambda x: torch.nn.functional.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    with torch.no_grad():
        direct = dist.model(up(a), up(b)).flatten()
    assert torch.allclose(d, direct, rtol=1e-4, atol=1e-7)


def test_evaluator_scs_pairs_source_and_adapted_on_the_same_z_and_noise():
    from raygan.data.synthetic import few_shot_target
    from raygan.evaluation.fewshot import EvalOptions
    from raygan.evaluation.trials import Evaluator
    from raygan.models.checkpoint import load_source

    src = load_source("embedded")
    g_s = src.generator().eval()
    ev = Evaluator(g_s, few_shot_target(32, 4), n_samples=260, run_options=EvalOptions(samples=260, scs_edges="canny"))
    assert ev.metrics(src.generator())["scs_canny"] == pytest.approx(1.0)  # the same G: identical edges
    g_t = src.generator()
    with torch.no_grad():
        g_t.convs[2].conv.weight.add_(torch.randn_like(g_t.convs[2].conv.weight))
    assert ev.metrics(g_t)["scs_canny"] < 0.97
