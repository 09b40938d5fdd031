"""SCS (RSSA Eq. 9–10): soft Dice of edge maps, the Sobel / Canny / HED edge detectors."""
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from raygan.errors import UserError
from raygan.metrics import scs as S


def to_rgb(gray: torch.Tensor) -> torch.Tensor:
    """[H,W] grey levels in [0,1] -> [1,3,H,W] RGB in [-1,1]."""
    return (gray * 2.0 - 1.0).expand(1, 3, *gray.shape).clone()


def square_image(size=32, lo=8, hi=24, shift=0):
    g = torch.zeros(size, size)
    g[lo:hi, lo + shift:hi + shift] = 1.0
    return to_rgb(g)


# ---- soft Dice ------------------------------------------------------------------------------

def test_soft_dice_hand_computed():
    h_t = torch.tensor([[1.0, 0.5], [0.0, 0.25]]).view(1, 1, 2, 2)
    h_s = torch.tensor([[0.5, 0.5], [1.0, 0.0]]).view(1, 1, 2, 2)
    # 2 (0.5 + 0.25) / ((1 + 0.25 + 0.0625) + (0.25 + 0.25 + 1)) = 1.5 / 2.8125
    got = S.soft_dice(h_t, h_s)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(1.5 / 2.8125, abs=1e-12)


def test_soft_dice_identical_disjoint_empty_per_pair():
    a = torch.tensor([[0.3, 0.0], [0.9, 0.0]]).view(1, 1, 2, 2)
    b = torch.tensor([[0.0, 0.7], [0.0, 1.0]]).view(1, 1, 2, 2)
    zero = torch.zeros(1, 1, 2, 2)
    got = S.soft_dice(torch.cat([a, a, zero, a]), torch.cat([a, b, zero, zero]))
    assert got.shape == (4,)
    assert got.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0], abs=1e-12)


# ---- Sobel ----------------------------------------------------------------------------------

def test_sobel_max_is_the_tight_bound_for_inputs_in_0_1():
    best = 0.0
    for a, b, c, d, f, g, h, i in itertools.product((0, 1), repeat=8):  # convex: max at a vertex
        gx = (c + 2 * f + i) - (a + 2 * d + g)
        gy = (g + 2 * h + i) - (a + 2 * b + c)
        best = max(best, math.hypot(gx, gy))
    assert S.SOBEL_MAX == pytest.approx(best) == pytest.approx(math.sqrt(20))


def test_sobel_vertical_step():
    g = torch.zeros(16, 16)
    g[:, 8:] = 1.0
    e = S.sobel_edges(to_rgb(g))[0, 0]
    assert e.shape == (16, 16)
    # on the step columns every row (top and bottom included) sees |Gx| = 4, |Gy| = 0
    expected = 4.0 / math.sqrt(20.0)
    assert torch.allclose(e[:, 7:9], torch.full((16, 2), expected), atol=1e-5)
    assert e.max().item() == pytest.approx(expected, abs=1e-5)
    # nothing away from the step, and replicate padding adds no border edges
    assert e[:, :6].abs().max() < 1e-5 and e[:, 10:].abs().max() < 1e-5
    assert e[:, [0, 15]].abs().max() < 1e-5


def test_sobel_uses_bt601_luminance():
    for channel, weight in enumerate((0.299, 0.587, 0.114)):  # a step in one colour channel only
        x = -torch.ones(1, 3, 8, 8)
        x[0, channel, :, 4:] = 1.0
        assert S.sobel_edges(x).max().item() == pytest.approx(weight * 4 / math.sqrt(20), abs=1e-5)


def test_sobel_range_and_no_per_image_rescaling():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    e = S.sobel_edges(x)
    assert e.shape == (3, 1, 16, 16) and e.min() >= 0 and e.max() <= 1
    # a low-contrast step is a proportionally weaker map, not rescaled to the same maximum
    g = torch.zeros(16, 16)
    g[:, 8:] = 0.25
    assert S.sobel_edges(to_rgb(g)).max().item() == pytest.approx(0.25 * 4 / math.sqrt(20), abs=1e-5)


# ---- Canny ----------------------------------------------------------------------------------

def test_canny_square_gives_thin_closed_outline():
    e = S.canny_edges(square_image())[0, 0].numpy()
    assert set(np.unique(e)) <= {0.0, 1.0}
    edge = e > 0
    inside = np.zeros((32, 32), bool)
    inside[8:24, 8:24] = True
    ring = inside & ~ndimage.binary_erosion(inside)  # the square's boundary pixels
    near_ring = ndimage.binary_dilation(ring, structure=np.ones((3, 3)))
    assert edge.sum() > 40
    assert not (edge & ~near_ring).any()  # all edges within 1 px of the boundary
    assert not edge[11:21, 11:21].any()  # interior
    assert not edge[:5].any() and not edge[27:].any() and not edge[:, :5].any() and not edge[:, 27:].any()
    # thin: one edge pixel per side on the middle rows / columns
    for k in (14, 16, 18):
        assert edge[k, :16].sum() == 1 and edge[k, 16:].sum() == 1
        assert edge[:16, k].sum() == 1 and edge[16:, k].sum() == 1
    # closed: the outline separates the inside from the outside (4-connected background)
    background, _ = ndimage.label(~edge)
    assert background[16, 16] != background[0, 0]


def test_canny_hysteresis_keeps_connected_weak_drops_isolated_weak():
    w = 0.25  # a step of contrast 0.25 peaks at ~0.14 (weak: between low=0.1 and high=0.2)
    g = torch.zeros(48, 64)
    # a bar whose contrast fades smoothly from 1 (strong edges, top) to w (weak edges, below
    # row ~21), so its two vertical edges run unbroken from strong into weak
    g[:, 16:32] = (1.0 - 0.75 * torch.arange(48.0) / 24).clamp_min(w)[:, None]
    g[16:32, 44:56] = w  # an isolated weak square
    x = to_rgb(g)
    e = S.canny_edges(x, sigma=1.0, low=0.1, high=0.2)[0, 0]
    strong_part, weak_tail, isolated = e[2:20, 13:19], e[28:46, 13:19], e[:, 38:]
    assert strong_part.sum() == 18  # one pixel per row
    assert weak_tail.sum() == 18  # the weak continuation survives hysteresis
    assert isolated.sum() == 0  # the isolated weak outline is dropped
    # controls: those really are weak edge candidates (above low, below high)
    only_low = S.canny_edges(x, sigma=1.0, low=0.1, high=0.1)[0, 0]
    assert only_low[:, 38:].sum() > 20
    only_high = S.canny_edges(x, sigma=1.0, low=0.2, high=0.2)[0, 0]
    assert only_high[28:46, 13:19].sum() == 0 and only_high[2:20, 13:19].sum() == 18


# ---- the metric -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sobel", "canny"])
def test_scs_self_shift_and_name(kind):
    name, edges = S.make_edge_detector(kind)
    assert name == f"scs_{kind}"
    torch.manual_seed(0)
    noise = F.avg_pool2d(torch.rand(3, 3, 32, 32) * 2 - 1, 3, 1, 1)  # some texture, not all sharp
    x = torch.cat([square_image(), square_image(lo=4, hi=14), noise])
    shifted = torch.roll(x, shifts=3, dims=3)
    assert S.scs(x, x, edges) == pytest.approx(1.0, abs=1e-9)
    assert S.scs(x, x, edges, batch_size=2) == pytest.approx(1.0, abs=1e-9)
    assert S.scs(x, shifted, edges) < 0.9
    # batching does not change the mean
    assert S.scs(x, shifted, edges, batch_size=2) == pytest.approx(S.scs(x, shifted, edges), abs=1e-7)  # float32 sums
    # two flat images: no edges on either side counts as fully consistent
    flat = torch.zeros(2, 3, 16, 16)
    assert S.scs(flat, flat, edges) == 1.0


def test_scs_hand_computed_value():
    g_t = torch.zeros(8, 8)
    g_t[:, 4:] = 1.0
    g_s = g_t * 0.5  # same structure, half the contrast: Sobel maps m and m/2
    # soft Dice of m and m/2: 2 * (1/2) / (1 + 1/4) = 0.8, whatever m is
    assert S.scs(to_rgb(g_t), to_rgb(g_s), S.sobel_edges) == pytest.approx(0.8, abs=1e-5)


def test_make_edge_detector_errors():
    with pytest.raises(UserError, match="local path to the HED weights"):
        S.make_edge_detector("hed")
    with pytest.raises(UserError, match="expected one of: sobel, canny, hed"):
        S.make_edge_detector("laplace")


# ---- HED ------------------------------------------------------------------------------------

# The weight file of sniklaus/pytorch-hed (network-bsds500.pytorch): key prefix -> (in, out, k),
# written here from the port's architecture (run.py), not from raygan's module.
PORT_CONVS = {
    "moduleVggOne.0": (3, 64, 3), "moduleVggOne.2": (64, 64, 3),
    "moduleVggTwo.1": (64, 128, 3), "moduleVggTwo.3": (128, 128, 3),
    "moduleVggThr.1": (128, 256, 3), "moduleVggThr.3": (256, 256, 3), "moduleVggThr.5": (256, 256, 3),
    "moduleVggFou.1": (256, 512, 3), "moduleVggFou.3": (512, 512, 3), "moduleVggFou.5": (512, 512, 3),
    "moduleVggFiv.1": (512, 512, 3), "moduleVggFiv.3": (512, 512, 3), "moduleVggFiv.5": (512, 512, 3),
    "moduleScoreOne": (64, 1, 1), "moduleScoreTwo": (128, 1, 1), "moduleScoreThr": (256, 1, 1),
    "moduleScoreFou": (512, 1, 1), "moduleScoreFiv": (512, 1, 1),
    "moduleCombine.0": (5, 1, 1),
}
STAGES = {"One": [0, 2], "Two": [1, 3], "Thr": [1, 3, 5], "Fou": [1, 3, 5], "Fiv": [1, 3, 5]}
MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)


def port_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for prefix, (c_in, c_out, k) in PORT_CONVS.items():
        std = math.sqrt(2.0 / (c_in * k * k))
        sd[f"{prefix}.weight"] = torch.randn(c_out, c_in, k, k, generator=g) * std
        sd[f"{prefix}.bias"] = torch.randn(c_out, generator=g) * 0.01
    sd["moduleCombine.0.weight"] *= 0.01  # keep the sigmoid off saturation
    return sd


def reference_hed(sd, rgb):
    """The port's forward pass, written out: RGB [-1,1] -> BGR [0,1] -> *255 - mean -> VGG ..."""
    x = ((rgb + 1) / 2).flip(1) * 255.0 - torch.tensor(MEAN_BGR).view(1, 3, 1, 1)
    size, scores = x.shape[-2:], []
    for i, (stage, idx) in enumerate(STAGES.items()):
        if i > 0:
            x = F.max_pool2d(x, 2, 2)
        for j in idx:
            x = F.relu(F.conv2d(x, sd[f"moduleVgg{stage}.{j}.weight"], sd[f"moduleVgg{stage}.{j}.bias"], padding=1))
        s = F.conv2d(x, sd[f"moduleScore{stage}.weight"], sd[f"moduleScore{stage}.bias"])
        scores.append(F.interpolate(s, size=size, mode="bilinear", align_corners=False))
    fused = F.conv2d(torch.cat(scores, 1), sd["moduleCombine.0.weight"], sd["moduleCombine.0.bias"])
    return torch.sigmoid(fused)


@pytest.fixture(scope="module")
def hed_file(tmp_path_factory):
    sd = port_state()
    path = tmp_path_factory.mktemp("hed") / "network-bsds500.pytorch"
    torch.save(sd, path)
    return path, sd


def one_line_naming(err, path):
    msg = str(err.value)
    return "\n" not in msg and str(path) in msg


def test_hed_loads_port_file_and_matches_reference(hed_file):
    path, sd = hed_file
    net = S.load_hed(str(path))
    torch.manual_seed(1)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    e = S.hed_edges(x, net)
    assert e.shape == (2, 1, 32, 32)
    assert e.min() >= 0 and e.max() <= 1
    assert torch.allclose(e, reference_hed(sd, x), atol=1e-5)
    assert e.std() > 1e-4  # not a constant map
    name, edges = S.make_edge_detector("hed", str(path))
    assert name == "scs_hed"
    assert S.scs(x, x, edges) == pytest.approx(1.0, abs=1e-9)


def test_hed_also_loads_already_renamed_keys(hed_file, tmp_path):
    _, sd = hed_file
    p = tmp_path / "net_keys.pytorch"
    torch.save({k.replace("module", "net"): v for k, v in sd.items()}, p)
    S.load_hed(p)


def test_hed_bad_files(hed_file, tmp_path):
    path, sd = hed_file
    missing = tmp_path / "missing_key.pytorch"
    torch.save({k: v for k, v in sd.items() if k != "moduleScoreThr.weight"}, missing)
    with pytest.raises(UserError, match="netScoreThr.weight") as err:
        S.load_hed(missing)
    assert one_line_naming(err, missing)

    truncated = tmp_path / "truncated.pytorch"
    data = path.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        S.load_hed(truncated)
    assert one_line_naming(err, truncated)

    wrong_shape = tmp_path / "wrong_shape.pytorch"
    torch.save({**sd, "moduleScoreOne.weight": torch.zeros(1, 32, 1, 1)}, wrong_shape)
    with pytest.raises(UserError, match="wrong shape") as err:
        S.load_hed(wrong_shape)
    assert one_line_naming(err, wrong_shape)

    nowhere = tmp_path / "nowhere.pytorch"
    with pytest.raises(UserError) as err:
        S.load_hed(nowhere)
    assert one_line_naming(err, nowhere)

    text = tmp_path / "notes.txt"
    text.write_text("not weights\n")
    with pytest.raises(UserError) as err:
        S.load_hed(text)
    assert one_line_naming(err, text)
