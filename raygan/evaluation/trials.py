"""What a few-shot trial reports at each evaluation, on a fixed batch of z.

``train.metrics`` names them; left empty, the embedded sketches target reports
- ``realism``: p_t of DCL Eq. 3, the shapesnet domain head's mean probability
  that G_t(z) is a target-domain image;
- ``diversity``: the DCL paper's intra-cluster diversity around the shots, by the backbone
  ``train.diversity`` names (auto: LPIPS where its weights are found, else raygan's
  ShapesNet; the backbone is in the provenance, the name stays ``diversity``);
- ``fd_shapesnet``: Fréchet distance to held-out target images in shapesnet's
  feature space (not Inception: hence the name);
- ``scs_<edges>``: RSSA's structural consistency of G_t(z) with G_s(z) for the
  same z and noise (Eq. 9–10), on the first ``N_SCS`` samples;
and a folder target reports ``fid`` (against ``data.reference``; without one ``fid_shots``,
against the shots), ``diversity`` (LPIPS) and ``scs_<edges>``. With realism and diversity
both reported, ``diversity_at_saturation`` too (evaluation/saturation.py). The published
metrics (fid, kid, fid_shots, intra_lpips) are computed by raygan.evaluation.fewshot.Run, as
`raygan eval` computes them; every score's provenance is kept in ``provenance``.
"""
from __future__ import annotations

import torch
from torchvision.utils import make_grid

from raygan.evaluation.saturation import Saturation
from raygan.metrics.frechet import N_SKETCH_REFERENCE
from raygan.evaluation.sampling import eval_codes, generate

N_SCS = 200  # sample pairs behind SCS
GENERATE_BATCH = 200
EMBEDDED_DEFAULT = ("realism", "diversity", "fd_shapesnet", "scs")
SHAPESNET_METRICS = ("realism", "intra_shapesnet", "fd_shapesnet")
RUN_METRICS = ("fid", "kid", "fid_shots", "is", "intra_lpips")  # computed by evaluation.fewshot.Run


def warm_cache(size: int) -> None:
    """Train/load shapesnet and the reference statistics once, before trials start."""
    from raygan.metrics.features import load_shapesnet
    from raygan.metrics.frechet import sketch_reference_stats

    sketch_reference_stats(load_shapesnet(size), size)


class Evaluator:
    """The metrics of a G_t on a fixed batch of z and seeded noise; ``latent_map``
    (z -> W+) is how the method samples G_t (RSSA: compressed styles), the source
    row of the grid and SCS's reference are G_s through its own mapping.

    ``metrics``: names of TRIAL_METRICS (None: EMBEDDED_DEFAULT); ``diversity``: the metric
    reported as ``diversity`` (intra_lpips or intra_shapesnet); ``saturation``: the rule behind
    diversity_at_saturation; ``run_options`` (a raygan.evaluation.fewshot.EvalOptions) and
    ``source`` (the SourceModel) are what the published ones need."""

    def __init__(self, g_source, shots: torch.Tensor, n_samples: int, seed: int = 0, device="cpu",
                 n_grid: int = 8, edges: tuple | None = None, latent_map=None, metrics=None,
                 run_options=None, source=None, shots_name: str = "the shots", diversity="intra_shapesnet",
                 saturation: Saturation | None = None):
        from raygan.metrics.scs import make_edge_detector

        self.size, self.device = shots.shape[-1], device
        self.names = tuple(metrics or EMBEDDED_DEFAULT)
        # What is computed: the names with "diversity" as its backbone's metric.
        self.computed = tuple(diversity if m == "diversity" else m for m in self.names)
        self.diversity = diversity
        self.saturation = (saturation or Saturation()) if {"realism", "diversity"} <= set(self.names) else None
        self.shots, self.shots_name = shots, shots_name
        self.run_options, self.source = run_options, source
        self.z = eval_codes(n_samples, g_source.style_dim, seed)
        self.noise_seed = seed
        self.latent_map = latent_map
        self.n_grid = n_grid
        self.source_grid = self.generate(g_source, self.z[:n_grid], latent_map=None)
        self.scs_name, self.edges = edges or make_edge_detector("sobel")
        self.source_scs = self.generate(g_source, self.z[:N_SCS], latent_map=None) if "scs" in self.names else None
        self.provenance: dict[str, dict] = {}
        if set(self.computed) & set(SHAPESNET_METRICS):
            self._load_shapesnet()

    def _load_shapesnet(self):
        from raygan.metrics.diversity import shapesnet_distance
        from raygan.metrics.features import load_shapesnet
        from raygan.metrics.frechet import sketch_reference_stats

        self.net = load_shapesnet(self.size, device=self.device)
        self.mu, self.sigma = sketch_reference_stats(self.net, self.size)
        self.distance = shapesnet_distance(self.net)

    def generate(self, g, z=None, latent_map="method") -> torch.Tensor:
        """G(z) for a prefix of ``self.z`` (all by default) with the noise of the full run."""
        z = self.z if z is None else z
        latent_map = self.latent_map if latent_map == "method" else latent_map
        return generate(g, z, self.noise_seed, GENERATE_BATCH, self.device, latent_map)

    def metrics(self, g, step: int = 0) -> dict:
        out = self.score(self.generate(g))
        if self.saturation is not None:
            out.update(self.saturation.update(step, out["realism"], out["diversity"]))
        return out

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> dict:
        """The metrics of G(self.z) (as ``generate`` renders it)."""
        from raygan.metrics.diversity import intra_cluster_diversity
        from raygan.metrics.features import extract_features
        from raygan.metrics.frechet import feature_stats, frechet_distance
        from raygan.metrics.realism import realism
        from raygan.metrics.scs import scs

        out = {}
        if "realism" in self.computed:
            out["realism"] = realism(images, self.net)
        if "intra_shapesnet" in self.computed:
            out["intra_shapesnet"] = intra_cluster_diversity(images, self.shots.cpu(), self.distance,
                                                              seed=self.noise_seed)
        if "fd_shapesnet" in self.computed:
            mu, sigma = feature_stats(extract_features(images, self.net).numpy())
            out["fd_shapesnet"] = frechet_distance(mu, sigma, self.mu, self.sigma)
        if "scs" in self.computed:
            out[self.scs_name] = scs(images[:N_SCS], self.source_scs, self.edges)
        published = [m for m in self.computed if m in RUN_METRICS]
        if published:
            from raygan.evaluation.fewshot import Run

            run = Run(self.run_options, self.source, images, self.z, shots=(self.shots.cpu(), self.shots_name))
            for name in published:
                for score in run.compute(name):
                    out[score.metric] = score.value
                    self.provenance[score.metric] = {k: v for k, v in score.record().items() if k != "value"}
        for key in out:
            self.provenance.setdefault(key, self._embedded_provenance(key, len(images)))
        if "diversity" in self.names:  # reported under its portable name; the backbone stays in the provenance
            also = self.diversity in self.names  # e.g. [diversity, intra_shapesnet]: both keys
            value = out[self.diversity] if also else out.pop(self.diversity)
            record = self.provenance[self.diversity] if also else self.provenance.pop(self.diversity)
            out["diversity"] = value
            self.provenance["diversity"] = {**record, "metric": "diversity", "computed_as": self.diversity}
        return out

    def _embedded_provenance(self, key: str, n: int) -> dict:
        from raygan.metrics.features import VERSION

        if key == self.scs_name:
            return {"metric": key, "network": f"{key[4:]} edges", "samples": min(n, N_SCS),
                    "reference": "G_s(z), same z and noise"}
        reference = {"realism": "domain head (DCL Eq. 3)",
                     "fd_shapesnet": f"embedded held-out target sketches ({N_SKETCH_REFERENCE}, seed 1)"}
        return {"metric": key, "network": f"shapesnet {VERSION} (raygan's own)", "samples": n,
                "reference": reference.get(key, f"nearest of {self.shots_name}; <= 50 per cluster")}

    def grid(self, g) -> torch.Tensor:
        """Source (top row) and adapted (bottom row) samples for the same z, [3, H, W] in [0, 1]."""
        adapted = self.generate(g, self.z[: self.n_grid])
        both = torch.cat([self.source_grid, adapted])
        return make_grid(both, nrow=self.n_grid, normalize=True, value_range=(-1, 1), padding=1)
