"""LPIPS (Zhang et al. 2018, v0.1) with its backbone read from local torchvision weights: the
network behind intra-LPIPS (metrics/diversity.py) and RSSA's perceptual inversion loss."""
from __future__ import annotations

import warnings
from pathlib import Path

import torch

BACKBONES = {"vgg": "vgg16", "alex": "alexnet"}  # LPIPS backbone -> raygan.weights.KNOWN key


def backbone_file(backbone: str) -> Path:
    """Where torchvision (and raygan, never downloading) keeps the backbone's ImageNet weights:
    the torch hub cache, under the file name ``raygan.weights`` knows it by."""
    from raygan.weights import KNOWN, hub_dir

    return hub_dir() / KNOWN[BACKBONES[backbone]].file


def build_lpips(backbone: str = "vgg", path=None):
    """An lpips.LPIPS model whose backbone comes from the local torchvision checkpoint (never
    downloaded; ``path``, else the torch hub cache); its linear-layer weights ship inside the
    lpips package."""
    import lpips

    path = Path(path) if path else backbone_file(backbone)
    if not path.is_file():
        raise FileNotFoundError(f"LPIPS-{backbone} needs torchvision's ImageNet weights: {path} is missing "
                                f"(copy {path.name} there, or set TORCH_HOME)")
    with warnings.catch_warnings():  # torchvision's deprecation notice for pretrained=False
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=backbone, pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, map_location="cpu", weights_only=True)
    # lpips splits torchvision's `features` Sequential into slices that keep the original
    # module indices: features.<i>.<p>  ->  slice<k>.<i>.<p>.
    owner = {idx: name for name, sl in model.net.named_children() for idx in sl._modules}
    mapped = {}
    for key, value in state.items():
        if key.startswith("features."):
            idx, param = key[len("features."):].split(".", 1)
            if idx in owner:
                mapped[f"{owner[idx]}.{idx}.{param}"] = value
    model.net.load_state_dict(mapped, strict=True)
    return model.eval()
