"""Semi-paired label-to-image losses against hand computations and slow loops (METHODS.md,
"Semi-paired label-to-image")."""
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from raygan.errors import UserError
from raygan.losses.segmentation import (FlipCropParams, class_balance_weights, cycle_loss, feature_matching,
                                        oasis_d_loss, oasis_g_loss, random_flip_crop, sample_flip_crop,
                                        transform_consistency, unconditional_d_loss, unconditional_g_loss)
from raygan.models.vgg import VGG19_FILE, VGGPerceptual, load_vgg_perceptual


def lse(v):
    return math.log(sum(math.exp(a) for a in v))


def onehot_of(classes, n):
    """[B, H, W] nested lists -> float one-hot [B, n, H, W]."""
    return F.one_hot(torch.tensor(classes), n).permute(0, 3, 1, 2).double()


def logits_of(pixels):
    """{(h, w): (v_0, ..., v_N)} for a 2x2 map, B=1 -> [1, N+1, 2, 2]."""
    out = torch.zeros(1, len(pixels[(0, 0)]), 2, 2, dtype=torch.float64)
    for (h, w), v in pixels.items():
        out[0, :, h, w] = torch.tensor(v, dtype=torch.float64)
    return out


# B=1, N=2, 2x2: classes [[0, 0], [0, 1]]; channel 2 is "fake".
CLASSES = [[[0, 0], [0, 1]]]
REAL = {(0, 0): (1.0, 0.0, 0.0), (0, 1): (0.0, 2.0, 1.0), (1, 0): (2.0, 0.0, -1.0), (1, 1): (0.0, 1.0, 0.0)}
FAKE = {(0, 0): (0.5, 0.0, 1.0), (0, 1): (0.0, -1.0, 2.0), (1, 0): (1.0, 1.0, 0.0), (1, 1): (0.0, 3.0, -2.0)}


def balanced_ce_by_hand(pixels):
    w = {0: 4 / 3, 1: 4.0}  # H·W / count: class 0 has 3 of 4 pixels, class 1 one
    total = 0.0
    for (h, wd), v in pixels.items():
        c = CLASSES[0][h][wd]
        total += w[c] * (lse(v) - v[c])
    return total / 4  # OASIS: mean over pixels


def test_class_balance_weights_by_hand_with_an_absent_class():
    t = onehot_of([[[0, 0], [0, 1]], [[0, 0], [1, 1]]], 3)  # counts 5, 3, 0 over B·H·W = 8
    w = class_balance_weights(t)
    assert w.tolist() == pytest.approx([8 / 5, 8 / 3, 0.0])
    # METHODS.md's form: H·W / Σ_{h,w} E_t[t_hwc]
    mean_map = t.mean(0)
    for c in (0, 1):
        assert w[c].item() == pytest.approx(4 / mean_map[c].sum().item())
    # OASIS's get_class_balancing: numel / (N · n_present · count) -> ours / n_present
    counts = t.sum((0, 2, 3))
    oasis = t.numel() / (3 * 2 * counts[:2])
    assert class_balance_weights(t, oasis_normalise=True)[:2].tolist() == pytest.approx(oasis.tolist())
    assert class_balance_weights(t, oasis_normalise=True)[2].item() == 0.0
    assert torch.isfinite(oasis_d_loss(torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2), t.float()))


def test_oasis_d_and_g_losses_by_hand():
    t = onehot_of(CLASSES, 2)
    real, fake = logits_of(REAL), logits_of(FAKE)
    fake_term = sum(lse(v) - v[2] for v in FAKE.values()) / 4
    assert oasis_d_loss(real, fake, t).item() == pytest.approx(balanced_ce_by_hand(REAL) + fake_term, rel=1e-12)
    assert oasis_g_loss(fake, t).item() == pytest.approx(balanced_ce_by_hand(FAKE), rel=1e-12)


def test_oasis_d_loss_matches_a_per_pixel_loop():
    g = torch.Generator().manual_seed(0)
    b, n, h, w = 2, 3, 3, 3
    classes = torch.randint(0, n, (b, h, w), generator=g)
    classes[0, 0, 0], classes[0, 0, 1], classes[0, 0, 2] = 0, 1, 2
    t = F.one_hot(classes, n).permute(0, 3, 1, 2).double()
    real = torch.randn(b, n + 1, h, w, generator=g, dtype=torch.float64)
    fake = torch.randn(b, n + 1, h, w, generator=g, dtype=torch.float64)
    count = [int((classes == c).sum()) for c in range(n)]
    weight = [b * h * w / k for k in count]
    total_real = total_fake = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                c = int(classes[i, y, x])
                v = real[i, :, y, x].tolist()
                total_real += weight[c] * (lse(v) - v[c])
                u = fake[i, :, y, x].tolist()
                total_fake += lse(u) - u[n]
    expected = (total_real + total_fake) / (b * h * w)
    assert oasis_d_loss(real, fake, t).item() == pytest.approx(expected, rel=1e-12)


def test_feature_matching_skips_the_last_layer_and_detaches_real():
    g = torch.Generator().manual_seed(1)
    real = [torch.randn(2, 3, 4, 4, generator=g, requires_grad=True) for _ in range(3)]
    fake = [torch.randn(2, 3, 4, 4, generator=g, requires_grad=True) for _ in range(3)]
    expected = sum(float((r - f).detach().abs().sum()) / r.numel() for r, f in zip(real[:2], fake[:2]))
    loss = feature_matching(real, fake)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert all(r.grad is None for r in real)
    assert fake[0].grad is not None and fake[2].grad is None


def test_cycle_loss_by_hand_ignores_the_fake_channel_and_reaches_the_logits():
    t = onehot_of(CLASSES, 2)
    logits = logits_of(REAL).requires_grad_(True)
    expected = 0.0
    for (h, w), v in REAL.items():
        c = CLASSES[0][h][w]
        expected += lse(v[:2]) - v[c]  # N-way softmax: the fake channel is dropped
    assert cycle_loss(logits, t).item() == pytest.approx(expected / 4, rel=1e-12)

    changed = logits.detach().clone()
    changed[:, 2] += torch.tensor([[5.0, -3.0], [10.0, 0.5]], dtype=torch.float64)
    assert cycle_loss(changed, t).item() == pytest.approx(expected / 4, rel=1e-12)

    cycle_loss(logits, t).backward()
    assert logits.grad[:, :2].abs().sum() > 0
    assert logits.grad[:, 2].abs().sum() == 0


def test_cycle_loss_trains_g_through_a_frozen_d():
    torch.manual_seed(0)
    gen = torch.nn.Conv2d(2, 3, 1)
    disc = torch.nn.Conv2d(3, 3, 1).requires_grad_(False)  # N=2 classes + fake
    t = onehot_of(CLASSES, 2).float()
    cycle_loss(disc(gen(t)), t).backward()
    assert gen.weight.grad is not None and gen.weight.grad.abs().sum() > 0
    assert disc.weight.grad is None


def softplus(x):
    return math.log1p(math.exp(x))


def test_unconditional_losses_by_hand():
    d_real = torch.tensor([0.5, -1.0, 2.0])
    d_fake = torch.tensor([1.5, -0.5])
    assert unconditional_g_loss(d_fake).item() == pytest.approx((softplus(-1.5) + softplus(0.5)) / 2)
    expected = (softplus(-0.5) + softplus(1.0) + softplus(-2.0)) / 3 + (softplus(1.5) + softplus(-0.5)) / 2
    assert unconditional_d_loss(d_real, d_fake).item() == pytest.approx(expected)


# ----------------------------------------------------------------------------- transforms

PALETTE = torch.tensor([[-1.0, 0.2, 0.9], [0.5, -0.8, 0.1], [0.7, 0.7, -0.3]])  # class -> RGB


def colour(onehot):
    """A pointwise 'generator': each class painted with its palette colour."""
    return torch.einsum("bnhw,nk->bkhw", onehot, PALETTE)


def test_flip_and_translation_are_exact_pixel_moves():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    full = torch.tensor([4, 4])
    p = FlipCropParams(flip=torch.tensor([True, False]), top=torch.tensor([0, 1]), left=torch.tensor([0, -1]),
                       height=full, width=full)
    y = random_flip_crop(x, p)
    assert torch.equal(y[0], x[0].flip(-1))
    rows = [1, 2, 3, 3]  # shifted up by one, edge replicated
    cols = [0, 0, 1, 2]  # shifted right by one
    assert torch.equal(y[1, 0], x[1, 0][rows][:, cols])
    labels = x.long()[:, 0]
    assert torch.equal(random_flip_crop(labels, p, labels=True), y[:, 0].long())


def test_random_flip_crop_keeps_label_boundaries_on_image_edges():
    g = torch.Generator().manual_seed(0)
    b, h, w = 6, 12, 12
    rows, cols = torch.arange(h)[:, None], torch.arange(w)[None]
    classes = torch.zeros(b, h, w, dtype=torch.long)
    for i in range(b):  # class 1 where (row >= R) == (col >= C): both boundary directions
        classes[i] = ((rows >= 7 - i // 2) == (cols >= 3 + i)).long()
    t = F.one_hot(classes, 2).permute(0, 3, 1, 2).float()
    image = 2 * t[:, 1:2].expand(b, 3, h, w) - 1  # -1 on class 0, +1 on class 1
    p = sample_flip_crop(b, h, w, g, min_scale=0.5, max_shift=0.25)
    assert p.flip.any() and (~p.flip).any() and (p.height < h).any()
    ti, tt = random_flip_crop(image, p), random_flip_crop(t, p, labels=True)
    assert torch.equal(tt.sum(1), torch.ones(b, h, w))  # still one-hot
    is_one = tt[:, 1].bool()
    # the image's step edge crosses 0 exactly where the label changes (0 only at exact ties)
    assert (ti[:, 0][is_one] > -1e-6).all() and (ti[:, 0][~is_one] < 1e-6).all()
    # a known case: crop cols 2..7 of an edge at col 5 (3 px in), upsampled 2x, flipped
    q = FlipCropParams(flip=torch.tensor([True]), top=torch.tensor([0]), left=torch.tensor([2]),
                       height=torch.tensor([6]), width=torch.tensor([6]))
    edge = torch.zeros(1, h, w, dtype=torch.long)
    edge[:, :, 5:] = 1
    lab = random_flip_crop(edge, q, labels=True)
    assert lab[0, 0].tolist() == [1] * 6 + [0] * 6
    img = random_flip_crop(2 * edge[:, None].float() - 1, q)
    assert (img[0, 0, 0, :6] > 0).all() and (img[0, 0, 0, 6:] < 0).all()


def test_sample_flip_crop_is_deterministic_from_the_generator():
    a = sample_flip_crop(5, 16, 16, torch.Generator().manual_seed(7))
    b = sample_flip_crop(5, 16, 16, torch.Generator().manual_seed(7))
    for f in ("flip", "top", "left", "height", "width"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert ((a.top >= -2) & (a.top + a.height <= 18)).all()
    assert ((a.height >= 12) & (a.height <= 16)).all()


def test_transform_consistency_zero_for_an_equivariant_generator():
    g = torch.Generator().manual_seed(5)
    classes = torch.randint(0, 3, (4, 8, 8), generator=g)
    t = F.one_hot(classes, 3).permute(0, 3, 1, 2).float()
    full = torch.full((4,), 8)
    p = FlipCropParams(flip=torch.tensor([True, False, True, False]), top=torch.tensor([0, 1, -2, 0]),
                       left=torch.tensor([0, -1, 2, 3]), height=full, width=full)
    lhs = colour(random_flip_crop(t, p, labels=True))
    rhs = random_flip_crop(colour(t), p)
    assert transform_consistency(lhs, rhs).item() == 0.0
    ramp = torch.linspace(-1, 1, 8).view(1, 1, 1, 8)  # position-dependent: not equivariant
    lhs2 = colour(random_flip_crop(t, p, labels=True)) + ramp
    rhs2 = random_flip_crop(colour(t) + ramp, p)
    expected = (lhs2 - rhs2).abs().mean().item()
    assert transform_consistency(lhs2, rhs2).item() == pytest.approx(expected) and expected > 0


# ----------------------------------------------------------------------------- VGG perceptual

@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory):
    """Random weights in torchvision's exact vgg19 `features` layout (classifier left out)."""
    torch.manual_seed(0)
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    assert "features.34.weight" in state and "features.0.bias" in state
    path = tmp_path_factory.mktemp("hub") / "checkpoints" / VGG19_FILE
    path.parent.mkdir()
    torch.save(state, path)
    return path


def test_vgg_perceptual_loads_and_compares(vgg_file):
    model = load_vgg_perceptual(vgg_file)
    assert isinstance(model, VGGPerceptual)
    state = torch.load(vgg_file, weights_only=True)
    assert torch.equal(model.features[28].weight, state["features.28.weight"])
    assert not any(p.requires_grad for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1  # small: VGG19 on 2 CPU cores
    y = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    assert model(x, x).item() == 0.0
    fake = y.clone().requires_grad_(True)
    loss = model(fake, x)
    assert loss.item() > 0
    loss.backward()
    assert fake.grad.abs().sum() > 0
    feats = model.layer_features(x)
    assert [f.shape[1] for f in feats] == [64, 128, 256, 512, 512]
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2, 1]


def test_vgg_default_file_absent_gives_none_present_loads(vgg_file, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    assert load_vgg_perceptual() is None
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(vgg_file.parent.parent))
    assert isinstance(load_vgg_perceptual(), VGGPerceptual)


def test_vgg_explicit_missing_or_corrupt_file_is_a_one_line_user_error(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError) as err:
        load_vgg_perceptual(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"this is not a checkpoint\n\x00\x01")
    with pytest.raises(UserError) as err:
        load_vgg_perceptual(corrupt)
    assert str(corrupt) in str(err.value) and "\n" not in str(err.value)

    wrong = tmp_path / "wrong.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(UserError) as err:
        load_vgg_perceptual(wrong)
    assert str(wrong) in str(err.value) and "\n" not in str(err.value)
