"""raygan's on-disk cache (``$RAYGAN_CACHE``, by default ``~/.cache/raygan``): where trained
metric networks, reference statistics and RSSA's inversions are kept, the one helper that
caches arrays, and the one fingerprint that names cache entries after what they depend on."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable


def cache_dir() -> Path:
    return Path(os.environ.get("RAYGAN_CACHE") or Path.home() / ".cache" / "raygan")


def fingerprint(values, n: int = 64, salt: str = "") -> str:
    """The first ``n`` hex digits of the sha256 of ``salt`` and ``values``: a module (its state
    dict, parameter names included) or an iterable of tensors (None counts as a value)."""
    h = hashlib.sha256(salt.encode())
    if hasattr(values, "state_dict"):
        for k, v in values.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    else:
        for t in values:
            h.update(b"-" if t is None else t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:n]


def cached_arrays(path, compute: Callable[[], dict]) -> dict:
    """``compute()`` (a dict of numpy arrays) stored as an npz at ``path``, or what an earlier
    call stored there; a corrupt file is recomputed and replaced atomically."""
    import numpy as np

    path = Path(path)
    if path.is_file():
        try:
            with np.load(path) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError, KeyError, EOFError):
            pass  # corrupt cache: recompute below
    arrays = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return arrays
