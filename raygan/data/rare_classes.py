"""Rare-class sampling of the paired set (docs/METHODS.md, "Semi-paired label-to-image").

n_kc = pixels of class c in label map t_k, N_c = Σ_k n_kc, b_kc = 1[n_kc > 0];
p̃_k = Σ_c b_kc · n_kc / N_c ("sum", the choice) or max_c b_kc · n_kc / N_c ("max");
p_k = p̃_k / Σ_k p̃_k. Images are drawn with p during the first half of training (the paper),
uniformly otherwise; the ablations move it to the second half (F) or switch it off (E).
"""
from __future__ import annotations

import torch

PHASES = ("first", "second", "off")
MODES = ("sum", "max")


def class_pixel_counts(labels, n_classes: int) -> torch.Tensor:
    """n [K, n_classes] (int64): pixels of each class in each integer label map [K, H, W].
    Values outside [0, n_classes) (e.g. an ignore label 255) are not counted."""
    labels = torch.as_tensor(labels).long()
    flat = labels.reshape(len(labels), -1)
    valid = (flat >= 0) & (flat < n_classes)
    rows = torch.arange(len(flat))[:, None].expand_as(flat)
    idx = (rows * n_classes + flat.clamp(0, n_classes - 1))[valid]
    return torch.bincount(idx, minlength=len(flat) * n_classes).reshape(len(flat), n_classes)


def rare_class_weights(labels, n_classes: int, mode: str = "sum") -> torch.Tensor:
    """Sampling probabilities p [K] (float64, sum 1) of the K paired label maps [K, H, W].

    mode "sum": p̃_k = Σ_c b_kc n_kc / N_c; "max": p̃_k = max_c b_kc n_kc / N_c; classes with
    N_c = 0 contribute nothing. Uniform if no map has a valid pixel."""
    if mode not in MODES:
        raise ValueError(f"unknown rare-class mode {mode!r}; expected one of {MODES}")
    n = class_pixel_counts(labels, n_classes).double()
    total = n.sum(0)  # N_c
    terms = torch.where((n > 0) & (total > 0), n / total.clamp_min(1), torch.zeros_like(n))  # b_kc n_kc / N_c
    p_tilde = terms.sum(1) if mode == "sum" else terms.max(1).values
    if p_tilde.sum() <= 0:
        return torch.full((len(n),), 1.0 / len(n), dtype=torch.float64)
    return p_tilde / p_tilde.sum()


class RareClassSampler:
    """Indices into the paired set, drawn with replacement from rare_class_weights during the
    rare-class phase and uniformly otherwise.

    phase "first": rare-class probabilities for steps < total_steps / 2 (the paper);
    "second": for steps >= total_steps / 2 (ablation F); "off": never (ablation E).
    Draws come from the sampler's own torch.Generator seeded with `seed`; its state is saved by
    state_dict() so that a resumed run continues the same stream."""

    def __init__(self, labels, n_classes: int, total_steps: int, phase: str = "first",
                 mode: str = "sum", seed: int = 0):
        if phase not in PHASES:
            raise ValueError(f"unknown rare-class phase {phase!r}; expected one of {PHASES}")
        self.probabilities = rare_class_weights(labels, n_classes, mode)
        self.size = len(self.probabilities)
        if self.size == 0:
            raise ValueError("the paired set is empty")
        self.total_steps, self.phase, self.mode, self.seed = int(total_steps), phase, mode, seed
        self.generator = torch.Generator().manual_seed(seed)

    def rare_active(self, step: int) -> bool:
        first_half = step < self.total_steps / 2
        return (self.phase == "first" and first_half) or (self.phase == "second" and not first_half)

    def indices(self, step: int, batch: int) -> torch.Tensor:
        """LongTensor [batch] of paired-set indices for training step `step`."""
        if self.rare_active(step):
            return torch.multinomial(self.probabilities, batch, replacement=True, generator=self.generator)
        return torch.randint(self.size, (batch,), generator=self.generator)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "seed": self.seed,
                "phase": self.phase, "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
