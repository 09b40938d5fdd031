"""Patch-level discriminator head on top of a StyleGAN2 discriminator.

CDC and DCL judge most generated images only at the patch level: an extra
head reads an intermediate feature map of D and returns one logit per
receptive-field patch.  The head's parameters live here, outside
``Discriminator``, so that rosinality checkpoints still load into it strictly.
"""

from torch import nn

from .stylegan2 import ConvLayer, Discriminator, EqualConv2d


class PatchHead(nn.Module):
    """ConvLayer(c, c, 3) + 1x1 EqualConv2d(c, 1): [B, c, h, w] -> [B, 1, h, w]."""

    def __init__(self, in_channels):
        super().__init__()
        self.conv = ConvLayer(in_channels, in_channels, 3)
        self.to_logit = EqualConv2d(in_channels, 1, 1)

    def forward(self, feat):
        return self.to_logit(self.conv(feat))


class PatchDiscriminator(nn.Module):
    """Patch logits from ``disc``'s ``feats[feat_index]``.

    ``disc`` is referenced but not registered as a submodule: this module's
    ``parameters()`` / ``state_dict()`` hold only the head (``head.*``), so the
    head gets its own optimizer entry or is added to D's, and ``.to(device)``
    must be applied to ``disc`` separately.
    """

    def __init__(self, disc: Discriminator, feat_index: int):
        super().__init__()
        n = len(disc.convs)
        if not -n <= feat_index < n:
            raise ValueError(f"feat_index must be in [{-n}, {n}), got {feat_index}")
        self.feat_index = feat_index % n
        object.__setattr__(self, "disc", disc)  # bypass nn.Module registration
        self.head = PatchHead(disc.block_channels()[self.feat_index])

    def from_feats(self, feats):
        """Patch logits from a list returned by ``disc(x, return_feats=True)``."""
        return self.head(feats[self.feat_index])

    def forward(self, x):
        """Patch logits [B, 1, h, w]; runs only the D blocks up to ``feat_index``."""
        for block in self.disc.convs[: self.feat_index + 1]:
            x = block(x)
        return self.head(x)

    def both(self, x):
        """(image logits [B, 1], patch logits) from a single pass through D."""
        logits, feats = self.disc(x, return_feats=True)
        return logits, self.from_feats(feats)
