import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from raygan.data import synthetic as S


def test_scenes_deterministic_and_prefix_stable():
    a, b = S.sample_scenes(3, 8), S.sample_scenes(3, 20)
    for name in S.Scenes.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name)[:8])
    assert not np.array_equal(S.sample_scenes(4, 8).cx, a.cx)
    for style in S.STYLES:
        assert torch.equal(S.render(a, 32, style), S.render(S.sample_scenes(3, 8), 32, style))
        # rendering in chunks must not change pixels
        assert torch.equal(S.render(b, 32, style)[:8], S.render(b, 32, style, chunk=3)[:8])


@pytest.mark.parametrize("size", [16, 32, 64])
def test_render_shape_and_range(size):
    sc = S.sample_scenes(0, 5)
    for style in S.STYLES:
        x = S.render(sc, size, style)
        assert x.shape == (5, 3, size, size) and x.dtype == torch.float32
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.05
    with pytest.raises(ValueError):
        S.render(sc, 32, "photo")
    with pytest.raises(ValueError):
        S.render(sc, 48, "source")


def test_styles_differ():
    sc = S.sample_scenes(1, 64)
    src, tgt = (S.render(sc, 32, s) * 0.5 + 0.5 for s in S.STYLES)
    chroma = lambda x: (x.amax(1) - x.amin(1)).mean().item()
    assert chroma(src) > 0.15 and chroma(tgt) < 0.09 and chroma(src) > 3 * chroma(tgt)  # colour vs grey
    assert tgt.mean(1).median() > 0.85                       # mostly paper
    assert (tgt.mean(1) < 0.4).float().mean() > 0.02         # with dark ink
    assert src.mean(1).median() < 0.7


def _edges(x, thresh):
    """Pixels whose 3x3 neighbourhood spans a colour change > thresh."""
    hi = F.max_pool2d(x, 3, 1, 1)
    lo = -F.max_pool2d(-x, 3, 1, 1)
    return (hi - lo).amax(1) > thresh


def test_sketch_ink_lies_on_source_boundaries():
    sc = S.sample_scenes(2, 64)
    src, tgt = S.render(sc, 64, "source"), S.render(sc, 64, "target")
    ink = tgt.mean(1) < -0.2                                  # dark pixels of the sketch
    edges = F.max_pool2d(_edges(src, 0.15).float()[:, None], 3, 1, 1)[:, 0] > 0
    paired = (ink & edges).sum() / ink.sum()
    shuffled = (ink & edges.roll(1, 0)).sum() / ink.sum()    # sketch vs another scene
    assert paired > 0.9, paired
    assert shuffled < 0.5, shuffled
    # and most strong source boundaries are drawn
    drawn = F.max_pool2d(ink.float()[:, None], 5, 1, 2)[:, 0] > 0
    strong = _edges(src, 0.5)
    assert (strong & drawn).sum() / strong.sum() > 0.9


def test_scene_labels():
    sc = S.sample_scenes(5, 200)
    lab = S.scene_labels(sc)
    assert lab["kind"].dtype == torch.long and lab["count"].dtype == torch.long
    assert torch.equal(lab["count"], torch.as_tensor(sc.count - 1))
    assert set(lab["count"].tolist()) == {0, 1, 2}
    assert set(lab["kind"].tolist()) == set(range(len(S.KINDS)))
    # slot 0 is the largest present shape and the kind label is its kind
    for i in range(len(sc)):
        assert sc.r[i, 0] == sc.r[i, :sc.count[i]].max()
    assert torch.equal(lab["kind"], torch.as_tensor(sc.kind[:, 0]))


def test_shape_areas_match_geometry():
    # one centred shape of each kind; the area inside its signed distance field (and the
    # painted area of the source image) must match the polygon's area
    n = len(S.KINDS)
    sc = S.sample_scenes(0, n)
    sc.count[:] = 1
    sc.kind[:, 0] = np.arange(n)
    sc.cx[:, 0] = sc.cy[:, 0] = 0.5
    sc.r[:, 0] = 0.3
    sc.theta[:, 0] = 0.4
    s36, s60 = math.sin(math.pi / 5), math.sin(math.pi / 3)
    unit_area = {"circle": math.pi * 0.8 ** 2, "square": 1.44 ** 2, "ring": math.pi * (0.9 ** 2 - 0.5 ** 2),
                 "triangle": 1.5 * 1.08 ** 2 * s60, "star": 5 * 1.08 * 0.46 * s36}
    xx, yy = S._grid(256)
    sdf, _ = S._slot_fields(sc, 0, xx, yy)
    area = (sdf < 0).float().mean(1)
    for k, name in enumerate(S.KINDS):
        assert area[k].item() == pytest.approx(unit_area[name] * 0.09, rel=0.03), name
    # an exact distance field grows by one pixel per pixel away from the outline (|grad| = 1)
    img = sdf.reshape(n, 256, 256)
    grad = torch.hypot(img[:, 1:, :-1] - img[:, :-1, :-1], img[:, :-1, 1:] - img[:, :-1, :-1]) * 256
    near = img[:, :-1, :-1].abs() < 0.05
    assert ((grad[near] - 1).abs() < 0.05).float().mean() > 0.97
    bg = S.render(sc.subset(slice(0, n)), 64, "source")
    plain = sc.subset(slice(0, n))
    plain.count[:] = 0                                      # same background, no shapes
    painted = ((bg - S.render(plain, 64, "source")).abs().amax(1) > 0.02).float().mean((1, 2))
    assert torch.allclose(painted, area, atol=0.03)


def test_sketch_hides_occluded_lines():
    # a big circle behind a square that covers part of its outline: in the sketch, the
    # circle's outline must not show through the square's interior
    sc = S.sample_scenes(0, 1)
    sc.count[:] = 2
    sc.kind[0, :2] = [S.KINDS.index("circle"), S.KINDS.index("square")]
    sc.cx[0, :2], sc.cy[0, :2], sc.r[0, :2], sc.theta[0, :2] = [0.4, 0.62], [0.5, 0.5], [0.3, 0.15], [0, 0]
    size = 64
    sketch = S.render(sc, size, "target")[0].mean(0).flatten()
    xx, yy = S._grid(size)
    circle, _ = S._slot_fields(sc, 0, xx, yy)
    square, _ = S._slot_fields(sc, 1, xx, yy)
    circle_line = circle[0].abs() * size < 0.5
    inside_square = square[0] * size < -2.5
    assert (circle_line & inside_square).sum() >= 5          # the setup really overlaps
    assert (sketch[circle_line & inside_square] > 0.5).all()   # paper there, no ink
    assert (sketch[circle_line & (square[0] * size > 2.5)] < 0).all()  # ink where visible


def test_label_changes_image():
    # a scene's kind label is visible: changing the largest shape's kind changes the pixels
    sc = S.sample_scenes(6, 4)
    other = sc.subset(slice(None))
    other.kind = sc.kind.copy()
    other.kind[:, 0] = (sc.kind[:, 0] + 1) % len(S.KINDS)
    for style in S.STYLES:
        diff = (S.render(sc, 32, style) - S.render(other, 32, style)).abs().flatten(1).amax(1)
        assert (diff > 0.5).all()


def test_few_shot_and_held_out():
    shots = S.few_shot_target()
    assert shots.shape == (10, 3, 32, 32)
    assert torch.equal(shots, S.render(S.sample_scenes(0, 10), 32, "target"))
    assert S.few_shot_target(size=64, n_shots=3).shape == (3, 3, 64, 64)
    held = S.held_out("target", 50)
    assert held.shape == (50, 3, 32, 32)
    # held-out images are never shots
    d = (held[:, None] - shots[None]).abs().flatten(2).amax(2)
    assert d.min() > 0.1
    # same seed -> same scenes in both styles; different seed -> different scenes
    src = S.held_out("source", 50)
    ink = held.mean(1) < -0.2
    edges = _edges(src, 0.15)
    edges = F.max_pool2d(edges.float()[:, None], 3, 1, 1)[:, 0] > 0
    assert (ink & edges).sum() / ink.sum() > 0.9
    assert not torch.equal(S.held_out("target", 5, seed=1), held[:5])
