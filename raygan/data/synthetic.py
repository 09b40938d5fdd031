"""Embedded procedural domains: coloured "shapes" (source) and their "sketches" (target).

A scene is 1-3 shapes (circle, square, triangle, ring, star) on a background.
The source style paints them as softly shaded filled shapes on a colour
gradient; the target style draws the SAME scene as dark ink outlines (the band
|sdf| < half-width of each visible shape boundary) on textured off-white paper.
Both styles come from one set of signed-distance fields, so a sketch's ink lies
exactly on the visible boundaries of its source image.

Scene i depends only on (seed, i), so a longer list extends a shorter one.
Images are float tensors [n, 3, size, size] in [-1, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

KINDS = ("circle", "square", "triangle", "ring", "star")
MAX_SHAPES = 3
PAPER_GRID = 16  # paper texture is stored at this resolution, upsampled at render
STYLES = ("source", "target")
HELD_OUT_OFFSET = 10_000  # held-out seeds = HELD_OUT_OFFSET + seed, disjoint from shot seeds


@dataclass
class Scenes:
    """Scene parameters, one row per image; slot 0 is the largest shape (drawn first)."""
    count: np.ndarray    # [n] number of shapes, 1..MAX_SHAPES
    kind: np.ndarray     # [n, S] index into KINDS
    cx: np.ndarray       # [n, S] centre, in [0, 1] image units (x right)
    cy: np.ndarray       # [n, S] (y down)
    r: np.ndarray        # [n, S] nominal radius, image units
    theta: np.ndarray    # [n, S] rotation, radians
    color: np.ndarray    # [n, S, 3] fill colour, RGB in [0, 1]
    bg0: np.ndarray      # [n, 3] gradient start colour
    bg1: np.ndarray      # [n, 3] gradient end colour
    bg_angle: np.ndarray     # [n] gradient direction
    light_angle: np.ndarray  # [n] shading light direction
    paper: np.ndarray    # [n, PAPER_GRID, PAPER_GRID] paper grain, N(0, 1)
    paper_tint: np.ndarray   # [n, 3] paper colour
    ink: np.ndarray      # [n, 3] ink colour

    def __len__(self) -> int:
        return len(self.count)

    def __repr__(self) -> str:
        return f"Scenes(n={len(self)})"

    def subset(self, idx) -> "Scenes":
        return Scenes(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB, all inputs in [0, 1]; returns [..., 3]."""
    k = (np.stack([5.0, 3.0, 1.0], -1) + h[..., None] * 6.0) % 6.0
    return v[..., None] - v[..., None] * s[..., None] * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


def _sample_one(rng: np.random.Generator) -> dict:
    count = int(rng.integers(1, MAX_SHAPES + 1))
    kind = rng.integers(0, len(KINDS), MAX_SHAPES)
    # The largest shape is clearly larger than the others so its kind is a well-posed label.
    r = np.empty(MAX_SHAPES)
    r[0] = rng.uniform(0.22, 0.33)
    r[1:] = rng.uniform(0.12, 0.7 * r[0], MAX_SHAPES - 1)
    cx, cy = np.zeros(MAX_SHAPES), np.zeros(MAX_SHAPES)
    for j in range(MAX_SHAPES):
        # Rejection sampling keeps shapes from piling on top of each other (fixed try count: deterministic).
        for _ in range(30):
            x, y = rng.uniform(r[j], 1.0 - r[j], 2)
            if all(math.hypot(x - cx[k], y - cy[k]) > 0.8 * (r[j] + r[k]) for k in range(min(j, count))):
                break
        cx[j], cy[j] = x, y
    hue = rng.uniform(0, 1, MAX_SHAPES)
    color = _hsv_to_rgb(hue, rng.uniform(0.75, 1.0, MAX_SHAPES), rng.uniform(0.8, 1.0, MAX_SHAPES))
    bh = rng.uniform(0, 1)
    bg = _hsv_to_rgb(np.array([bh, (bh + rng.uniform(0.05, 0.2)) % 1.0]),
                     rng.uniform(0.25, 0.55, 2), rng.uniform(0.3, 0.6, 2))
    return dict(
        count=count, kind=kind, cx=cx, cy=cy, r=r, theta=rng.uniform(0, 2 * np.pi, MAX_SHAPES),
        color=color, bg0=bg[0], bg1=bg[1], bg_angle=rng.uniform(0, 2 * np.pi),
        light_angle=rng.uniform(0, 2 * np.pi),
        paper=rng.standard_normal((PAPER_GRID, PAPER_GRID)),
        paper_tint=np.array([0.96, 0.945, 0.9]) + rng.uniform(-0.025, 0.025, 3),
        ink=np.full(3, rng.uniform(0.05, 0.2)) + np.array([0.0, 0.0, rng.uniform(0.0, 0.1)]),
    )


def sample_scenes(seed: int, n: int) -> Scenes:
    """n scenes; scene i depends only on (seed, i)."""
    rows = [_sample_one(np.random.default_rng([seed, i])) for i in range(max(n, 1))]
    return Scenes(**{k: np.asarray([r[k] for r in rows])[:n] for k in rows[0]})


# ---- signed distances, in the shape's unit frame (nominal radius 1) --------------------------

def _sdf_folded(u: torch.Tensor, m: int, r0: float, r1: float) -> torch.Tensor:
    """Exact signed distance to a polygon with m-fold mirror symmetry whose boundary, in the
    wedge [0, pi/m] of angle (measured from "up"), is the segment from radius r0 at angle 0 to
    radius r1 at angle pi/m: a regular m-gon (r1 = r0 cos(pi/m)) or an m-pointed star.
    Folding every point into that wedge (by the symmetry) leaves one segment to test."""
    rho = u.norm(dim=-1)
    phi = torch.atan2(u[..., 0], -u[..., 1]) % (2 * math.pi / m)
    phi = torch.minimum(phi, 2 * math.pi / m - phi)
    px, py = rho * torch.cos(phi), rho * torch.sin(phi)
    ax, ay = r0, 0.0
    ex, ey = r1 * math.cos(math.pi / m) - ax, r1 * math.sin(math.pi / m) - ay
    wx, wy = px - ax, py - ay
    t = ((wx * ex + wy * ey) / (ex * ex + ey * ey)).clamp(0, 1)
    dist = torch.hypot(wx - t * ex, wy - t * ey)
    # The origin (inside) lies on the positive side of the segment's line (cross > 0).
    return torch.where(ex * wy - ey * wx > 0, -dist, dist)


def _sdf_unit(kind: int, u: torch.Tensor) -> torch.Tensor:
    # Unit sizes chosen so the kinds have similar areas at the same nominal radius.
    name = KINDS[kind]
    if name == "circle":
        return u.norm(dim=-1) - 0.8
    if name == "ring":
        return (u.norm(dim=-1) - 0.7).abs() - 0.2
    if name == "square":
        q = u.abs() - 0.72                                    # exact box distance
        return q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)
    if name == "triangle":
        return _sdf_folded(u, 3, 1.08, 1.08 * math.cos(math.pi / 3))
    return _sdf_folded(u, 5, 1.08, 0.46)                      # star


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = (torch.arange(size, dtype=torch.float32) + 0.5) / size   # pixel centres
    yy, xx = torch.meshgrid(c, c, indexing="ij")
    return xx.reshape(-1), yy.reshape(-1)


def _slot_fields(sc: Scenes, j: int, xx, yy):
    """Signed distance (image units) [n, P] of slot j for every image, +inf where absent, and
    the unrotated unit offset from the centre [n, P, 2] (for shading)."""
    f = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
    cx, cy, r, th = f(sc.cx[:, j])[:, None], f(sc.cy[:, j])[:, None], f(sc.r[:, j])[:, None], f(sc.theta[:, j])[:, None]
    dx, dy = (xx - cx) / r, (yy - cy) / r
    cos, sin = torch.cos(th), torch.sin(th)
    u = torch.stack([cos * dx + sin * dy, -sin * dx + cos * dy], -1)   # rotate by -theta
    sdf = torch.full(dx.shape, float("inf"))
    present = torch.as_tensor(sc.count > j)
    kinds = torch.as_tensor(sc.kind[:, j])
    for k in range(len(KINDS)):
        m = present & (kinds == k)
        if m.any():
            sdf[m] = _sdf_unit(k, u[m]) * r[m]
    return sdf, torch.stack([dx, dy], -1)


def _render_chunk(sc: Scenes, size: int, style: str) -> torch.Tensor:
    n, P = len(sc), size * size
    f = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
    xx, yy = _grid(size)
    px = float(size)  # image units -> pixels
    if style == "source":
        ang = f(sc.bg_angle)[:, None]
        t = ((xx - 0.5) * torch.cos(ang) + (yy - 0.5) * torch.sin(ang)) / math.sqrt(0.5) + 0.5
        t = t.clamp(0, 1)[:, None, :]                                     # [n, 1, P]
        img = f(sc.bg0)[:, :, None] * (1 - t) + f(sc.bg1)[:, :, None] * t
        la = f(sc.light_angle)[:, None, None]
        light = torch.cat([torch.cos(la), torch.sin(la)], -1)            # [n, 1, 2]
    else:
        grain = torch.nn.functional.interpolate(f(sc.paper)[:, None], size=(size, size), mode="bilinear",
                                                align_corners=False).reshape(n, 1, P)
        paper = f(sc.paper_tint)[:, :, None] * (1 + 0.03 * grain)
        img = paper.expand(n, 3, P).clone()
        ink = f(sc.ink)[:, :, None]
        half_width = 0.6 * size / 32  # ink half-width in pixels; lines scale with the image
    for j in range(MAX_SHAPES):          # slot 0 (largest) at the back
        if not (sc.count > j).any():
            break
        sdf, d = _slot_fields(sc, j, xx, yy)
        fill = (0.5 - sdf * px).clamp(0, 1)[:, None, :]   # 1-pixel anti-aliased coverage
        if style == "source":
            r = f(sc.r[:, j])[:, None]
            depth = (-sdf / (0.35 * r)).clamp(0, 1)        # 0 at the rim, 1 well inside
            lam = (d * light).sum(-1).clamp(-1, 1)
            shade = (0.55 + 0.3 * depth.sqrt() + 0.25 * lam)[:, None, :]
            col = (f(sc.color[:, j])[:, :, None] * shade).clamp(0, 1)
            img = img * (1 - fill) + col * fill
        else:
            img = img * (1 - fill) + paper * fill          # hide the lines this shape occludes
            line = (half_width + 0.5 - sdf.abs() * px).clamp(0, 1)[:, None, :]
            img = img * (1 - line) + ink * line
    return (img.clamp(0, 1) * 2 - 1).reshape(n, 3, size, size)


def render(scenes: Scenes, size: int, style: str, chunk: int = 512) -> torch.Tensor:
    """Render scenes as [n, 3, size, size] floats in [-1, 1]; style "source" or "target"."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if size < 16 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 16, got {size}")
    n = len(scenes)
    if n == 0:
        return torch.zeros(0, 3, size, size)
    return torch.cat([_render_chunk(scenes.subset(slice(i, i + chunk)), size, style)
                      for i in range(0, n, chunk)])


def few_shot_target(size: int = 32, n_shots: int = 10, seed: int = 0) -> torch.Tensor:
    """The fixed few-shot training set of the target ("sketches") domain."""
    return render(sample_scenes(seed, n_shots), size, "target")


def held_out(style: str, n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Held-out images (never shots): scenes from seed HELD_OUT_OFFSET + seed. The same seed gives
    the same scenes in both styles."""
    return render(sample_scenes(HELD_OUT_OFFSET + seed, n), size, style)


def scene_labels(scenes: Scenes) -> dict:
    """kind: kind of the largest shape (slot 0); count: number of shapes minus one."""
    return {"kind": torch.as_tensor(scenes.kind[:, 0], dtype=torch.long),
            "count": torch.as_tensor(scenes.count - 1, dtype=torch.long)}
