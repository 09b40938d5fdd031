"""Intra-cluster diversity ("intra-LPIPS", DCL paper / CDC's protocol) and its distances.

Generated samples are assigned to the nearest of the M training shots; within each
cluster the distance is averaged over all pairs of (at most 50) members, then over the
clusters with at least two members. Higher means more diverse.

Distances: LPIPS (VGG by default, or AlexNet) when torchvision's ImageNet weights are in
the torch hub cache, else a ShapesNet feature distance (blind to pixel noise, see
shapesnet_distance), named "intra_shapesnet" so that it never passes for LPIPS.
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from raygan.data.fakes import gaussian_blur
from raygan.data.synthetic import held_out
from raygan.metrics.features import ShapesNet, load_shapesnet
from raygan.models.lpips import backbone_file, build_lpips

LPIPS_MIN_SIZE = 64


class PerceptualDistance:
    """A batched, pairwise-aligned distance `d(a, b) -> [N]` that also exposes its two halves,
    `embed(x) -> list of feature maps` and `compare(fa, fb) -> [N]` (broadcasting over the
    batch), so that each image is embedded once however many pairs it appears in."""

    def __init__(self, embed, compare):
        self.embed, self.compare = embed, compare

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.compare(self.embed(a), self.embed(b))


def _unit_normalise(f: torch.Tensor) -> torch.Tensor:
    return f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)


SHAPESNET_BLUR = 1.0     # Gaussian sigma (px at 32 px, scaled with size) applied before the net
SHAPESNET_LAYERS = 2     # compare the deepest this-many conv blocks (8x8 and 4x4 maps at 32 px)
N_NORM_REFERENCE = 200   # held-out sketches behind the per-layer normalising scale


def shapesnet_distance(net: ShapesNet) -> PerceptualDistance:
    """An LPIPS-like distance on ShapesNet's conv activations that does not count pixel noise as
    diversity: squared difference of softly normalised features, summed over channels, mean over
    space, summed over the deepest SHAPESNET_LAYERS blocks of the low-passed image.

    Why each step (v1, plain LPIPS on all layers, scored speckle on blank paper 3.09-3.65 against
    4.0 for real varied sketches, so a generator drawing noise looked diverse):
    - a Gaussian blur (sigma 1 px) first: per-pixel noise is white, so it loses most of its power,
      while 1-px ink lines only soften (the realism head still calls sigma 1 a sketch, p_t ~0.95);
    - only the deep blocks (receptive field >= 10 px): they respond to strokes and shapes, the
      shallow ones to pixel texture, which is where the remaining noise lives;
    - soft normalisation f / (|f| + nu_l), with nu_l the mean feature norm of layer l on held-out
      sketches, instead of LPIPS's f / |f|: unit normalisation blows the near-zero activations of
      blank paper up to unit vectors whose direction is set by whatever faint noise is there;
      with nu_l, weak activations stay weak, strong ones (strokes) saturate near 1 as in LPIPS.
    Repeating one sketch with light noise scores ~0; adding light noise to varied sketches
    leaves the score unchanged (within ~1 %)."""
    return feature_distance(net, lambda size: held_out("target", N_NORM_REFERENCE, size=size, seed=2))


def domainnet_distance(net, target: torch.Tensor) -> PerceptualDistance:
    """shapesnet_distance's recipe on the realism classifier C of a folder target (DomainNet),
    normalised by its layers' mean feature norm on the target images (``target``), each
    feature map centred on its spatial mean first: C's batch-normalised features answer a
    flat image with a constant map that depends on its tint. Uncentred, blank images of
    slightly different paper scored half of real target images under a C of 60 steps (0.065
    vs 0.128); under a C of 250 steps a tenth either way (0.019 vs 0.216; centred 0.033 vs
    0.389): the centring matters for a weakly trained C."""
    return feature_distance(net, lambda size: target, centre=True)


def feature_distance(net, reference, centre: bool = False) -> PerceptualDistance:
    """The distance of shapesnet_distance on any net with ``layer_features``: ``reference(size)``
    gives the images behind the per-layer normalising scales nu_l; ``centre``: each feature
    map minus its spatial mean (the distance then sees layouts, not tints)."""
    device = next(net.parameters()).device
    scales = {}   # image size -> per-layer nu_l

    def deep_features(x):
        sigma = SHAPESNET_BLUR * x.shape[-1] / 32
        feats = net.layer_features(gaussian_blur(x.to(device), sigma))[-SHAPESNET_LAYERS:]
        return [f - f.mean((2, 3), keepdim=True) for f in feats] if centre else feats

    def embed(x):
        size = x.shape[-1]
        if size not in scales:
            with torch.no_grad():
                ref = deep_features(reference(size))
                scales[size] = [f.pow(2).sum(1).sqrt().mean() for f in ref]
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + nu) for f, nu in zip(deep_features(x), scales[size])]

    def compare(fa, fb):
        return sum(((a - b) ** 2).sum(1).mean((1, 2)) for a, b in zip(fa, fb)).cpu()

    return PerceptualDistance(embed, compare)


def lpips_distance(backbone: str = "vgg", device="cpu", path=None) -> PerceptualDistance:
    import lpips

    model = build_lpips(backbone, path).to(device)

    def embed(x):
        # LPIPS's deeper layers have (almost) no spatial extent on 32-px inputs, so smaller
        # images are bilinearly upsampled to 64 px first (a choice; published numbers use 256).
        if x.shape[-1] < LPIPS_MIN_SIZE:
            x = F.interpolate(x, size=(LPIPS_MIN_SIZE, LPIPS_MIN_SIZE), mode="bilinear", align_corners=False)
        return [lpips.normalize_tensor(f) for f in model.net(model.scaling_layer(x.to(device)))]

    def compare(fa, fb):
        return sum(lin((a - b) ** 2).mean((1, 2, 3)) for lin, a, b in zip(model.lins, fa, fb)).cpu()

    dist = PerceptualDistance(embed, compare)
    dist.model = model
    return dist


def make_distance(kind: str = "auto", net: ShapesNet | None = None, device="cpu"):
    """(metric name, distance) for intra-cluster diversity.

    kind: "auto" (LPIPS-VGG if its weights are in the torch hub cache, else ShapesNet),
    "lpips_vgg", "lpips_alex" (raise FileNotFoundError when the weights are missing), or
    "shapesnet" (uses `net`, else the cached 32-px ShapesNet)."""
    if kind == "auto":
        kind = "lpips_vgg" if backbone_file("vgg").is_file() else "shapesnet"
    if kind in ("lpips_vgg", "lpips_alex"):
        backbone = kind.split("_")[1]
        return f"intra_{kind}", lpips_distance(backbone, device)
    if kind == "shapesnet":
        return "intra_shapesnet", shapesnet_distance(net if net is not None else load_shapesnet(device=device))
    raise ValueError(f"unknown distance kind {kind!r}; expected auto, lpips_vgg, lpips_alex or shapesnet")


def _cap(members: torch.Tensor, cap: int, seed: int) -> torch.Tensor:
    """At most `cap` members: a seeded random subset, as the public code shuffles a cluster's
    files and keeps the first 50 (here reproducible), returned in index order."""
    if len(members) <= cap:
        return members
    perm = torch.randperm(len(members), generator=torch.Generator().manual_seed(seed))
    return members[perm[:cap]].sort().values


@torch.no_grad()
def cluster_assignments(samples: torch.Tensor, shots: torch.Tensor, distance, batch_size: int = 50):
    """Index of the nearest shot for each sample [N] (ties -> lowest shot index)."""
    fast = isinstance(distance, PerceptualDistance)
    shot_emb = distance.embed(shots) if fast else None
    rows = []
    for i in range(0, len(samples), batch_size):
        batch = samples[i:i + batch_size]
        emb = distance.embed(batch) if fast else None
        cols = []
        for j in range(len(shots)):
            if fast:
                cols.append(distance.compare(emb, [s[j:j + 1] for s in shot_emb]))
            else:
                cols.append(distance(batch, shots[j:j + 1].expand_as(batch)))
        rows.append(torch.stack([c.reshape(-1) for c in cols], 1))
    return torch.cat(rows).argmin(1)


@torch.no_grad()
def intra_cluster_diversity(samples: torch.Tensor, shots: torch.Tensor, distance, max_per_cluster: int = 50,
                            batch_size: int = 50, seed: int = 0) -> float:
    """Intra-cluster diversity of `samples` around the training `shots` (both in [-1, 1], NCHW).

    `distance(a, b) -> [N]` compares a[i] with b[i]. Clusters larger than `max_per_cluster`
    keep a seeded random subset (cluster j uses seed + j). Returns nan when no cluster has two
    members."""
    assign = cluster_assignments(samples, shots, distance, batch_size)
    fast = isinstance(distance, PerceptualDistance)
    per_cluster = []
    for j in range(len(shots)):
        members = _cap(torch.nonzero(assign == j).flatten(), max_per_cluster, seed + j)
        if len(members) < 2:
            continue
        ia, ib = torch.triu_indices(len(members), len(members), 1)
        if fast:
            embs = [distance.embed(samples[members[i:i + batch_size]]) for i in range(0, len(members), batch_size)]
            emb = [torch.cat(layer) for layer in zip(*embs)]
        dists = []
        for k in range(0, len(ia), batch_size):
            a, b = ia[k:k + batch_size], ib[k:k + batch_size]
            if fast:
                dists.append(distance.compare([e[a] for e in emb], [e[b] for e in emb]))
            else:
                dists.append(distance(samples[members[a]], samples[members[b]]))
        per_cluster.append(torch.cat([d.reshape(-1) for d in dists]).double().mean())
    return float(torch.stack(per_cluster).mean()) if per_cluster else float("nan")
