"""Fréchet distance between Gaussian fits of feature sets (FID's formula).

Published FID needs the Inception-v3 FID weights; with ShapesNet features the metric
is named `fd_shapesnet` so that it is never mistaken for FID."""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg
import torch

from raygan.metrics.features import extract_features

NAME = "fd_shapesnet"


def feature_stats(feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, float64) of features [N, D]."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(0), np.atleast_2d(np.cov(feats, rowvar=False))


def cached_stats(path, features) -> tuple[np.ndarray, np.ndarray]:
    """``feature_stats`` of ``features()`` (a callable giving [N, D]), cached as an npz
    at ``path``; a corrupt cache file is recomputed and replaced atomically."""
    from raygan.cache import cached_arrays

    def compute():
        mu, sigma = feature_stats(np.asarray(features()))
        return {"mu": mu, "sigma": sigma}

    stats = cached_arrays(path, compute)
    return stats["mu"], stats["sigma"]


def frechet_distance(mu1, s1, mu2, s2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(s1 + s2 - 2 (s1 s2)^(1/2))."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(s1).astype(np.float64), np.atleast_2d(s2).astype(np.float64)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"shape mismatch: mu {mu1.shape} vs {mu2.shape}, sigma {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(s1 @ s2)
    if caught or not np.isfinite(covmean).all():
        # Singular product (fewer samples than dimensions, dead ReLU features): add eps to both
        # covariances' diagonals, as the reference FID code does, and (unlike it) in the trace
        # terms too, so this is the exact distance of the regularised Gaussians (self-FD = 0).
        s1, s2 = s1 + np.eye(len(s1)) * eps, s2 + np.eye(len(s2)) * eps
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
            covmean = scipy.linalg.sqrtm(s1 @ s2)
    if np.iscomplexobj(covmean):
        # Numerical error gives tiny imaginary parts; large ones mean something is wrong.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.abs(covmean.imag).max():.3g} in sqrtm")
        covmean = covmean.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_stats(reference_images: torch.Tensor, net, batch_size: int = 250):
    """(mu, sigma) of the ShapesNet features of reference images; reusable across calls."""
    return feature_stats(extract_features(reference_images, net, batch_size).double().numpy())


def fd_shapesnet(images: torch.Tensor, reference_images, net, batch_size: int = 250) -> float:
    """Fréchet distance between ShapesNet features of `images` and of `reference_images`
    (a tensor of images in [-1, 1], or precomputed `reference_stats`)."""
    ref = (reference_images if isinstance(reference_images, tuple)
           else reference_stats(reference_images, net, batch_size))
    return frechet_distance(*reference_stats(images, net, batch_size), *ref)


N_SKETCH_REFERENCE = 2000  # held-out embedded target sketches behind fd_shapesnet's statistics


def sketch_reference_stats(net, size: int, n: int = N_SKETCH_REFERENCE) -> tuple[np.ndarray, np.ndarray]:
    """ShapesNet feature statistics of held-out embedded target sketches (seed 1), cached on
    disk per size, n and net (the file name carries a hash of the weights, so that the stats of
    a test-size ShapesNet are never those of the real one): fd_shapesnet's reference in trials
    and in `raygan eval`."""
    from raygan.data.synthetic import held_out
    from raygan.cache import cache_dir, fingerprint
    from raygan.metrics.features import VERSION

    path = cache_dir() / f"ref_sketches_{size}px_{n}_{VERSION}_{fingerprint(net, 10)}.npz"
    return cached_stats(path, lambda: extract_features(held_out("target", n, size=size, seed=1), net).numpy())
