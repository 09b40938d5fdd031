"""What a few-shot trial reports at each evaluation, on a fixed batch of z.

``eval.metrics`` names them; left empty, the embedded sketches target reports
- ``realism``: p_t of DCL Eq. 3, the shapesnet domain head's mean probability
  that G_t(z) is a target-domain image;
- ``diversity``: the DCL paper's intra-cluster diversity around the shots, by the backbone
  ``eval.diversity`` names (auto: LPIPS where its weights are found, else raygan's
  ShapesNet; the backbone is in the provenance, the name stays ``diversity``);
- ``fd_shapesnet``: Fréchet distance to held-out target images in shapesnet's
  feature space (not Inception: hence the name);
- ``scs_<edges>``: RSSA's structural consistency of G_t(z) with G_s(z) for the
  same z and noise (Eq. 9–10), on the first ``N_SCS`` samples;
and a folder target reports ``fid`` (against ``data.reference``; without one ``fid_shots``,
against the shots), ``diversity`` (LPIPS) and ``scs_<edges>``. With realism and diversity
both reported, ``diversity_at_saturation`` too (evaluation/saturation.py). The published
metrics and the embedded ones are all computed by raygan.evaluation.fewshot's registry, as
`raygan eval` computes them; every score's provenance is kept in ``provenance``.
"""
from __future__ import annotations

import torch
from torchvision.utils import make_grid

from raygan.evaluation.fewshot import EvalOptions, Run, needing
from raygan.evaluation.saturation import Saturation
from raygan.evaluation.sampling import eval_codes, generate

N_SCS = 200  # sample pairs behind SCS
GENERATE_BATCH = 200
EMBEDDED_DEFAULT = ("realism", "diversity", "fd_shapesnet", "scs")


def warm_cache(size: int) -> None:
    """Train/load shapesnet and the reference statistics once, before trials start."""
    from raygan.metrics.features import load_shapesnet
    from raygan.metrics.frechet import sketch_reference_stats

    sketch_reference_stats(load_shapesnet(size), size)


class Evaluator:
    """The metrics of a G_t on a fixed batch of z and seeded noise; ``latent_map``
    (z -> W+) is how the method samples G_t (RSSA: compressed styles), the source
    row of the grid and SCS's reference are G_s through its own mapping.

    ``metrics``: registered metric names or ``diversity`` (None: EMBEDDED_DEFAULT);
    ``diversity``: the metric reported as ``diversity`` (intra_lpips or intra_shapesnet);
    ``saturation``: the rule behind diversity_at_saturation; ``run_options`` (a
    raygan.evaluation.fewshot.EvalOptions) and ``source`` (the SourceModel) are what every
    metric's ``Run`` is given, as `raygan eval` gives them."""

    def __init__(self, g_source, shots: torch.Tensor, n_samples: int, seed: int = 0, device="cpu",
                 n_grid: int = 8, latent_map=None, metrics=None, run_options=None, source=None,
                 shots_name: str = "the shots", diversity="intra_shapesnet", saturation: Saturation | None = None):
        self.size, self.device = shots.shape[-1], device
        self.names = tuple(metrics or EMBEDDED_DEFAULT)
        # What is computed: the names with "diversity" as its backbone's metric.
        self.computed = tuple(diversity if m == "diversity" else m for m in self.names)
        self.diversity = diversity
        self.saturation = (saturation or Saturation()) if {"realism", "diversity"} <= set(self.names) else None
        self.shots, self.shots_name = shots, shots_name
        # Without options (tests, benchmarks): the trials' defaults, Sobel edges for SCS.
        self.run_options = run_options or EvalOptions(samples=n_samples, scs_edges="sobel", seed=seed, device=str(device))
        self.source = source
        self.z = eval_codes(n_samples, g_source.style_dim, seed)
        self.noise_seed = seed
        self.latent_map = latent_map
        self.n_grid = n_grid
        self.source_grid = self.generate(g_source, self.z[:n_grid], latent_map=None)
        needs_source = set(self.computed) & set(needing("source"))
        self.source_scs = self.generate(g_source, self.z[:N_SCS], latent_map=None) if needs_source else None
        self.provenance: dict[str, dict] = {}
        self.shapesnet = self._load_shapesnet() if set(self.computed) & set(needing("embedded")) else None

    def _load_shapesnet(self):
        # Loaded here, before the first step (building a ShapesNet draws from torch's global RNG,
        # which the training steps after it also draw from).
        from raygan.cache import fingerprint
        from raygan.metrics.features import load_shapesnet
        from raygan.metrics.frechet import sketch_reference_stats

        net = load_shapesnet(self.size, device=self.device)
        sketch_reference_stats(net, self.size)
        return net, fingerprint(net)

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
        """The metrics of G(self.z) (as ``generate`` renders it), each through the registry."""
        run = Run(self.run_options, self.source, images, self.z, shots=(self.shots.cpu(), self.shots_name),
                  source_images=self.source_scs, shapesnet=self.shapesnet)
        out = {}
        for name in self.computed:
            for score in run.compute(name):
                out[score.metric] = score.value
                self.provenance[score.metric] = {k: v for k, v in score.record().items() if k != "value"}
        if "diversity" in self.names:  # reported under its portable name; the backbone stays in the provenance
            also = self.diversity in self.names  # e.g. [diversity, intra_shapesnet]: both keys
            value = out[self.diversity] if also else out.pop(self.diversity)
            record = self.provenance[self.diversity] if also else self.provenance.pop(self.diversity)
            out["diversity"] = value
            self.provenance["diversity"] = {**record, "metric": "diversity", "computed_as": self.diversity}
        return out

    def grid(self, g) -> torch.Tensor:
        """Source (top row) and adapted (bottom row) samples for the same z, [3, H, W] in [0, 1]."""
        adapted = self.generate(g, self.z[: self.n_grid])
        both = torch.cat([self.source_grid, adapted])
        return make_grid(both, nrow=self.n_grid, normalize=True, value_range=(-1, 1), padding=1)
