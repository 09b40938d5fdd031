"""The semi-paired split of a training set: which scenes (or images) are pairs P, which
contribute only their image (X_u), which only their label map (T_u); supervision ratio
r = |P| / (|P| + |X_u|)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raygan.errors import UserError

SPLIT_TAG = 7_919  # separates the split permutation's RNG stream from the scenes' streams


@dataclass
class SemiPairedSplit:
    """Index arrays into a list of n_train scenes. `paired`: scenes used as (image, label) pairs;
    `unpaired_images`: scenes whose images only are used (X_u); `unpaired_labels`: OTHER scenes
    whose label maps only are used (T_u). The three sets are disjoint."""
    paired: np.ndarray
    unpaired_images: np.ndarray
    unpaired_labels: np.ndarray
    n_train: int
    requested_ratio: float

    @property
    def ratio(self) -> float:
        """Realised supervision ratio r = |P| / (|P| + |X_u|)."""
        return len(self.paired) / (len(self.paired) + len(self.unpaired_images))

    def __repr__(self) -> str:
        return (f"SemiPairedSplit(n_train={self.n_train}, paired={len(self.paired)}, "
                f"unpaired_images={len(self.unpaired_images)}, unpaired_labels={len(self.unpaired_labels)}, "
                f"r={self.ratio:.3f})")


def semi_paired_split(n_train: int, ratio: float, seed: int) -> SemiPairedSplit:
    """Split n_train scenes into P, X_u and T_u (disjoint, |X_u| = |T_u|) with supervision ratio
    r = |P| / (|P| + |X_u|) as close to `ratio` as the integer sizes allow.

    With disjoint X_u and T_u, |P| + 2|X_u| <= n_train, so |P| = round(n_train * r / (2 - r))
    (at least 1), |X_u| = |T_u| = round(|P| (1 - r) / r) capped at (n_train - |P|) // 2;
    r = 1 makes every scene paired. At most one scene is left unused (odd remainder).
    """
    try:
        r = float(ratio)
    except (TypeError, ValueError):
        raise UserError("ratio", f"supervision ratio must be a number in (0, 1], got {ratio!r}") from None
    if not (0.0 < r <= 1.0):                                 # also rejects NaN
        raise UserError("ratio", f"supervision ratio must be in (0, 1], got {ratio!r}")
    if int(n_train) != n_train or n_train < 1:
        raise UserError("n_train", f"need at least 1 training scene, got {n_train!r}")
    n_train = int(n_train)
    n_p = min(n_train, max(1, int(round(n_train * r / (2.0 - r)))))
    n_u = min((n_train - n_p) // 2, int(round(n_p * (1.0 - r) / r)))
    perm = np.random.default_rng([seed, SPLIT_TAG]).permutation(n_train)
    return SemiPairedSplit(
        paired=np.sort(perm[:n_p]),
        unpaired_images=np.sort(perm[n_p:n_p + n_u]),
        unpaired_labels=np.sort(perm[n_p + n_u:n_p + 2 * n_u]),
        n_train=n_train, requested_ratio=r)
