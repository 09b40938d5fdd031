"""Embedded procedural street scenes with label maps, for semi-paired label-to-image synthesis.

A scene is a horizon with sky above and grass below, an optional perspective road with a
dashed centre line, an optional lake, buildings and trees standing on the horizon, cars on
the road and, in about one scene in ten, a small person (the deliberately RARE class).

Every class is painted with its own colour AND texture (cloud noise, grass streaks, road
grain and lane marks, window grids, leaf blotches, ripples, car windows/wheels, head/shirt/
trousers), with per-scene and per-object variation, so a label map does not determine its
image and a segmenter has to learn colour and texture, not only position.

Scene i depends only on (seed, i): a longer list extends a shorter one. The layout is drawn
before any per-pixel noise, so the same scene at 32 and 64 px has the same layout.
Images are float tensors [n, 3, size, size] in [-1, 1]; labels int64 [n, size, size].
"""
from __future__ import annotations

import colorsys
import math
from functools import lru_cache

import numpy as np
import torch

CLASSES = ["sky", "grass", "road", "building", "tree", "water", "car", "person"]
N_CLASSES = len(CLASSES)
SKY, GRASS, ROAD, BUILDING, TREE, WATER, CAR, PERSON = range(N_CLASSES)
RARE = [PERSON]                 # rare class indices (~10 % of scenes, < 0.5 % of all pixels)
TEXTURED = [SKY, GRASS, ROAD, BUILDING, TREE, WATER, CAR, PERSON]
HELD_OUT_OFFSET = 10_000        # held-out scenes come from seed HELD_OUT_OFFSET + seed
P_ROAD, P_WATER, P_PERSON = 0.85, 0.35, 0.10

PALETTE = np.array([            # colorize(): one fixed colour per class, RGB in [0, 1]
    [0.27, 0.51, 0.71],         # sky
    [0.42, 0.56, 0.14],         # grass
    [0.50, 0.25, 0.50],         # road (Cityscapes-like purple)
    [0.27, 0.27, 0.27],         # building
    [0.00, 0.39, 0.00],         # tree
    [0.00, 0.75, 0.85],         # water
    [0.00, 0.00, 0.56],         # car
    [0.86, 0.08, 0.24],         # person
], dtype=np.float32)


# ---- helpers ----------------------------------------------------------------------------------

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """HSV -> RGB colour [3] in [0, 1] (all inputs in [0, 1])."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), np.float32)


def _win(a: float, b: float, size: int) -> slice:
    """Pixel indices whose centres may lie in [a, b) (image units), padded by one pixel; the
    exact coverage test is done inside the window, so windows only save work."""
    lo = max(0, int(math.floor(a * size - 0.5)))
    hi = min(size, max(0, int(math.ceil(b * size - 0.5)) + 1))
    return slice(lo, max(lo, hi))


@lru_cache(maxsize=32)
def _upsample_matrix(g: int, size: int) -> np.ndarray:
    """[size, g] bilinear interpolation weights from a g-point grid spanning [0, 1]."""
    t = (np.arange(size) + 0.5) / size * (g - 1)
    i0 = np.clip(np.floor(t).astype(int), 0, g - 2)
    f = t - i0
    m = np.zeros((size, g), np.float32)
    m[np.arange(size), i0] = 1 - f
    m[np.arange(size), i0 + 1] = f
    return m


def _smooth(coarse: np.ndarray, size: int) -> np.ndarray:
    """Upsample a [g, g] coarse noise grid to a smooth [size, size] field."""
    m = _upsample_matrix(coarse.shape[0], size)
    return m @ coarse.astype(np.float32) @ m.T


def _check_size(size: int) -> None:
    if not isinstance(size, (int, np.integer)) or size < 32 or size % 16:
        raise ValueError(f"size must be a multiple of 16 and >= 32, got {size!r}")


# ---- layout (size independent: drawn first from the scene's RNG) -----------------------------

def _sample_layout(rng: np.random.Generator) -> dict:
    u = rng.uniform
    L: dict = {}
    L["hz"] = u(0.30, 0.55)                                  # horizon height (y down)
    L["sky_top"] = _hsv(u(0.55, 0.64), u(0.45, 0.75), u(0.55, 0.85))
    L["sky_bot"] = _hsv(u(0.52, 0.62), u(0.10, 0.30), u(0.85, 1.00))
    L["cloud_amount"] = u(0.0, 0.8)
    L["cloud"] = rng.standard_normal((6, 6))
    L["grass"] = _hsv(u(0.20, 0.30), u(0.50, 0.80), u(0.45, 0.70))
    L["grass_patch"] = rng.standard_normal((8, 8))
    # road: trapezoid from the vanishing point (vx, hz) to the bottom edge [xl, xr]
    L["road"] = u() < P_ROAD
    L["vx"] = u(0.35, 0.65)
    half = u(0.25, 0.55)
    mid = u(0.35, 0.65)
    L["xl"], L["xr"] = mid - half, mid + half
    L["road_grey"] = u(0.25, 0.42)
    L["road_tint"] = u(-0.03, 0.03, 3)
    L["lane_col"] = np.array([0.95, 0.95, 0.92] if u() < 0.5 else [0.95, 0.8, 0.2], np.float32)
    L["lane_phase"] = u(0, 2 * np.pi)
    # water: a lake at one side of the road
    L["water"] = u() < P_WATER
    side = rng.integers(2)
    L["lake"] = (u(0.0, 0.2) if side == 0 else u(0.8, 1.0),       # cx
                 L["hz"] + u(0.1, 0.35) * (1 - L["hz"]),          # cy
                 u(0.15, 0.35), u(0.05, 0.14))                    # rx, ry
    L["water_col"] = _hsv(u(0.50, 0.58), u(0.55, 0.85), u(0.40, 0.65))
    L["ripple_period"] = u(2.2, 3.5)                              # in pixels at 32 px
    L["ripple_phase"] = u(0, 2 * np.pi)
    L["water_warp"] = rng.standard_normal((5, 5))
    # buildings standing on the horizon
    nb = int(rng.integers(0, 5))
    L["buildings"] = [dict(
        x0=u(-0.05, 0.95), w=u(0.08, 0.24), h=u(0.10, 0.32), sink=u(0.0, 0.04),
        col=_hsv(u(0.0, 0.12), u(0.15, 0.6), u(0.45, 0.85)) if u() < 0.7 else np.full(3, u(0.45, 0.75), np.float32),
        win_col=_hsv(u(0.55, 0.65), u(0.2, 0.5), u(0.15, 0.35)),
        lit=rng.uniform(size=(16, 16)) < u(0.0, 0.35),
    ) for _ in range(nb)]
    # trees: canopies of 1-3 blobs plus a trunk, on the horizon
    nt = int(rng.integers(0, 5))
    L["trees"] = []
    for _ in range(nt):
        r = u(0.04, 0.09)
        cx = u(0.0, 1.0)
        base = L["hz"] + u(0.0, 0.04)
        blobs = [(cx + u(-0.6, 0.6) * r * (k > 0), base - 2.1 * r + u(-0.3, 0.3) * r * (k > 0),
                  r * (1.0 if k == 0 else u(0.6, 0.9))) for k in range(int(rng.integers(1, 4)))]
        L["trees"].append(dict(cx=cx, base=base, r=r, blobs=blobs,
                               col=_hsv(u(0.24, 0.36), u(0.55, 0.85), u(0.22, 0.40)),
                               trunk=_hsv(u(0.05, 0.1), u(0.4, 0.7), u(0.25, 0.4))))
    L["leaves"] = rng.standard_normal((12, 12))
    # cars on the road (perspective scale s = depth below the horizon, 0 at horizon)
    nc = int(rng.integers(0, 4)) if L["road"] else 0
    L["cars"] = []
    for _ in range(nc):
        s = u(0.35, 1.0)
        w = u(0.12, 0.20) * s
        L["cars"].append(dict(s=s, w=w, h=w * u(0.5, 0.65), pos=u(),
                              col=_hsv(u(0, 1), u(0.55, 0.95), u(0.45, 0.95))))
    # the rare class: a small person on the ground or road
    n_people = (1 + int(u() < 0.25)) if u() < P_PERSON else 0
    L["people"] = []
    for _ in range(n_people):
        s = u(0.4, 1.0)
        h = u(0.17, 0.22) * s
        L["people"].append(dict(s=s, h=h, w=h * u(0.3, 0.4), x=u(0.05, 0.95),
                                skin=_hsv(u(0.03, 0.09), u(0.3, 0.6), u(0.55, 0.95)),
                                shirt=_hsv(u(0, 1), u(0.6, 1.0), u(0.6, 1.0)),
                                legs=_hsv(u(0.55, 0.7), u(0.3, 0.6), u(0.12, 0.3))))
    return L


# ---- rendering ---------------------------------------------------------------------------------

def _render_one(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    L = _sample_layout(rng)
    S = size
    grain = rng.standard_normal((6, S, S)).astype(np.float32)   # per-pixel noise, drawn last
    c = ((np.arange(S) + 0.5) / S).astype(np.float32)
    Y, X = c[:, None], c[None, :]
    img = np.empty((S, S, 3), np.float32)
    lab = np.empty((S, S), np.int64)
    full = (slice(0, S), slice(0, S))

    def paint(win, mask, cls, tex):
        """Paint class cls with texture tex (broadcastable to the window) where mask holds."""
        sub_lab, sub_img = lab[win], img[win]
        mask = np.broadcast_to(mask, sub_lab.shape)
        sub_lab[mask] = cls
        sub_img[mask] = np.broadcast_to(tex, sub_img.shape)[mask]

    hz = L["hz"]
    depth = np.clip((Y - hz) / (1 - hz), 0, 1)              # [S, 1] perspective scale below horizon
    # sky: vertical gradient + soft clouds
    t = np.clip(Y / hz, 0, 1)[..., None]
    sky = L["sky_top"] * (1 - t) + L["sky_bot"] * t
    cw = (np.clip(_smooth(L["cloud"], S) - 0.2, 0, 1) * L["cloud_amount"])[..., None]
    sky = sky * (1 - cw) + 0.95 * cw + 0.012 * grain[0][..., None]
    paint(full, Y < hz, SKY, sky)
    # grass: patchy green with vertical blade streaks
    streak = (grain[1] + np.roll(grain[1], 1, 0) + np.roll(grain[1], 2, 0)) / math.sqrt(3)
    shade = 1 + 0.10 * _smooth(L["grass_patch"], S) + 0.07 * streak + 0.15 * (depth - 0.5)
    paint(full, Y >= hz, GRASS, L["grass"] * shade[..., None])
    # water: a lake with horizontal ripples
    if L["water"]:
        cx, cy, rx, ry = L["lake"]
        m = (((X - cx) / rx) ** 2 + ((Y - cy) / ry) ** 2 < 1) & (Y >= hz)
        rip = np.sin(2 * np.pi * (Y * 32 / L["ripple_period"]) + L["ripple_phase"]
                     + 1.5 * _smooth(L["water_warp"], S))
        tex = L["water_col"] * (1 + 0.18 * rip)[..., None] + 0.1 * (L["sky_bot"] - 0.5) * (rip > 0.6)[..., None]
        paint(full, m, WATER, tex + 0.015 * grain[2][..., None])
    # road: grainy asphalt with a dashed centre line, in perspective
    if L["road"]:
        left = L["vx"] + (L["xl"] - L["vx"]) * depth
        right = L["vx"] + (L["xr"] - L["vx"]) * depth
        m = (Y >= hz) & (X >= left) & (X < right)
        tex = (L["road_grey"] + L["road_tint"]) * (1 + 0.12 * grain[3])[..., None]
        centre = (left + right) / 2
        lane = (np.abs(X - centre) < np.maximum(0.012 * depth, 0.55 / S)) & (
            np.sin(3.0 / (depth + 0.08) + L["lane_phase"]) > 0) & (depth > 0.1)
        tex = np.where(lane[..., None], L["lane_col"], tex)
        paint(full, m, ROAD, tex)
    # buildings: facade colour with a grid of (sometimes lit) windows
    period = max(3, int(round(3 * S / 32)))
    for b in L["buildings"]:
        x0, x1 = b["x0"], b["x0"] + max(b["w"], 1.0 / S)
        y1 = hz + b["sink"]
        y0 = y1 - b["h"]
        win = (_win(y0, y1, S), _win(x0, x1, S))
        Yw, Xw = Y[win[0]], X[:, win[1]]
        m = (Xw >= x0) & (Xw < x1) & (Yw >= y0) & (Yw < y1)
        ix = np.floor((Xw - x0) * S).astype(int)
        iy = np.floor((Yw - y0) * S).astype(int)
        window = (ix % period != 0) & (iy % period != 0) & (ix > 0) & (np.floor((x1 - Xw) * S) > 0)
        lit = b["lit"][(iy // period) % 16, (ix // period) % 16]
        wcol = np.where(lit[..., None], np.array([0.95, 0.85, 0.45], np.float32), b["win_col"])
        tex = np.where(window[..., None], wcol, b["col"]) * (1 + 0.05 * grain[4][win])[..., None]
        paint(win, m, BUILDING, tex)
    # trees: trunk + blotchy dark-green canopy
    leaves = _smooth(L["leaves"], S)
    for tr in L["trees"]:
        r, cx, base = tr["r"], tr["cx"], tr["base"]
        hw = max(0.125 * r, 0.5 / S)
        win = (_win(base - 1.6 * r, base, S), _win(cx - hw, cx + hw, S))
        Yw, Xw = Y[win[0]], X[:, win[1]]
        trunk = (np.abs(Xw - cx) < hw) & (Yw < base) & (Yw >= base - 1.6 * r)
        paint(win, trunk, TREE, tr["trunk"] * (1 + 0.1 * grain[5][win])[..., None])
        reach = max(r, 1.0 / S)
        win = (_win(base - 3.4 * r - reach, base, S), _win(cx - 1.6 * r - reach, cx + 1.6 * r + reach, S))
        Yw, Xw = Y[win[0]], X[:, win[1]]
        canopy = np.zeros((len(Yw), Xw.shape[1]), bool)
        for bx, by, br in tr["blobs"]:
            canopy |= (Xw - bx) ** 2 + (Yw - by) ** 2 < max(br, 1.0 / S) ** 2
        shadow = np.clip((Yw - (base - 3 * r)) / (2 * r), 0, 1)
        tex = tr["col"] * (1 + 0.35 * leaves[win][..., None] + 0.18 * grain[5][win][..., None]
                           - 0.3 * shadow[..., None])
        paint(win, canopy, TREE, tex)
    # cars: coloured body, dark window band, black wheels
    for car in L["cars"]:
        s = car["s"]
        yb = hz + s * (1 - hz)
        left = L["vx"] + (L["xl"] - L["vx"]) * s
        right = L["vx"] + (L["xr"] - L["vx"]) * s
        w, h = max(car["w"], 1.5 / S), max(car["h"], 1.5 / S)
        x0 = left + car["pos"] * max(right - left - w, 0)
        win = (_win(yb - h, yb, S), _win(x0, x0 + w, S))
        Yw, Xw = Y[win[0]], X[:, win[1]]
        m = (Xw >= x0) & (Xw < x0 + w) & (Yw >= yb - h) & (Yw < yb)
        fy = (Yw - (yb - h)) / h                              # 0 top .. 1 bottom
        fx = (Xw - x0) / w
        body = car["col"] * (1.15 - 0.35 * fy)[..., None]
        window = (fy < 0.4) & (fx > 0.18) & (fx < 0.82)
        wheel = (fy > 0.75) & ((np.abs(fx - 0.22) < 0.1) | (np.abs(fx - 0.78) < 0.1))
        tex = np.where(window[..., None], np.array([0.18, 0.22, 0.28], np.float32) + 0.15 * (fx - fy)[..., None], body)
        tex = np.where(wheel[..., None], np.float32(0.05), tex)
        paint(win, m, CAR, tex)
    # the rare class: head / shirt / trousers
    for p in L["people"]:
        yb = hz + p["s"] * (1 - hz)
        w, h = max(p["w"], 1.2 / S), max(p["h"], 3.0 / S)
        x0 = p["x"] - w / 2
        win = (_win(yb - h, yb, S), _win(x0, x0 + w, S))
        Yw, Xw = Y[win[0]], X[:, win[1]]
        m = (Xw >= x0) & (Xw < x0 + w) & (Yw >= yb - h) & (Yw < yb)
        fy = ((Yw - (yb - h)) / h)[..., None]
        tex = np.where(fy < 0.25, p["skin"], np.where(fy < 0.6, p["shirt"], p["legs"]))
        paint(win, m, PERSON, tex)
    return np.clip(img, 0, 1), lab


def render_scenes(seed: int, n: int, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """n scenes: images float [n, 3, size, size] in [-1, 1], labels int64 [n, size, size] in
    0..N_CLASSES-1. Scene i depends only on (seed, i)."""
    _check_size(size)
    imgs = np.empty((n, size, size, 3), np.float32)
    labs = np.empty((n, size, size), np.int64)
    for i in range(n):
        imgs[i], labs[i] = _render_one(np.random.default_rng([seed, i]), size)
    images = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous() * 2 - 1
    return images, torch.from_numpy(labs)


def held_out(n: int, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Test scenes (images, labels) from seed HELD_OUT_OFFSET + seed: disjoint from training
    scenes drawn with small seeds. For mIoU / FID evaluation."""
    return render_scenes(HELD_OUT_OFFSET + seed, n, size)


# ---- utilities ---------------------------------------------------------------------------------

def class_frequencies(labels, n_classes: int = N_CLASSES) -> np.ndarray:
    """Pixel share of each class, [n_classes] summing to 1 (labels: tensor or array of ids)."""
    a = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    counts = np.bincount(a.reshape(-1).astype(np.int64), minlength=n_classes)[:n_classes]
    return counts / max(a.size, 1)


def colorize(labels) -> torch.Tensor:
    """Label map(s) [H, W] or [n, H, W] -> fixed-palette image(s) [3, H, W] / [n, 3, H, W] in [-1, 1]."""
    t = torch.as_tensor(labels).long()
    pal = torch.from_numpy(PALETTE)
    if t.min() < 0 or t.max() >= len(pal):
        raise ValueError(f"label ids must be in 0..{len(pal) - 1}")
    out = pal[t] * 2 - 1                                     # [..., H, W, 3]
    return out.movedim(-1, -3).contiguous()
