"""raygan's on-disk cache (``$RAYGAN_CACHE``, by default ``~/.cache/raygan``): where trained
metric networks, reference statistics and RSSA's inversions are kept, the one helper that
caches arrays, and the one fingerprint that names cache entries after what they depend on."""
from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from pathlib import Path
from typing import Callable


TEST_NETWORKS = "RAYGAN_TEST_NETWORKS"


def cache_dir() -> Path:
    return Path(os.environ.get("RAYGAN_CACHE") or Path.home() / ".cache" / "raygan")


def test_networks() -> bool:
    """Whether ``$RAYGAN_TEST_NETWORKS`` is ``1``: the embedded metric networks (ShapesNet,
    SegNet) are then trained at test size (a few dozen steps on a small pool: the code paths
    run, the metrics' values mean little) and cached under names that say so, never the real
    ones'. tests/conftest.py sets it for the suite (the tests that check the metrics' values
    train their own networks, with explicit steps). Unset or ``0``: the real recipes."""
    value = os.environ.get(TEST_NETWORKS, "0")
    if value not in ("0", "1"):
        raise ValueError(f"{TEST_NETWORKS} must be 0 or 1, got {value!r}")
    return value == "1"


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
    # A unique temporary name: two processes filling the same entry (parallel test workers,
    # concurrent trials) never write into one file; the last rename wins, both are whole.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp.npz")
    with os.fdopen(fd, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
    return arrays


def save_atomic(obj, path) -> None:
    """torch.save to a temporary file in the same folder, then rename over ``path``: a reader
    (or a killed writer) never sees half a file."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_network(path, meta: dict, build: Callable, train: Callable, what: str):
    """A network trained once and kept at ``path``: loaded when the file's ``meta`` entries
    (e.g. version, size) match, built by ``build(config)`` from the constructor config saved
    with it; otherwise (no file, another version, an unreadable file: reported) ``train()``ed
    now and saved atomically. Returned in eval mode on the CPU."""
    import torch

    path = Path(path)
    if path.exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            found = {k: blob.get(k) for k in meta}
            if found != meta:
                raise ValueError(f"{found} where {meta} was expected")
            net = build(blob.get("config") or {})
            net.load_state_dict(blob["state_dict"])
            return net.eval()
        except Exception as exc:  # any unreadable file means: rebuild it
            warnings.warn(f"{what} cache {path} is unusable ({type(exc).__name__}: {exc}); retraining")
    net = train()
    state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
    save_atomic({**meta, "config": dict(getattr(net, "config", {})), "state_dict": state}, path)
    return net.eval()
