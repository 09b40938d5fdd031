"""What a few-shot trial reports at each evaluation, on a fixed batch of z.

- ``realism``: p_t of DCL Eq. 3, the shapesnet domain head's mean probability
  that G_t(z) is a target-domain image;
- ``intra_<dist>``: the DCL paper's intra-cluster diversity around the shots
  (``intra_lpips_vgg`` when VGG weights are in the torch cache);
- ``fd_shapesnet``: Fréchet distance to held-out target images in shapesnet's
  feature space (not Inception: hence the name);
- ``scs_<edges>``: RSSA's structural consistency of G_t(z) with G_s(z) for the
  same z and noise (Eq. 9–10), on the first ``N_SCS`` samples.
"""
from __future__ import annotations

import numpy as np
import torch
from torchvision.utils import make_grid

from raygan.data.synthetic import held_out
from raygan.metrics.diversity import intra_cluster_diversity, make_distance
from raygan.metrics.features import VERSION, default_cache_dir, extract_features, load_shapesnet
from raygan.metrics.fid import cached_stats, feature_stats, frechet_distance
from raygan.metrics.realism import realism
from raygan.metrics.sampling import generate
from raygan.metrics.scs import make_edge_detector, scs

N_REFERENCE = 2000  # held-out target images behind the Fréchet statistics
N_SCS = 200  # sample pairs behind SCS


def reference_stats(net, size: int, n: int = N_REFERENCE) -> tuple[np.ndarray, np.ndarray]:
    """Feature statistics of held-out target images, cached on disk per size."""
    path = default_cache_dir() / f"ref_sketches_{size}px_{n}_{VERSION}.npz"
    return cached_stats(path, lambda: extract_features(held_out("target", n, size=size, seed=1), net).numpy())


def warm_cache(size: int) -> None:
    """Train/load shapesnet and the reference statistics once, before trials start."""
    reference_stats(load_shapesnet(size), size)


class Evaluator:
    """The metrics of a G_t on a fixed batch of z and seeded noise; ``latent_map``
    (z -> W+) is how the method samples G_t (RSSA: compressed styles), the source
    row of the grid and SCS's reference are G_s through its own mapping."""

    def __init__(self, g_source, shots: torch.Tensor, n_samples: int, seed: int = 0, device="cpu",
                 n_grid: int = 8, edges: tuple | None = None, latent_map=None):
        self.size, self.device = shots.shape[-1], device
        self.net = load_shapesnet(self.size, device=device)
        self.shots = shots
        self.mu, self.sigma = reference_stats(self.net, self.size)
        self.dist_name, self.distance = make_distance("auto", net=self.net)
        gen = torch.Generator().manual_seed(10_000 + seed)
        self.z = torch.randn(n_samples, g_source.style_dim, generator=gen)
        self.noise_seed = seed
        self.latent_map = latent_map
        self.n_grid = n_grid
        self.source_grid = self.generate(g_source, self.z[:n_grid], latent_map=None)
        self.scs_name, self.edges = edges or make_edge_detector("sobel")
        self.source_scs = self.generate(g_source, self.z[:N_SCS], latent_map=None)

    def generate(self, g, z=None, latent_map="method") -> torch.Tensor:
        """G(z) for a prefix of ``self.z`` (all by default) with the noise of the full run."""
        z = self.z if z is None else z
        latent_map = self.latent_map if latent_map == "method" else latent_map
        return generate(g, z, self.noise_seed, N_SCS, self.device, latent_map)

    @torch.no_grad()
    def metrics(self, g) -> dict:
        images = self.generate(g)
        feats = extract_features(images, self.net)
        mu, sigma = feature_stats(feats.numpy())
        return {
            "realism": realism(images, self.net),
            self.dist_name: intra_cluster_diversity(images, self.shots.cpu(), self.distance),
            "fd_shapesnet": frechet_distance(mu, sigma, self.mu, self.sigma),
            self.scs_name: scs(images[:N_SCS], self.source_scs, self.edges),
        }

    def grid(self, g) -> torch.Tensor:
        """Source (top row) and adapted (bottom row) samples for the same z, [3, H, W] in [0, 1]."""
        adapted = self.generate(g, self.z[: self.n_grid])
        both = torch.cat([self.source_grid, adapted])
        return make_grid(both, nrow=self.n_grid, normalize=True, value_range=(-1, 1), padding=1)
