"""L_VGG, the perceptual term of SPADE/OASIS and the semi-paired G loss (docs/METHODS.md,
"Semi-paired label-to-image"): a frozen VGG19 trunk with torchvision's ImageNet weights,
read from a local file (never downloaded)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from raygan.errors import UserError

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's ImageNet VGG19 weights

# torchvision's vgg19 `features` up to relu5_1 (index 29): channel counts, "M" = max-pool.
_VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512]
_SLICES = [(0, 2), (2, 7), (7, 12), (12, 21), (21, 30)]  # ends at relu1_1 .. relu5_1
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _vgg19_features() -> nn.Sequential:
    layers, c = [], 3
    for v in _VGG19_CFG:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU(inplace=False)]
            c = v
    return nn.Sequential(*layers)  # 30 modules, torchvision's indices 0..29


class VGGPerceptual(nn.Module):
    """L_VGG of SPADE/OASIS: Σ_i w_i · mean |φ_i(G(z,t)) − φ_i(x)| over VGG19's relu1_1,
    relu2_1, relu3_1, relu4_1, relu5_1 with w = 1/32, 1/16, 1/8, 1/4, 1; the real side is
    detached and VGG's parameters are frozen.

    Inputs are images in [-1, 1]; with `normalize=True` (default) they are mapped to [0, 1]
    and then to ImageNet mean/std, the input VGG19 was trained on. SPADE's and OASIS's code
    feed the [-1, 1] tensors to VGG unnormalised; `normalize=False` reproduces that.
    Weights: `load_vgg_perceptual` (a fresh module has random weights)."""

    layer_weights = (1.0 / 32, 1.0 / 16, 1.0 / 8, 1.0 / 4, 1.0)

    def __init__(self, normalize: bool = True):
        super().__init__()
        self.features = _vgg19_features()
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def layer_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.normalize:
            x = ((x + 1) / 2 - self.mean) / self.std
        feats = []
        for start, end in _SLICES:
            for i in range(start, end):
                x = self.features[i](x)
            feats.append(x)
        return feats

    def forward(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        loss = 0.0
        for wt, f, r in zip(self.layer_weights, self.layer_features(fake), self.layer_features(real)):
            loss = loss + wt * (f - r.detach()).abs().mean()
        return loss


def default_vgg19_file() -> Path:
    """torchvision's VGG19 checkpoint in the torch hub cache (never downloaded)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE


def load_vgg_perceptual(path: str | Path | None = None, device="cpu", normalize: bool = True) -> VGGPerceptual | None:
    """VGGPerceptual with torchvision's ImageNet VGG19 weights (`features.<i>.weight/bias`; the
    classifier and layers past relu5_1 are ignored).

    path=None: the default file in the torch hub cache; returns None when it is absent (the
    caller reports L_VGG as off). An explicit `path` that is missing, or any file that is not a
    loadable VGG19 state dict (torch.load weights_only=True), raises a one-line UserError."""
    explicit = path is not None
    path = Path(path) if explicit else default_vgg19_file()
    if not path.is_file():
        if not explicit:
            return None
        raise UserError(path, f"VGG19 weights not found (expected torchvision's {VGG19_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's to fix
        raise UserError(path, f"cannot read VGG19 weights ({_one_line(e)})") from None
    model = VGGPerceptual(normalize=normalize)
    if not isinstance(state, dict):
        raise UserError(path, f"expected a torchvision vgg19 state dict, found {type(state).__name__}")
    wanted = model.features.state_dict()
    try:
        model.features.load_state_dict({k: state[f"features.{k}"] for k in wanted}, strict=True)
    except KeyError as e:
        raise UserError(path, f"not a torchvision vgg19 state dict (no key {e.args[0]})") from None
    except Exception as e:  # noqa: BLE001 - shape mismatch and similar
        raise UserError(path, f"not a torchvision vgg19 state dict ({_one_line(e)})") from None
    return model.to(device)


def _one_line(e: Exception, limit: int = 200) -> str:
    text = f"{type(e).__name__}: {' '.join(str(e).split())}".rstrip(": ")
    return text if len(text) <= limit else text[:limit - 3] + "..."
