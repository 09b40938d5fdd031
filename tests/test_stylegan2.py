import math

import pytest
import torch
from torch.nn import functional as F

from raygan.models.patch_disc import PatchDiscriminator, PatchHead
from raygan.models.stylegan2 import (
    Blur,
    ConvLayer,
    Discriminator,
    Generator,
    ModulatedConv2d,
    Upsample,
    make_kernel,
    upfirdn2d,
)


def upfirdn2d_ref(x, kernel, up=1, down=1, pad=(0, 0)):
    """Slow, literal upfirdn2d: insert zeros, pad (negative = crop), convolve, subsample."""
    b, c, h, w = x.shape
    z = x.new_zeros(b, c, h * up, w * up)
    z[:, :, ::up, ::up] = x
    p0, p1 = pad
    z = F.pad(z, (p0, p1, p0, p1))
    kh, kw = kernel.shape
    out = F.conv2d(z.reshape(b * c, 1, *z.shape[2:]), kernel.flip([0, 1])[None, None])
    out = out.reshape(b, c, *out.shape[2:])
    return out[:, :, ::down, ::down]


def narrow_g(size=32, **kw):
    return Generator(size, style_dim=32, n_mlp=2, channel_max=16, **kw)


def narrow_d(size=32):
    return Discriminator(size, channel_max=16)


# ---------------------------------------------------------------- fast ops


@pytest.mark.parametrize("up,down,pad,ksize", [
    (1, 1, (1, 2), 4), (1, 1, (2, 2), 3), (1, 1, (-1, 0), 3),
    (2, 1, (2, 1), 4), (2, 1, (1, 1), 4), (2, 1, (0, -1), 3), (2, 1, (3, 4), 4),
    (1, 2, (2, 2), 4), (1, 2, (1, 1), 4), (2, 2, (1, 2), 4),
])
def test_upfirdn2d_matches_reference(up, down, pad, ksize):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    k = torch.randn(ksize, ksize, dtype=torch.float64)  # asymmetric: checks the flip
    got, ref = upfirdn2d(x, k, up, down, pad), upfirdn2d_ref(x, k, up, down, pad)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)


def test_modules_match_reference():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 8, 8)
    up = Upsample([1, 3, 3, 1])
    assert up.pad == (2, 1)
    torch.testing.assert_close(up(x), upfirdn2d_ref(x, up.kernel, up=2, pad=(2, 1)), atol=1e-5, rtol=0)
    assert up(x).shape == (2, 4, 16, 16)
    blur = Blur([1, 3, 3, 1], pad=(1, 1), upsample_factor=2)
    torch.testing.assert_close(blur.kernel.sum(), torch.tensor(4.0))
    torch.testing.assert_close(blur(x), upfirdn2d_ref(x, blur.kernel, pad=(1, 1)), atol=1e-5, rtol=0)
    # Downsampling ConvLayer = blur at full resolution, then a stride-2 conv.
    layer = ConvLayer(4, 5, 3, downsample=True)
    ref = F.conv2d(upfirdn2d_ref(x, layer[0].kernel, pad=(2, 2)), layer[1].weight * layer[1].scale, stride=2)
    ref = F.leaky_relu(ref + layer[2].bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)
    torch.testing.assert_close(layer(x), ref, atol=1e-5, rtol=0)
    assert layer(x).shape == (2, 5, 4, 4)


@pytest.mark.parametrize("upsample,downsample", [(False, False), (True, False), (False, True)])
def test_modulated_conv_matches_per_sample_loop(upsample, downsample):
    torch.manual_seed(0)
    conv = ModulatedConv2d(4, 6, 3, 8, upsample=upsample, downsample=downsample)
    x, style = torch.randn(3, 4, 8, 8), torch.randn(3, 8)
    outs = []
    for b in range(3):  # the modulated/demodulated weight built by hand, one sample at a time
        s = conv.modulation(style[b : b + 1])[0]
        w = conv.scale * conv.weight[0] * s.view(1, -1, 1, 1)
        w = w * torch.rsqrt(w.pow(2).sum([1, 2, 3]) + 1e-8).view(-1, 1, 1, 1)
        xb = x[b : b + 1]
        if upsample:
            o = upfirdn2d_ref(F.conv_transpose2d(xb, w.transpose(0, 1), stride=2), conv.blur.kernel, pad=(1, 1))
        elif downsample:
            o = F.conv2d(upfirdn2d_ref(xb, conv.blur.kernel, pad=(2, 2)), w, stride=2)
        else:
            o = F.conv2d(xb, w, padding=1)
        outs.append(o)
    ref = torch.cat(outs)
    torch.testing.assert_close(conv(x, style), ref, atol=1e-5, rtol=1e-5)
    conv.fused = False
    torch.testing.assert_close(conv(x, style), ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------- checkpoint interop


def test_port_state_dict_layout_256():
    g = Generator(256, channel_multiplier=2)
    d = Discriminator(256, channel_multiplier=2)
    gs, ds = g.state_dict(), d.state_dict()
    assert g.n_latent == 14 and g.num_layers == 13

    mod = ["conv.weight", "conv.modulation.weight", "conv.modulation.bias"]
    expected = {f"style.{i}.{p}" for i in range(1, 9) for p in ("weight", "bias")}
    expected |= {"input.input", "conv1.noise.weight", "conv1.activate.bias", "to_rgb1.bias"}
    expected |= {f"conv1.{k}" for k in mod} | {f"to_rgb1.{k}" for k in mod}
    for i in range(12):
        expected |= {f"convs.{i}.{k}" for k in mod + ["noise.weight", "activate.bias"]}
        if i % 2 == 0:
            expected.add(f"convs.{i}.conv.blur.kernel")
    for i in range(6):
        expected |= {f"to_rgbs.{i}.{k}" for k in mod + ["bias", "upsample.kernel"]}
    expected |= {f"noises.noise_{i}" for i in range(13)}
    assert set(gs) == expected

    shapes = {
        "style.1.weight": (512, 512), "style.8.bias": (512,), "input.input": (1, 512, 4, 4),
        "conv1.conv.weight": (1, 512, 512, 3, 3), "conv1.conv.modulation.weight": (512, 512),
        "conv1.noise.weight": (1,), "conv1.activate.bias": (512,), "to_rgb1.conv.weight": (1, 3, 512, 1, 1),
        "to_rgb1.bias": (1, 3, 1, 1), "convs.0.conv.weight": (1, 512, 512, 3, 3),
        "convs.0.conv.blur.kernel": (4, 4), "convs.8.conv.weight": (1, 256, 512, 3, 3),
        "convs.11.activate.bias": (128,), "to_rgbs.5.upsample.kernel": (4, 4),
        "to_rgbs.5.conv.weight": (1, 3, 128, 1, 1), "noises.noise_0": (1, 1, 4, 4),
        "noises.noise_12": (1, 1, 256, 256),
    }
    for k, s in shapes.items():
        assert tuple(gs[k].shape) == s, k
    k4 = make_kernel([1, 3, 3, 1]) * 4
    torch.testing.assert_close(gs["to_rgbs.5.upsample.kernel"], k4)
    torch.testing.assert_close(gs["convs.0.conv.blur.kernel"], k4)

    dexp = {"convs.0.0.weight", "convs.0.1.bias", "final_conv.0.weight", "final_conv.1.bias"}
    dexp |= {f"final_linear.{i}.{p}" for i in range(2) for p in ("weight", "bias")}
    for i in range(1, 7):
        dexp |= {f"convs.{i}.{k}" for k in ("conv1.0.weight", "conv1.1.bias", "conv2.0.kernel",
                                            "conv2.1.weight", "conv2.2.bias", "skip.0.kernel", "skip.1.weight")}
    assert set(ds) == dexp
    dshapes = {
        "convs.0.0.weight": (128, 3, 1, 1), "convs.0.1.bias": (128,), "convs.1.conv1.0.weight": (128, 128, 3, 3),
        "convs.1.conv2.1.weight": (256, 128, 3, 3), "convs.1.skip.1.weight": (256, 128, 1, 1),
        "convs.6.conv2.1.weight": (512, 512, 3, 3), "final_conv.0.weight": (512, 513, 3, 3),
        "final_linear.0.weight": (512, 512 * 16), "final_linear.1.weight": (1, 512), "final_linear.1.bias": (1,),
    }
    for k, s in dshapes.items():
        assert tuple(ds[k].shape) == s, k
    torch.testing.assert_close(ds["convs.1.skip.0.kernel"], make_kernel([1, 3, 3, 1]))
    assert d.block_channels() == [128, 256, 512, 512, 512, 512, 512]
    assert d.block_resolutions() == [256, 128, 64, 32, 16, 8, 4]


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    g, d = narrow_g(), narrow_d()
    with torch.no_grad():  # make the zero-initialised noise strengths matter
        for c in g.convs:
            c.noise.weight.fill_(0.3)
    path = tmp_path / "ckpt.pt"
    torch.save({"g_ema": g.state_dict(), "d": d.state_dict(), "latent_avg": g.mean_latent(64)[0],
                "config": g.config}, path)
    ckpt = torch.load(path, weights_only=True)
    g2, d2 = Generator(**ckpt["config"]), narrow_d()
    g2.load_state_dict(ckpt["g_ema"], strict=True)
    d2.load_state_dict(ckpt["d"], strict=True)
    z = torch.randn(4, 32)
    noise = g.make_noise()
    with torch.no_grad():
        a, _ = g([z], noise=noise)
        b, _ = g2([z], noise=noise)
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(g([z], randomize_noise=False)[0], g2([z], randomize_noise=False)[0])
        torch.testing.assert_close(d(a), d2(a))
    assert ckpt["latent_avg"].shape == (32,)


def test_bad_size():
    for s in (16, 48, 2048):
        with pytest.raises(ValueError):
            Generator(s)
        with pytest.raises(ValueError):
            Discriminator(s)


# ------------------------------------------------------------ forward APIs


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_and_feats(size):
    torch.manual_seed(0)
    g, d = narrow_g(size), narrow_d(size)
    n_res = int(math.log2(size)) - 2
    z = torch.randn(4, 32)
    img, lat, feats = g([z], return_latents=True, return_feats=True)
    assert img.shape == (4, 3, size, size)
    assert lat.shape == (4, g.n_latent, 32) and g.n_latent == 2 * n_res + 2
    assert len(feats) == 1 + len(g.convs) == 1 + 2 * n_res
    res = [4] + [2 ** (3 + i // 2) for i in range(len(g.convs))]
    assert [tuple(f.shape) for f in feats] == [(4, c, r, r) for c, r in zip(g.feat_channels(), res)]
    assert g([z])[1] is None and len(g([z])) == 2

    logits, dfeats = d(img, return_feats=True)
    assert logits.shape == (4, 1) and torch.equal(logits, d(img))
    assert len(dfeats) == len(d.convs) == n_res + 1
    assert [tuple(f.shape) for f in dfeats] == [
        (4, c, r, r) for c, r in zip(d.block_channels(), d.block_resolutions())]


def test_latent_inputs_mixing_truncation():
    torch.manual_seed(0)
    g = narrow_g()
    z1, z2 = torch.randn(2, 32), torch.randn(2, 32)
    noise = g.make_noise()
    w1, w2 = g.get_latent(z1), g.get_latent(z2)
    img, lat = g([z1], noise=noise, return_latents=True)
    # W and W+ inputs reproduce the z path.
    torch.testing.assert_close(g([w1], input_is_latent=True, noise=noise)[0], img)
    wplus = w1[:, None].repeat(1, g.n_latent, 1)
    torch.testing.assert_close(g(wplus, input_is_latent=True, noise=noise)[0], img)
    torch.testing.assert_close(lat, wplus)
    # Style mixing: w1 up to inject_index, then w2.
    _, lat = g([z1, z2], inject_index=3, return_latents=True, noise=noise)
    torch.testing.assert_close(lat[:, :3], w1[:, None].expand(-1, 3, -1))
    torch.testing.assert_close(lat[:, 3:], w2[:, None].expand(-1, g.n_latent - 3, -1))
    # Truncation towards the mean latent; truncation 0 gives the mean for every z.
    mean = g.mean_latent(256)
    out, _ = g([z1], truncation=0.0, truncation_latent=mean, noise=noise)
    torch.testing.assert_close(out[0], out[1])


def test_training_step_gradients_and_r1():
    torch.manual_seed(0)
    g, d = narrow_g(), narrow_d()
    fake, _ = g([torch.randn(4, 32)])
    F.softplus(-d(fake)).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in g.named_parameters()), \
        [n for n, p in g.named_parameters() if p.grad is None]
    real = torch.rand(6, 3, 32, 32, requires_grad=True)  # batch 6: not a multiple of the stddev group
    (grad,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
    grad.pow(2).sum().backward()  # R1 needs double backward
    assert all(p.grad is not None for p in d.parameters())


def test_patch_discriminator():
    torch.manual_seed(0)
    d = narrow_d(64)
    assert PatchHead(16)(torch.randn(2, 16, 8, 8)).shape == (2, 1, 8, 8)
    pd = PatchDiscriminator(d, feat_index=2)
    assert set(pd.state_dict()) == {"head.conv.0.weight", "head.conv.1.bias", "head.to_logit.weight",
                                    "head.to_logit.bias"}
    assert set(d.state_dict()) == set(narrow_d(64).state_dict())  # D still loads strict
    x = torch.randn(4, 3, 64, 64)
    patch = pd(x)
    assert patch.shape == (4, 1, 16, 16)
    logits, patch2 = pd.both(x)
    assert logits.shape == (4, 1)
    torch.testing.assert_close(patch, patch2)
    patch.mean().backward()
    assert d.convs[0][0].weight.grad is not None and d.final_conv[1].bias.grad is None
    with pytest.raises(ValueError):
        PatchDiscriminator(d, feat_index=5)
