import numpy as np
import pytest
import torch

from raygan.data import scenes as S
from raygan.data.splits import semi_paired_split
from raygan.errors import UserError

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def big():
    """2000 training scenes at 32 px (rendered once for the module)."""
    return S.render_scenes(0, 2000, 32)


def test_constants():
    assert len(S.CLASSES) == S.N_CLASSES == 8 and len(set(S.CLASSES)) == 8
    assert S.RARE == [S.CLASSES.index("person")]
    assert S.PALETTE.shape == (S.N_CLASSES, 3)


def test_deterministic_and_prefix_stable(big):
    x5, y5 = S.render_scenes(0, 5, 32)
    x9, y9 = S.render_scenes(0, 9, 32)
    assert torch.equal(x5, x9[:5]) and torch.equal(y5, y9[:5])
    assert torch.equal(x9, big[0][:9]) and torch.equal(y9, big[1][:9])
    x5b, y5b = S.render_scenes(0, 5, 32)                       # same call again
    assert torch.equal(x5, x5b) and torch.equal(y5, y5b)
    x1, y1 = S.render_scenes(1, 5, 32)
    assert not torch.equal(x1, x5) and not torch.equal(y1, y5)


@pytest.mark.parametrize("size", [32, 48, 64])
def test_shapes_and_ranges(size):
    x, y = S.render_scenes(3, 4, size)
    assert x.shape == (4, 3, size, size) and x.dtype == torch.float32
    assert y.shape == (4, size, size) and y.dtype == torch.int64
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1
    assert y.min() >= 0 and y.max() < S.N_CLASSES
    for bad in (16, 40, 0):
        with pytest.raises(ValueError):
            S.render_scenes(0, 1, bad)
    assert S.render_scenes(0, 0, 32)[0].shape == (0, 3, 32, 32)


def test_layout_same_at_two_sizes():
    _, y32 = S.render_scenes(2, 20, 32)
    _, y64 = S.render_scenes(2, 20, 64)
    assert (y64[:, ::2, ::2] == y32).float().mean() > 0.9     # same layout, finer raster


def test_every_class_occurs_and_rare_is_rare(big):
    x, y = big
    freq = S.class_frequencies(y, S.N_CLASSES)
    assert freq.shape == (S.N_CLASSES,) and abs(freq.sum() - 1) < 1e-9
    assert (freq > 0).all(), dict(zip(S.CLASSES, freq))
    present = np.array([(y == c).flatten(1).any(1).float().mean().item() for c in range(S.N_CLASSES)])
    for c in S.RARE:
        assert freq[c] < 0.005                                 # tiny pixel share
        assert 0.04 < present[c] < 0.2                         # a minority of scenes ...
        assert (y == c).flatten(1).any(1).sum() >= 50          # ... but plenty in 2000 scenes
        common = [k for k in range(S.N_CLASSES) if k not in S.RARE]
        assert freq[c] < freq[common].min()
    assert present[S.SKY] == 1 and present[S.GRASS] == 1


def test_textures_and_labels_do_not_determine_images(big):
    x, y = big
    x, y = x[:400], y[:400]
    pix = x.permute(0, 2, 3, 1)
    means = []
    for c in S.TEXTURED:
        m = y == c
        # within one scene the class is textured, not flat ...
        per_scene = [pix[i][m[i]].std(0).mean().item() for i in range(len(y)) if m[i].sum() >= 6]
        assert np.median(per_scene) > 0.02, S.CLASSES[c]
        means.append(pix[m].mean(0))
        # ... and its colour varies from scene to scene
        scene_means = torch.stack([pix[i][m[i]].mean(0) for i in range(len(y)) if m[i].sum() >= 6])
        assert scene_means.std(0).mean() > 0.03, S.CLASSES[c]
    means = torch.stack(means)
    d = torch.cdist(means, means) + torch.eye(len(means)) * 9
    assert d.min() > 0.05                                      # class colours are distinct on average


def test_semi_paired_split_sizes_and_ratio():
    for n, r in [(1000, 0.1), (1000, 0.25), (999, 0.5), (100, 0.05), (10, 1.0), (7, 0.3)]:
        sp = semi_paired_split(n, r, seed=0)
        p, xu, tu = sp.paired, sp.unpaired_images, sp.unpaired_labels
        everything = np.concatenate([p, xu, tu])
        assert len(set(everything.tolist())) == len(everything)              # disjoint
        assert everything.min() >= 0 and everything.max() < n
        assert len(p) >= 1 and len(xu) == len(tu) and len(everything) >= n - 2
        assert sp.ratio == len(p) / (len(p) + len(xu))
        if n >= 100:
            assert abs(sp.ratio - r) < 0.02, (n, r, sp)
    full = semi_paired_split(10, 1.0, 0)
    assert len(full.paired) == 10 and len(full.unpaired_images) == len(full.unpaired_labels) == 0
    a, b = semi_paired_split(200, 0.2, 3), semi_paired_split(200, 0.2, 3)
    assert np.array_equal(a.paired, b.paired) and np.array_equal(a.unpaired_labels, b.unpaired_labels)
    assert not np.array_equal(a.paired, semi_paired_split(200, 0.2, 4).paired)


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "half"])
def test_bad_ratio_is_user_error(bad):
    with pytest.raises(UserError) as e:
        semi_paired_split(100, bad, 0)
    assert "\n" not in str(e.value) and "(0, 1]" in str(e.value)


def test_held_out_is_disjoint_stream():
    xh, yh = S.held_out(6, 32, seed=0)
    xt, yt = S.render_scenes(0, 6, 32)
    assert xh.shape == xt.shape and not torch.equal(xh, xt)
    assert torch.equal(xh, S.held_out(6, 32, seed=0)[0]) and torch.equal(yh, S.render_scenes(S.HELD_OUT_OFFSET, 6)[1])


def test_colorize():
    _, y = S.render_scenes(0, 3, 32)
    c = S.colorize(y)
    assert c.shape == (3, 3, 32, 32) and c.min() >= -1 and c.max() <= 1
    assert S.colorize(y[0]).shape == (3, 32, 32)
    pal = torch.from_numpy(S.PALETTE) * 2 - 1
    assert torch.allclose(c[0, :, 0, 0], pal[y[0, 0, 0]])
