"""Where the published metric networks' weights come from (nothing is ever downloaded).

A weights file is looked up, first hit wins:
  1. an explicit path (a command-line flag such as ``--inception PATH``);
  2. the file's own environment variable (``RAYGAN_INCEPTION_WEIGHTS``, ...);
  3. ``$RAYGAN_WEIGHTS/<file name>`` (one folder holding them all);
  4. the torch hub cache, ``torch.hub.get_dir()/checkpoints/<file name>``
     (``$TORCH_HOME/hub/checkpoints``, by default ``~/.cache/torch/hub/checkpoints``),
     where torchvision and pytorch-fid put them when they download.
A missing file is a one-line UserError naming the file and those places. The sha256 of the
file found goes into every score's provenance; a file whose name carries a published hash
prefix (torch hub's ``name-<sha256 prefix>.ext`` convention) but whose content does not match
it is reported as unverified, so a stand-in is never presented as the published network.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

from raygan.errors import UserError

DIR_VAR = "RAYGAN_WEIGHTS"


@dataclass(frozen=True)
class Known:
    """A published weights file: its canonical name, env var and published sha256 prefix."""
    file: str
    env: str
    what: str
    sha256_prefix: str = ""


KNOWN = {
    "inception": Known("pt_inception-2015-12-05-6726825d.pth", "RAYGAN_INCEPTION_WEIGHTS",
                       "pytorch-fid's FID Inception-v3 (TF 2015-12-05 graph)", "6726825d"),
    "vgg16": Known("vgg16-397923af.pth", "RAYGAN_VGG16_WEIGHTS", "torchvision's ImageNet VGG16", "397923af"),
    "alexnet": Known("alexnet-owt-7be5be79.pth", "RAYGAN_ALEXNET_WEIGHTS",
                     "torchvision's ImageNet AlexNet", "7be5be79"),
    "hed": Known("network-bsds500.pytorch", "RAYGAN_HED_WEIGHTS", "HED of sniklaus/pytorch-hed"),
}


@dataclass(frozen=True)
class WeightsFile:
    path: Path
    sha256: str          # full hex digest of the file's bytes
    known: Known

    @property
    def verified(self) -> bool:
        """True when the file is the published one (its hash starts with the published prefix)."""
        return bool(self.known.sha256_prefix) and self.sha256.startswith(self.known.sha256_prefix)

    @property
    def short_hash(self) -> str:
        return self.sha256[:12]


_HASHES: dict[tuple, str] = {}  # (path, size, mtime) -> sha256: hash each file once per process


def sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def hub_dir() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def candidates(name: str, explicit=None) -> list[tuple[Path, str]]:
    """(path, how it was chosen) in lookup order for the known file ``name``."""
    k = KNOWN[name]
    out = []
    if explicit:
        out.append((Path(explicit).expanduser(), "given path"))
    if os.environ.get(k.env):
        out.append((Path(os.environ[k.env]).expanduser(), f"${k.env}"))
    if os.environ.get(DIR_VAR):
        out.append((Path(os.environ[DIR_VAR]).expanduser() / k.file, f"${DIR_VAR}"))
    out.append((hub_dir() / k.file, "torch hub cache"))
    return out


def resolve(name: str, explicit=None) -> WeightsFile:
    """The weights file for ``name`` (a key of KNOWN), with its sha256; UserError if missing.
    An explicit path or env var that names a missing file is an error by itself (no
    silent fall-through to another file)."""
    k = KNOWN[name]
    for path, how in candidates(name, explicit):
        if path.is_file():
            return WeightsFile(path, sha256_of(path), k)
        if how != "torch hub cache" and how != f"${DIR_VAR}":
            raise UserError(path, f"no such file ({how}; expected {k.file}, {k.what})")
    raise UserError(k.file, f"missing, {k.what}: put it in {hub_dir()} or in ${DIR_VAR}, "
                            f"or point ${k.env} at it")


# ---- loading a state dict strictly ---------------------------------------------------------

def load_state_dict_strict(net, path, expected: str) -> None:
    """Load a plain tensor state dict into ``net`` with exactly its keys and shapes (BatchNorm's
    ``num_batches_tracked`` counters may be absent: they do not affect inference). Any
    mismatch is one UserError line naming the file and what was expected."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(path, f"refused: not a plain weights file (expected {expected})") from None
    except Exception as e:  # torch.load raises many types on bad bytes
        raise UserError(path, f"corrupt, truncated or not a torch file ({type(e).__name__}); "
                              f"expected {expected}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state.items()):
        raise UserError(path, f"expected a state dict of tensors ({expected})")
    own = net.state_dict()
    state = dict(state)
    for k, v in own.items():
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = [f"{name} {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
                 for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong)) if keys]
        raise UserError(path, f"wrong architecture: expected {expected} ({'; '.join(parts)})")
    net.load_state_dict(state, strict=True)
