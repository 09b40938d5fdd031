"""The few-shot metrics: one function of a ``Run`` each, registered once in
raygan.evaluation.fewshot's ``METRICS`` (which imports this module). What a metric needs
(weights, the shots, G_s, ShapesNet, C) it asks its ``Run`` for."""
from __future__ import annotations

from raygan.evaluation.fewshot import BACKBONES, EMBEDDED_REFERENCE_SEED, Run, _network, load_edges, register


@register("fid", "min", needs=("inception", "reference"))
def fid(run: Run):
    """Fréchet Inception distance to the reference set (Heusel et al.)."""
    from raygan.metrics.published import RESIZE, Score, fid_from_features

    w, _, pool, _ = run.inception()
    ref, ref_name = run.reference_features()
    return [Score("fid", fid_from_features(pool, ref), run.network_name(w), w.sha256, RESIZE, len(pool), ref_name)]


@register("kid", "min", needs=("inception", "reference"))
def kid(run: Run):
    """Kernel Inception distance to the reference set: mean and sd over subsets."""
    from raygan.metrics.published import KID_SUBSET_SIZE, KID_SUBSETS, RESIZE, Score, kid as kid_of

    w, _, pool, _ = run.inception()
    ref, ref_name = run.reference_features()
    mean, std = kid_of(pool, ref, seed=run.opts.seed)
    size = min(KID_SUBSET_SIZE, len(pool), len(ref))
    return [Score("kid", mean, run.network_name(w), w.sha256, RESIZE, len(pool), ref_name, std=std,
                  extra={"subsets": KID_SUBSETS, "subset_size": size, "kernel": "(x.y/d + 1)^3"})]


@register("is", "max", needs=("inception",))
def inception_score(run: Run):
    """Inception score over IS_SPLITS splits."""
    from raygan.metrics.published import IS_SPLITS, RESIZE, Score, inception_score as is_of

    w, _, _, logits = run.inception()
    mean, std = is_of(logits, IS_SPLITS)
    return [Score("is", mean, run.network_name(w), w.sha256, RESIZE, len(logits), "none (1008-way softmax)",
                  std=std, extra={"splits": IS_SPLITS})]


@register("fid_shots", "min", needs=("inception", "shots"))
def fid_shots(run: Run):
    """FID against the training shots themselves: what a folder target without a reference
    set can be scored by (few images: high variance, named so that it never passes for FID)."""
    from raygan.metrics.published import RESIZE, Score, fid_from_features, inception_outputs, to_uint8

    w, net, pool, _ = run.inception()
    shots, shots_name = run.shots()
    ref = inception_outputs(to_uint8(shots), net, run.opts.batch)[0]
    return [Score("fid_shots", fid_from_features(pool, ref), run.network_name(w), w.sha256, RESIZE, len(pool),
                  shots_name)]


@register("intra_lpips", "max", needs=("lpips", "shots"))
def intra_lpips(run: Run):
    """The CDC/DCL papers' intra-cluster LPIPS diversity around the shots."""
    from importlib.metadata import version

    from raygan import weights
    from raygan.metrics.diversity import LPIPS_MIN_SIZE, intra_cluster_diversity
    from raygan.metrics.published import Score

    backbone = run.opts.lpips_net
    w = weights.resolve(BACKBONES[backbone], run.opts.lpips_weights)
    dist = _network(backbone, str(w.path), w.sha256, str(run.opts.device), w.known.what)
    shots, shots_name = run.shots()
    value = intra_cluster_diversity(run.images, shots, dist, seed=run.opts.seed)
    resize = f"bilinear to {LPIPS_MIN_SIZE} px" if run.size < LPIPS_MIN_SIZE else "none"
    verified = "" if w.verified else ", UNVERIFIED backbone"
    return [Score("intra_lpips", value, f"lpips {version('lpips')} {backbone} v0.1{verified}",
                  w.sha256, resize, len(run.images), f"nearest of {shots_name}; <= 50 per cluster")]


@register("scs", "max", needs=("source",))
def scs(run: Run):
    """RSSA's structural consistency of G_t(z) with G_s(z) (Eq. 9–10), reported as scs_<edges>."""
    from raygan import weights
    from raygan.metrics.published import Score
    from raygan.metrics.scs import scs as scs_of

    kind = run.opts.scs_edges
    w = weights.resolve("hed", run.opts.hed) if kind == "hed" else None
    name, edges = load_edges(kind, str(w.path) if w else "")
    g_s, reference = run.source_images()
    value = scs_of(run.images[:len(g_s)], g_s, edges)
    network = "hed (sniklaus/pytorch-hed bsds500)" if w else f"{kind} (not HED)"
    return [Score(name, value, network, w.sha256 if w else "", "none", len(g_s), reference)]


@register("fd_shapesnet", "min", needs=("embedded",))
def fd_shapesnet(run: Run):
    """Fréchet distance to held-out embedded target sketches in ShapesNet's features."""
    from raygan.metrics.features import extract_features
    from raygan.metrics.frechet import N_SKETCH_REFERENCE, feature_stats, frechet_distance, sketch_reference_stats

    net = run.shapesnet()[0]
    mu, sigma = feature_stats(extract_features(run.images, net).numpy())
    value = frechet_distance(mu, sigma, *sketch_reference_stats(net, run.size))
    return run.embedded_score("fd_shapesnet", value, f"embedded held-out target sketches ({N_SKETCH_REFERENCE}, "
                                                     f"seed {EMBEDDED_REFERENCE_SEED})")


@register("realism", "max", needs=("shots", "classifier"))
def realism(run: Run):
    """p_t of DCL Eq. 3, the mean probability under a classifier C that G_t(z) is a target
    image: C is ShapesNet's domain head on the embedded sketches, DomainNet (trained on the
    target folder's images, raygan.metrics.domainnet) on a folder target."""
    from raygan.metrics.realism import realism as realism_of

    if run.embedded:
        return run.embedded_score("realism", realism_of(run.images, run.shapesnet()[0]), "domain head (DCL Eq. 3)")
    net, sha, trained_on = run.domainnet()
    return [domainnet_score(run, "realism", realism_of(run.images, net), net, sha, trained_on)]


@register("fd_domainnet", "min", needs=("shots", "classifier", "folder"))
def fd_domainnet(run: Run):
    """Fréchet distance in C's (DomainNet's) 128-d features between G_t(z) and the target
    images C was trained on (a folder target's FID without the Inception weights)."""
    from raygan.metrics.features import batched
    from raygan.metrics.frechet import feature_stats, frechet_distance

    net, sha, trained_on = run.domainnet()
    target = run.domainnet_target()
    mu, sigma = feature_stats(batched(net.features, run.images).numpy())
    value = frechet_distance(mu, sigma, *feature_stats(batched(net.features, target).numpy()))
    return [domainnet_score(run, "fd_domainnet", value, net, sha, f"{len(target)} target images; C's {trained_on}")]


@register("intra_domainnet", "max", needs=("shots", "classifier", "folder"))
def intra_domainnet(run: Run):
    """Intra-cluster diversity around the shots in C's (DomainNet's) conv features, by
    intra_shapesnet's recipe (a folder target's diversity without the LPIPS weights)."""
    from raygan.metrics.diversity import domainnet_distance, intra_cluster_diversity

    net, sha, trained_on = run.domainnet()
    shots, shots_name = run.shots()
    distance = domainnet_distance(net, run.domainnet_target())
    value = intra_cluster_diversity(run.images, shots, distance, seed=run.opts.seed)
    return [domainnet_score(run, "intra_domainnet", value, net, sha, f"nearest of {shots_name}; <= 50 per cluster")]


def domainnet_score(run: Run, metric: str, value: float, net, sha: str, reference: str):
    from raygan.metrics.domainnet import VERSION, describe
    from raygan.metrics.published import Score

    resize = "none" if net.resolution == run.size else f"area to {net.resolution} px"
    return Score(metric, value, f"domainnet {VERSION} (raygan's realism classifier C, trained from scratch; "
                                f"{describe(net.config['checks'])})", sha, resize, len(run.images), reference)


@register("intra_shapesnet", "max", needs=("embedded", "shots"))
def intra_shapesnet(run: Run):
    """Intra-cluster diversity around the shots in ShapesNet's features."""
    from raygan.metrics.diversity import intra_cluster_diversity, shapesnet_distance

    shots, shots_name = run.shots()
    value = intra_cluster_diversity(run.images, shots, shapesnet_distance(run.shapesnet()[0]), seed=run.opts.seed)
    return run.embedded_score("intra_shapesnet", value, f"nearest of {shots_name}; <= 50 per cluster")
