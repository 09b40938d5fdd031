"""FID, KID and IS with the published Inception network, each score with its provenance.

Pre-processing (``resize_299``), as clean-fid found it matters (the resize filter moves FID
by several points): images in [-1, 1] are first quantised to uint8, as a saved PNG would
be, then each channel is resized to 299 x 299 by PIL's bicubic filter in float mode
(no second quantisation; the overshoot clipped to [0, 255]), then mapped to [-1, 1] by
2 u / 255 - 1, the range the FID Inception expects. Reference images read from files go through the same steps.

Formulas (features f = Inception pool3, 2048-d; logits of the TF graph's 1008 classes):
  FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))        (Heusel et al. 2017)
  KID = mean over subsets of the unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3
        (Binkowski et al. 2018; 100 subsets of min(1000, n) samples by default)
  IS  = exp(E_x KL(p(y|x) || p(y))), p = softmax of all 1008 logits, mean and std over
        10 splits (Salimans et al. 2016; the original code also used the 1008-way softmax)
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from raygan.metrics.frechet import feature_stats, frechet_distance
from raygan.metrics.inception import INPUT_SIZE

RESIZE = "uint8 then PIL bicubic 299 per channel in float (clean-fid)"
INCEPTION_NAME = "inception-v3-fid (pt_inception-2015-12-05)"
KID_SUBSETS, KID_SUBSET_SIZE, IS_SPLITS = 100, 1000, 10


@dataclass
class Score:
    """One number and where it came from."""
    metric: str
    value: float
    network: str
    weights_sha256: str
    resize: str
    samples: int
    reference: str
    std: float | None = None
    extra: dict = field(default_factory=dict)

    def record(self) -> dict:
        out = asdict(self)
        if self.std is None:
            out.pop("std")
        if not self.extra:
            out.pop("extra")
        return out


# ---- pre-processing ---------------------------------------------------------------------------

def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, H, W, 3], rounding as an image writer does."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round()
    return x.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def resize_299(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, 299, 299] in [-1, 1]: PIL bicubic per channel in
    float mode ("F"), clipped to [0, 255], as clean-fid does, then 2 u / 255 - 1."""
    out = np.empty((len(images_u8), 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for i, img in enumerate(images_u8):
        for c in range(3):
            ch = Image.fromarray(img[..., c].astype(np.float32), mode="F")
            out[i, c] = np.asarray(ch.resize((INPUT_SIZE, INPUT_SIZE), Image.BICUBIC)).clip(0, 255)
    return torch.from_numpy(out / 127.5 - 1.0)


@torch.no_grad()
def inception_outputs(images_u8: np.ndarray, net, batch_size: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """(pool3 [N, 2048], logits [N, 1008]) float64 of uint8 images [N, H, W, 3] (any size)."""
    device = next(net.parameters()).device
    pools, logits = [], []
    for i in range(0, len(images_u8), batch_size):
        p, lg = net(resize_299(images_u8[i:i + batch_size]).to(device))
        pools.append(p.double().cpu())
        logits.append(lg.double().cpu())
    if not pools:
        raise ValueError("no images")
    return torch.cat(pools).numpy(), torch.cat(logits).numpy()


# ---- the formulas -----------------------------------------------------------------------------

def fid_from_features(f_gen: np.ndarray, f_ref: np.ndarray) -> float:
    """FID between two feature sets [N, D] (see the module docstring).

    With fewer samples than dimensions (e.g. 1000 images, 2048-d) the covariances are
    singular and a 2048 x 2048 sqrtm is slow and inexact, so the trace term is taken from
    the samples instead: with centred X [n, D], Y [m, D], S_x S_y has the non-zero eigenvalues
    of M M^T, M = X Y^T / sqrt((n-1)(m-1)), hence Tr (S_x S_y)^(1/2) = sum of M's singular
    values: exact for the sample covariances. Larger sets use ``frechet_distance``."""
    x, y = np.asarray(f_gen, np.float64), np.asarray(f_ref, np.float64)
    n, m = len(x), len(y)
    if x.shape[1] != y.shape[1] or min(n, m) < 2:
        raise ValueError(f"FID needs two feature sets of one dimension with >= 2 rows, got {x.shape}, {y.shape}")
    if min(n, m) > x.shape[1]:
        return frechet_distance(*feature_stats(x), *feature_stats(y))
    xc, yc = x - x.mean(0), y - y.mean(0)
    diff = x.mean(0) - y.mean(0)
    tr_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    return float(diff @ diff + (xc * xc).sum() / (n - 1) + (yc * yc).sum() / (m - 1) - 2 * tr_sqrt)


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(x, y) = (x.y / d + 1)^3 for all pairs: [n, m]."""
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 of samples x [m, D] and y [n, D] with the cubic polynomial kernel:
    sum_{i!=j} k(x_i,x_j)/(m(m-1)) + sum_{i!=j} k(y_i,y_j)/(n(n-1)) - 2 sum_{i,j} k(x_i,y_j)/(mn)."""
    m, n = len(x), len(y)
    if m < 2 or n < 2:
        raise ValueError("KID needs at least two samples in each set")
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2.0 * kxy.mean())


def kid_subsets(n_gen: int, n_ref: int, n_subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
                seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (generated, reference) index subsets KID averages over: ``n_subsets`` draws, each
    without replacement, of ``min(subset_size, n_gen, n_ref)`` samples from each set."""
    size = min(subset_size, n_gen, n_ref)
    rng = np.random.default_rng(seed)
    return [(rng.choice(n_gen, size, replace=False), rng.choice(n_ref, size, replace=False))
            for _ in range(n_subsets)]


def kid(f_gen: np.ndarray, f_ref: np.ndarray, n_subsets: int = KID_SUBSETS, subset_size: int = KID_SUBSET_SIZE,
        seed: int = 0) -> tuple[float, float]:
    """KID (mean, std over subsets) of feature sets [N, D]."""
    f_gen, f_ref = np.asarray(f_gen, np.float64), np.asarray(f_ref, np.float64)
    vals = [mmd2_unbiased(f_gen[a], f_ref[b]) for a, b in kid_subsets(len(f_gen), len(f_ref), n_subsets,
                                                                       subset_size, seed)]
    return float(np.mean(vals)), float(np.std(vals))


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS) -> tuple[float, float]:
    """IS (mean, std over ``splits`` consecutive splits) from logits [N, C]."""
    logits = np.asarray(logits, np.float64)
    if len(logits) < splits:
        raise ValueError(f"IS with {splits} splits needs at least {splits} samples, got {len(logits)}")
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    scores = []
    for part in np.array_split(log_p, splits):
        log_py = np.log(np.exp(part).mean(0))
        scores.append(np.exp((np.exp(part) * (part - log_py)).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ---- reference sets ---------------------------------------------------------------------------

def folder_identity(folder: Path, files: list[Path]) -> str:
    """A short hash of an image folder's file names, sizes and modification times."""
    h = hashlib.sha256(str(folder.resolve()).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:12]


def cached_features(path: Path, compute) -> np.ndarray:
    """``compute()`` ([N, D] float) cached as an npz at ``path`` (raygan.cache.cached_arrays)."""
    from raygan.cache import cached_arrays

    return cached_arrays(path, lambda: {"features": np.asarray(compute(), dtype=np.float64)})["features"]


def reference_cache_path(cache_dir: Path, reference_id: str, weights_sha256: str, n: int) -> Path:
    """The cache file of a reference set's pool3 features: keyed by the set's identity, the
    network weights, the resize mode and the count."""
    key = hashlib.sha256(f"{reference_id}|{weights_sha256}|{RESIZE}|{n}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"ref_inception_{n}_{key}.npz"
