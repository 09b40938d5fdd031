"""Published metrics: the FID Inception layout and its weights lookup, FID/KID/IS formulas
against scipy/numpy/brute-force references, the clean-fid resize, intra-LPIPS's protocol."""
import hashlib

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch
from PIL import Image
from torchvision.models.inception import Inception3, InceptionA

from raygan.errors import UserError
from raygan.metrics import diversity as D
from raygan.metrics import published as P
from raygan import weights as W
from raygan.metrics.inception import FIDInception, FIDInceptionA, load_fid_inception

INCEPTION_FILE = W.KNOWN["inception"].file


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """A randomly initialised FIDInception saved as a state dict under the published file name."""
    torch.manual_seed(0)
    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / INCEPTION_FILE
    path.parent.mkdir(parents=True)
    net = FIDInception().eval()
    torch.save(net.state_dict(), path)
    return home, path, net


@pytest.fixture
def hub(stand_in, monkeypatch):
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(W.DIR_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(stand_in[0]))
    return stand_in


# ---- the network and its weights ------------------------------------------------------------

def test_layout_is_torchvision_inception3_with_1008_logits_and_no_aux():
    fid_keys = {k: tuple(v.shape) for k, v in FIDInception().state_dict().items()}
    tv = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    assert fid_keys == {k: tuple(v.shape) for k, v in tv.state_dict().items()}
    assert FIDInception().Mixed_7c.max_pool and not FIDInception().Mixed_7b.max_pool


def test_fid_block_differs_from_torchvision_only_in_padded_average_pool():
    torch.manual_seed(0)
    ours, theirs = FIDInceptionA(8, pool_features=4).eval(), InceptionA(8, pool_features=4).eval()
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(1, 8, 7, 7) + 0.5
    a, b = ours(x), theirs(x)
    pool_a, pool_b = a[:, -4:], b[:, -4:]                 # the pool branch is the last 4 channels
    assert torch.equal(a[:, :-4], b[:, :-4])
    assert torch.allclose(pool_a[..., 1:-1, 1:-1], pool_b[..., 1:-1, 1:-1], atol=1e-6)
    assert not torch.allclose(pool_a[..., 0, 0], pool_b[..., 0, 0])  # corners: 4 of 9 taps are padding


def test_stand_in_weights_load_strictly_with_shapes_and_provenance(hub):
    _, path, saved = hub
    w = W.resolve("inception")
    assert w.path == path
    assert w.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert not w.verified                                 # random weights are not the published file
    net = load_fid_inception(w)
    for k, v in saved.state_dict().items():
        assert torch.equal(net.state_dict()[k], v), k
    images = (torch.rand(2, 3, 32, 32) * 2 - 1)
    pool, logits = P.inception_outputs(P.to_uint8(images), net)
    assert pool.shape == (2, 2048) and logits.shape == (2, 1008)
    assert np.isfinite(pool).all() and (pool >= 0).all()  # pool3 follows a ReLU


def test_loading_a_metric_network_leaves_the_global_rng_as_it_was(hub):
    """A trial loads Inception at its first evaluation, only where its process has not loaded it
    before: were the load to draw from torch's global RNG, a trial's training would depend on
    which trial its (reused) worker process ran before."""
    from raygan.evaluation import fewshot

    w = W.resolve("inception")
    fewshot._network.cache_clear()
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    fewshot._network("inception", str(w.path), w.sha256, "cpu")
    assert torch.equal(torch.rand(3), expected)
    torch.manual_seed(5)
    FIDInception()  # what the load builds draws from it (so the check above can fail)
    assert not torch.equal(torch.rand(3), expected)


def test_weights_lookup_order(hub, tmp_path, monkeypatch):
    other = tmp_path / "mine.pth"
    other.write_bytes(b"x")
    folder = tmp_path / "all"
    folder.mkdir()
    (folder / INCEPTION_FILE).write_bytes(b"y")
    assert W.resolve("inception").path == hub[1]                          # torch hub cache
    monkeypatch.setenv(W.DIR_VAR, str(folder))
    assert W.resolve("inception").path == folder / INCEPTION_FILE         # $RAYGAN_WEIGHTS beats the cache
    monkeypatch.setenv("RAYGAN_INCEPTION_WEIGHTS", str(other))
    assert W.resolve("inception").path == other                           # the file's own variable
    assert W.resolve("inception", explicit=hub[1]).path == hub[1]         # an explicit path beats all


def test_missing_weights_one_line_naming_file_and_place(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    for k in W.KNOWN.values():
        monkeypatch.delenv(k.env, raising=False)
    monkeypatch.delenv(W.DIR_VAR, raising=False)
    with pytest.raises(UserError) as e:
        W.resolve("inception")
    msg = str(e.value)
    assert "\n" not in msg and INCEPTION_FILE in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "RAYGAN_INCEPTION_WEIGHTS" in msg
    with pytest.raises(UserError, match="no such file"):
        W.resolve("inception", explicit=tmp_path / "nope.pth")            # never falls through


def test_wrong_architecture_and_truncated_weights_are_one_line_errors(hub, tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), wrong)
    with pytest.raises(UserError) as e:
        load_fid_inception(W.resolve("inception", explicit=wrong))
    assert "\n" not in str(e.value) and str(wrong) in str(e.value) and "wrong architecture" in str(e.value)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(hub[1].read_bytes()[:100_000])
    with pytest.raises(UserError, match="corrupt, truncated"):
        load_fid_inception(W.resolve("inception", explicit=cut))


# ---- pre-processing ---------------------------------------------------------------------------

def test_to_uint8_rounds_like_an_image_writer():
    x = torch.tensor([-1.0, -0.999, 0.0, 0.5, 1.0]).view(1, 1, 1, 5).expand(1, 3, 1, 5)
    assert P.to_uint8(x)[0, 0, :, 0].tolist() == [0, 0, 128, 191, 255]


def test_resize_is_pil_bicubic_to_299_in_minus_one_one():
    # a smooth image: PIL's 8-bit resize (two passes, each rounded and clipped to uint8) then
    # differs from the float resize by rounding only
    yy, xx = np.mgrid[0:20, 0:24]
    img = np.stack([120 + 60 * np.sin(xx / 5.0), 100 + 4 * yy, 90 + 3 * xx + 2 * yy], -1)[None].astype(np.uint8)
    out = P.resize_299(img)
    assert out.shape == (1, 3, 299, 299)
    pil = np.asarray(Image.fromarray(img[0]).resize((299, 299), Image.BICUBIC)).astype(np.float64)
    ours = (out[0].permute(1, 2, 0).numpy().astype(np.float64) + 1) * 127.5
    assert np.abs(ours - pil).max() <= 1.0 + 1e-3
    bilinear = np.asarray(Image.fromarray(img[0]).resize((299, 299), Image.BILINEAR)).astype(np.float64)
    assert np.abs(ours - bilinear).max() > 1.0       # the filter is told apart
    flat = np.full((1, 8, 8, 3), 51, dtype=np.uint8)
    assert torch.allclose(P.resize_299(flat), torch.full((1, 3, 299, 299), 51 / 127.5 - 1))


# ---- the formulas -----------------------------------------------------------------------------

def test_fid_matches_scipy_reference_and_is_zero_on_itself():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(300, 8))
    b = rng.normal(size=(250, 8)) @ rng.normal(size=(8, 8)) * 0.5 + 0.3
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert P.fid_from_features(a, b) == pytest.approx(ref, rel=1e-8)
    assert abs(P.fid_from_features(a, a)) < 1e-8


def test_fid_with_fewer_samples_than_dimensions_matches_eigenvalue_reference():
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=(6, 20)), rng.normal(0.2, 1.5, size=(9, 20))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    eig = np.clip(np.linalg.eigvals(s1 @ s2).real, 0, None)   # S1 S2 is similar to a PSD matrix
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(eig).sum()
    assert P.fid_from_features(a, b) == pytest.approx(ref, rel=1e-7)
    assert abs(P.fid_from_features(a, a)) < 1e-9


def _mmd2_loops(x, y):
    def k(u, v):
        return (float(np.dot(u, v)) / len(u) + 1.0) ** 3
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_unbiased_mmd_matches_brute_force():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1.0, size=(9, 5))
    assert P.mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-10)
    subsets = P.kid_subsets(len(x), len(y), n_subsets=4, subset_size=6, seed=3)
    assert all(len(a) == len(b) == 6 and len(set(a)) == 6 for a, b in subsets)
    ref = [_mmd2_loops(x[a], y[b]) for a, b in subsets]
    mean, std = P.kid(x, y, n_subsets=4, subset_size=6, seed=3)
    assert mean == pytest.approx(np.mean(ref), rel=1e-10) and std == pytest.approx(np.std(ref), rel=1e-8)
    assert len(P.kid_subsets(7, 9, n_subsets=1, subset_size=1000)[0][0]) == 7   # capped at the sample count


def test_inception_score_matches_numpy_reference():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(40, 12)) * 3
    p = scipy.special.softmax(logits, axis=1)
    ref = []
    for part in np.array_split(p, 10):
        py = part.mean(0)
        ref.append(np.exp(np.mean([np.sum(q * np.log(q / py)) for q in part])))
    mean, std = P.inception_score(logits, splits=10)
    assert mean == pytest.approx(np.mean(ref), rel=1e-10) and std == pytest.approx(np.std(ref), rel=1e-8)
    # hand values: one confident class per sample, all classes equally often -> IS = number of classes
    sharp = np.eye(4)[np.arange(40) % 4] * 100.0
    assert P.inception_score(sharp)[0] == pytest.approx(4.0, rel=1e-6)
    assert P.inception_score(np.zeros((20, 4)))[0] == pytest.approx(1.0)


# ---- intra-LPIPS protocol ---------------------------------------------------------------------

def test_intra_lpips_protocol_nearest_shot_and_cap_of_50():
    """130 samples around 2 shots: a cluster exceeds 50 members, so the published cap applies."""
    g = torch.Generator().manual_seed(5)
    shots = torch.stack([torch.full((3, 4, 4), -0.5), torch.full((3, 4, 4), 0.5)])
    samples = torch.cat([shots[0] + 0.2 * torch.randn(80, 3, 4, 4, generator=g),
                         shots[1] + 0.2 * torch.randn(50, 3, 4, 4, generator=g)])

    def dist(a, b):
        return (a - b).abs().mean((1, 2, 3))

    means = []
    for j in range(2):
        members = [i for i in range(len(samples))
                   if min(range(2), key=lambda s: float(dist(samples[i:i + 1], shots[s:s + 1]))) == j]
        if len(members) > 50:
            perm = torch.randperm(len(members), generator=torch.Generator().manual_seed(j)).tolist()
            members = sorted(members[p] for p in perm[:50])
        pairs = [float(dist(samples[a:a + 1], samples[b:b + 1])) for a in members for b in members if a < b]
        means.append(np.mean(pairs))
    assert D.intra_cluster_diversity(samples, shots, dist) == pytest.approx(np.mean(means), rel=1e-9)


# ---- reference statistics cache ---------------------------------------------------------------

def test_reference_cache_key_and_reuse(tmp_path):
    key = P.reference_cache_path(tmp_path, "embedded 32px", "ab" * 32, 100)
    assert key != P.reference_cache_path(tmp_path, "embedded 32px", "cd" * 32, 100)   # other weights
    assert key != P.reference_cache_path(tmp_path, "embedded 32px", "ab" * 32, 200)   # other count
    assert key != P.reference_cache_path(tmp_path, "folder x", "ab" * 32, 100)        # other set
    calls = []

    def compute():
        calls.append(1)
        return np.arange(6.0).reshape(3, 2)

    first = P.cached_features(key, compute)
    again = P.cached_features(key, compute)
    assert len(calls) == 1 and np.array_equal(first, again)
    key.write_bytes(b"garbage")
    assert np.array_equal(P.cached_features(key, compute), first) and len(calls) == 2
