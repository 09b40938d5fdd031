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
