"""Label-to-image networks: Haar DWT, SPADE generator, U-Net D_c, wavelet D_u."""

import pytest
import torch
from torch.nn import functional as F

from raygan.models.spade import SPADE, SPADEGenerator, SPADEResBlock
from raygan.models.uncond_disc import UncondDiscriminator
from raygan.models.unet_disc import UNetDiscriminator
from raygan.models.wavelet import haar_dwt, haar_idwt, wavelet_downsample, wavelet_upsample

N_CLASSES = 5
SMALL = dict(base=8, z_dim=8, channel_max=32)  # narrow nets keep the tests fast


def onehot(labels, n=N_CLASSES):
    return F.one_hot(labels, n).permute(0, 3, 1, 2).float()


def random_labels(b, size, n=N_CLASSES, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Blocky maps (like segmentations), upsampled from a coarse grid.
    coarse = torch.randint(0, n, (b, 1, size // 8, size // 8), generator=g).float()
    return onehot(F.interpolate(coarse, size=(size, size)).long()[:, 0], n)


def grads_ok(module):
    missing = [n for n, p in module.named_parameters() if p.requires_grad
               and (p.grad is None or not torch.isfinite(p.grad).all() or p.grad.abs().sum() == 0)]
    assert not missing, f"no gradient reached: {missing}"


# ---------------------------------------------------------------- wavelets


def test_haar_inverse_and_orthonormal():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 6, dtype=torch.float64)
    y = haar_dwt(x)
    assert y.shape == (2, 12, 4, 3)
    torch.testing.assert_close(haar_idwt(y), x, rtol=0, atol=1e-12)
    w = torch.randn(2, 12, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(haar_dwt(haar_idwt(w)), w, rtol=0, atol=1e-12)
    torch.testing.assert_close(y.square().sum(), x.square().sum(), rtol=1e-12, atol=0)
    # Linear + norm preserving => inner products preserved too.
    x2 = torch.randn_like(x)
    torch.testing.assert_close((haar_dwt(x2) * y).sum(), (x2 * x).sum(), rtol=1e-10, atol=1e-10)


def test_haar_bands_by_hand():
    v = 0.7
    y = haar_dwt(torch.full((1, 2, 4, 4), v, dtype=torch.float64))
    # Orthonormal Haar: LL = (a + b + c + d) / 2 = 4v / 2 = 2v; details vanish.
    torch.testing.assert_close(y[:, :2], torch.full((1, 2, 2, 2), 2 * v, dtype=torch.float64))
    assert y[:, 2:].abs().max() == 0
    # One 2x2 block [[a, b], [c, d]] -> LL, LH (rows), HL (columns), HH, band-major.
    blk = torch.tensor([[1.0, 2.0], [3.0, 5.0]], dtype=torch.float64).view(1, 1, 2, 2)
    a, b, c, d = 1.0, 2.0, 3.0, 5.0
    want = torch.tensor([a + b + c + d, -a - b + c + d, -a + b - c + d, a - b - c + d],
                        dtype=torch.float64) / 2
    torch.testing.assert_close(haar_dwt(blk).flatten(), want)
    # Channel layout: [LL(C), LH(C), HL(C), HH(C)].
    x = torch.zeros(1, 3, 2, 2, dtype=torch.float64)
    x[0, 1] = blk[0, 0]
    assert torch.equal(haar_dwt(x)[0, :, 0, 0].view(4, 3)[:, 1], want)
    assert haar_dwt(x)[0, :, 0, 0].view(4, 3)[:, [0, 2]].abs().max() == 0


def test_wavelet_resampling_keeps_constants():
    x = torch.full((1, 3, 8, 8), 0.3, dtype=torch.float64)
    up, down = wavelet_upsample(haar_dwt(x)), wavelet_downsample(haar_dwt(x))
    assert up.shape == (1, 12, 8, 8) and down.shape == (1, 12, 2, 2)
    # Away from the zero-padded border a constant stays constant.
    torch.testing.assert_close(haar_idwt(up)[..., 4:12, 4:12], torch.full((1, 3, 8, 8), 0.3,
                                                                          dtype=torch.float64))
    torch.testing.assert_close(haar_idwt(down)[..., 1:3, 1:3], torch.full((1, 3, 2, 2), 0.3,
                                                                          dtype=torch.float64))


# ---------------------------------------------------------------- SPADE


def test_spade_layer_and_block():
    torch.manual_seed(0)
    seg = random_labels(2, 16)
    spade = SPADE(6, N_CLASSES, hidden=4)
    x = torch.randn(2, 6, 8, 8)
    assert spade(x, seg).shape == x.shape
    # Zero gamma/beta convs leave the plain param-free norm.
    for m in (spade.mlp_gamma, spade.mlp_beta):
        torch.nn.init.zeros_(m.weight), torch.nn.init.zeros_(m.bias)
    torch.testing.assert_close(spade(x, seg), F.batch_norm(x, None, None, training=True))
    inst = SPADE(6, N_CLASSES, hidden=4, norm="instance")
    assert isinstance(inst.param_free_norm, torch.nn.InstanceNorm2d)
    with pytest.raises(ValueError):
        SPADE(6, N_CLASSES, norm="layer")
    blk, same = SPADEResBlock(6, 4, N_CLASSES, hidden=4), SPADEResBlock(4, 4, N_CLASSES, hidden=4)
    assert blk.learned_shortcut and not same.learned_shortcut
    assert hasattr(blk.conv_0, "parametrizations") and hasattr(blk.conv_s, "parametrizations")
    assert blk(x, seg).shape == (2, 4, 8, 8)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("wavelet", [True, False])
def test_generator_shapes_range_and_inputs(size, wavelet):
    torch.manual_seed(0)
    g = SPADEGenerator(N_CLASSES, size, wavelet=wavelet, **SMALL).eval()
    seg = random_labels(2, size)
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        out = g(seg, z)
        assert out.shape == (2, 3, size, size)
        assert out.abs().max() <= 1 and torch.isfinite(out).all()
        assert g(seg).shape == (2, 3, size, size)  # z sampled
        torch.testing.assert_close(g(seg, z), out)  # deterministic given z in eval
        assert (g(seg, torch.randn_like(z)) - out).abs().mean() > 1e-4  # z matters
        # The label map matters: flip the top-left quarter to another class.
        seg2 = seg.clone()
        q = size // 4
        seg2[:, :, :q, :q] = onehot((seg[:, :, :q, :q].argmax(1) + 1) % N_CLASSES)
        diff = (g(seg2, z) - out).abs().mean(1)
        assert diff.mean() > 1e-4
        # ...and mostly where it changed (receptive fields do spread it).
        assert diff[:, :q, :q].mean() > diff[:, -q:, -q:].mean()
    if wavelet:
        assert g.resolutions[-1] == size // 2 and len(g.to_wavelets) == len(g.body)
    else:
        assert g.resolutions[-1] == size


def test_generator_non_square_and_wavelet_levels():
    g = SPADEGenerator(N_CLASSES, 32, wavelet=True, wavelet_levels=2, **SMALL).eval()
    assert len(g.to_wavelets) == 2
    with torch.no_grad():
        assert g(random_labels(1, 64)[..., :32, :]).shape == (1, 3, 32, 64)
    with pytest.raises(ValueError):
        g(random_labels(1, 32)[:, :3])
    g0 = SPADEGenerator(N_CLASSES, 32, wavelet=False, base=8, z_dim=0)
    assert g0.fc.in_channels == N_CLASSES and g0(random_labels(2, 32)).shape == (2, 3, 32, 32)


@pytest.mark.parametrize("wavelet", [True, False])
def test_generator_gradients_and_config_roundtrip(wavelet):
    torch.manual_seed(0)
    g = SPADEGenerator(N_CLASSES, 32, wavelet=wavelet, **SMALL)
    assert g.fc.in_channels == N_CLASSES + SMALL["z_dim"]
    seg = random_labels(4, 32)
    out = g(seg, torch.randn(4, SMALL["z_dim"]))
    (out * torch.randn_like(out)).sum().backward()
    grads_ok(g)
    g2 = SPADEGenerator(**g.config)
    g2.load_state_dict(g.state_dict(), strict=True)
    g.eval(), g2.eval()
    z = torch.randn(2, SMALL["z_dim"])
    with torch.no_grad():
        torch.testing.assert_close(g2(seg[:2], z), g(seg[:2], z))


# ---------------------------------------------------------------- D_c


@pytest.mark.parametrize("size", [32, 64])
def test_unet_discriminator(size):
    torch.manual_seed(0)
    d = UNetDiscriminator(N_CLASSES, size, base=8, channel_max=32)
    x = torch.randn(2, 3, size, size, requires_grad=True)
    logits, feats = d(x, return_feats=True)
    assert logits.shape == (2, N_CLASSES + 1, size, size)
    n = len(d.body_down)
    assert n == {32: 3, 64: 4}[size] and len(feats) == 2 * n
    assert [f.shape[1] for f in feats] == d.feat_channels
    assert [f.shape[-1] for f in feats] == ([size >> (i + 1) for i in range(n)]
                                            + [size >> (n - 1 - i) for i in range(n)])
    assert feats[-1].shape[1] == d.layer_up_last.in_channels  # input of the logits conv
    torch.testing.assert_close(d.eval()(x), d.layer_up_last(feats[-1]))
    d.train()
    d(x)[:, :N_CLASSES].logsumexp(1).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grads_ok(d)
    d2 = UNetDiscriminator(**d.config)
    d2.load_state_dict(d.state_dict(), strict=True)


# ---------------------------------------------------------------- D_u


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("wavelet", [True, False])
def test_uncond_discriminator(size, wavelet):
    torch.manual_seed(0)
    d = UncondDiscriminator(size, base=8, wavelet=wavelet, channel_max=32)
    assert hasattr(d, "from_wavelets") == wavelet
    if wavelet:
        assert len(d.from_wavelets) == len(d.convs) + 1
        assert d.from_wavelets[0][0].weight.shape[1] == 12
    x = torch.randn(4, 3, size, size, requires_grad=True)
    out = d(x)
    assert out.shape == (4,)
    F.softplus(-out).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    grads_ok(d)
    d2 = UncondDiscriminator(**d.config)
    d2.load_state_dict(d.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(d2(x), d(x))


def test_one_training_step_runs():
    """G -> D_c (N+1 CE) and D_u (softplus): losses backprop into G through both."""
    torch.manual_seed(0)
    g = SPADEGenerator(N_CLASSES, 32, **SMALL)
    dc = UNetDiscriminator(N_CLASSES, 32, base=8, channel_max=32)
    du = UncondDiscriminator(32, base=8, channel_max=32)
    seg = random_labels(2, 32)
    fake = g(seg)
    loss = F.cross_entropy(dc(fake), seg.argmax(1)) + F.softplus(-du(fake)).mean()
    loss.backward()
    grads_ok(g)
