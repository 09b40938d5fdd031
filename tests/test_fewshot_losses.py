"""Baseline and RSSA losses against slow references written out here (METHODS.md)."""
import math

import pytest
import torch
import torch.nn.functional as F

from raygan.losses.correspondence import cross_domain_distance
from raygan.losses.regularizers import ewc_penalty
from raygan.losses.structural import dcc_loss, scc_loss, self_correlation, window_correlation
from raygan.methods.fewshot.rssa import FACES_ALPHA, Config, compress, layer_alphas


def cos(a, b):
    return float(a @ b / (a.norm() * b.norm()))


def test_cdc_distance_matches_a_loop():
    torch.manual_seed(0)
    t, s = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    n = len(t)

    def dist(x, i):  # p_i: softmax over j != i of cos(x_i, x_j)
        e = [math.exp(cos(x[i], x[j])) for j in range(n) if j != i]
        return [v / sum(e) for v in e]

    for direction in ("target_source", "source_target"):
        kl = 0.0
        for i in range(n):
            p, q = dist(t, i), dist(s, i)
            if direction == "source_target":
                p, q = q, p
            kl += sum(pk * math.log(pk / qk) for pk, qk in zip(p, q))
        expected = kl / (n * (n - 1))
        assert cross_domain_distance(t, s, direction).item() == pytest.approx(expected, rel=1e-10)
    assert cross_domain_distance(t, t).item() == pytest.approx(0.0, abs=1e-12)


def test_ewc_penalty_by_hand():
    p = [torch.tensor([1.0, 2.0]), torch.tensor([[3.0]])]
    s = [torch.tensor([0.0, 2.5]), torch.tensor([[1.0]])]
    f = [torch.tensor([2.0, 4.0]), torch.tensor([[0.5]])]
    # 2*1 + 4*0.25 + 0.5*4
    assert ewc_penalty(p, s, f).item() == pytest.approx(5.0)


def test_self_correlation_entries_and_tiles():
    torch.manual_seed(0)
    f = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    c = self_correlation(f)
    assert c.shape == (2, 16, 16)
    a, b = (1, 2), (3, 0)  # positions (x, y) -> index x*W + y
    assert c[1, 1 * 4 + 2, 3 * 4 + 0].item() == pytest.approx(cos(f[1, :, a[0], a[1]], f[1, :, b[0], b[1]]))
    tiles = self_correlation(f, patch=2)  # four 2x2 tiles per sample, tile order row-major
    assert tiles.shape == (8, 4, 4)
    # sample 0, tile (1, 0) covers rows 2-3, cols 0-1: entry between (2,1) and (3,0)
    assert tiles[2, 0 * 2 + 1, 1 * 2 + 0].item() == pytest.approx(cos(f[0, :, 2, 1], f[0, :, 3, 0]))


def test_scc_loss_matches_a_loop():
    torch.manual_seed(1)
    ft = [torch.randn(2, 3, 4, 4, dtype=torch.float64), torch.randn(2, 2, 8, 8, dtype=torch.float64)]
    fs = [torch.randn_like(x) for x in ft]
    expected = 0.0
    for t, s in zip(ft, fs):
        if t.shape[-1] > 4:  # max_side 4: pool by 2
            t, s = F.avg_pool2d(t, 2), F.avg_pool2d(s, 2)
        b, _, h, w = t.shape
        total, count = 0.0, 0
        for i in range(b):
            for p in range(h * w):
                for q in range(h * w):
                    d = abs(cos(t[i, :, p // w, p % w], t[i, :, q // w, q % w])
                            - cos(s[i, :, p // w, p % w], s[i, :, q // w, q % w]))
                    total += 0.5 * d * d if d < 1 else d - 0.5
                    count += 1
        expected += total / count
    assert scc_loss(ft, fs, patch=16, max_side=4, pool=2).item() == pytest.approx(expected, rel=1e-9)


def window_reference(f, j, k, x, y, delta):
    """D_jk(x, y): softmax over (m, n) with |m - x| < δ/2, |n - y| < δ/2 inside the map."""
    _, _, h, w = f.shape
    sims = {(m, n): cos(f[j, :, x, y], f[k, :, m, n]) for m in range(h) for n in range(w)
            if abs(m - x) < delta / 2 and abs(n - y) < delta / 2}
    z = sum(math.exp(v) for v in sims.values())
    return {mn: math.exp(v) / z for mn, v in sims.items()}


def test_window_correlation_and_dcc_match_a_loop():
    torch.manual_seed(2)
    n, h, w, delta = 3, 4, 5, 3
    ft, fs = torch.randn(n, 2, h, w, dtype=torch.float64), torch.randn(n, 2, h, w, dtype=torch.float64)
    d = window_correlation(ft, delta)  # [n(n-1), δ², HW], pairs in row-major order of (j, k), j != k
    pairs = [(j, k) for j in range(n) for k in range(n) if j != k]
    r = delta // 2
    for p, (j, k) in enumerate(pairs):
        for x, y in [(0, 0), (2, 3), (3, 4)]:
            ref = window_reference(ft, j, k, x, y, delta)
            for (m, nn), v in ref.items():
                q = (m - x + r) * delta + (nn - y + r)
                assert d[p, q, x * w + y].item() == pytest.approx(v, rel=1e-9)
            assert d[p, :, x * w + y].sum().item() == pytest.approx(1.0)
    total = 0.0
    for j, k in pairs:
        for x in range(h):
            for y in range(w):
                a, b = window_reference(ft, j, k, x, y, delta), window_reference(fs, j, k, x, y, delta)
                total += sum(abs(a[mn] - b[mn]) for mn in a)
    expected = total / (len(pairs) * h * w)
    assert dcc_loss([ft], [fs], window=delta, max_side=16).item() == pytest.approx(expected, rel=1e-9)


def test_compression_is_eq8():
    torch.manual_seed(3)
    w = torch.randn(5, 2, 6, dtype=torch.float64)  # B=5 codes, L=2 layers, D=6
    codes = torch.randn(3, 2, 6, dtype=torch.float64)  # n=3 inverted shots
    alphas = torch.tensor([0.0, 0.7], dtype=torch.float64)
    out = compress(w, codes, alphas)
    assert torch.allclose(out[:, 0], w[:, 0])  # α = 0: untouched
    a = codes[:, 1].T  # [D, n]: columns are the codes
    proj = a @ torch.linalg.inv(a.T @ a) @ a.T  # the explicit projector of Eq. 8
    for i in range(5):
        wl = w[i, 1]
        wbar = proj @ wl
        expected = 0.7 * wbar * wl.norm() / wbar.norm() + 0.3 * wl
        assert torch.allclose(out[i, 1], expected)
    inside = (codes[:, 1].T @ torch.tensor([0.2, -1.0, 0.5], dtype=torch.float64))[None, None].repeat(1, 2, 1)
    assert torch.allclose(compress(inside, codes, torch.ones(2, dtype=torch.float64))[0, 1], inside[0, 1])


def test_per_layer_alpha_profile():
    assert layer_alphas(Config(), 14) == FACES_ALPHA
    assert layer_alphas(Config(), 8) == [0.0, 0.0, 0.05, 0.05, 0.45, 0.65, 0.85, 0.85]
    assert layer_alphas(Config(compression_alpha=[0.1] * 8), 8) == [0.1] * 8


def test_presets_and_overrides():
    assert Config().setting("alpha") == 1.0 and Config().setting("dcc_every") == 1
    code = Config(preset="code")
    assert (code.setting("alpha"), code.setting("beta"), code.setting("dcc_every"), code.setting("neighbours")) \
        == (0.8, 0.4, 6, "mix")
    assert Config(preset="code", beta=2.0).setting("beta") == 2.0
