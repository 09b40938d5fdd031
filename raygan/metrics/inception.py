"""The FID Inception-v3: torchvision's Inception3 layout with the TF graph's quirks.

The weights ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's port of the TF
2015-12-05 Inception graph that FID, KID and IS were defined with) load strictly into
``FIDInception``. It differs from torchvision's ImageNet Inception-v3 in:
  - 1008 logits (the TF graph's classes), no auxiliary head;
  - the average pools inside the A, C and first E blocks exclude the zero padding
    (``count_include_pad=False``), as TF's pooling does;
  - the last E block (Mixed_7c) pools its pool branch with a max, not an average.

Input: RGB [N, 3, 299, 299] with values in [-1, 1] (pytorch-fid's 2 x - 1 of [0, 1]).
Outputs: pool3, the 2048-d global average of Mixed_7c (FID, KID), and the 1008 logits
(IS). Resizing to 299 is the caller's job (``raygan.metrics.published.resize_299``).
"""
from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

N_LOGITS = 1008
POOL3_DIM = 2048
INPUT_SIZE = 299


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    def _forward(self, x):
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), b5, b3, self.branch_pool(_avg_pool_tf(x))]


class FIDInceptionC(InceptionC):
    def _forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d = conv(d)
        return [self.branch1x1(x), b7, d, self.branch_pool(_avg_pool_tf(x))]


class FIDInceptionE(InceptionE):
    """Mixed_7b pools with a padding-excluding average, Mixed_7c (``max_pool=True``) with a max."""

    def __init__(self, in_channels: int, max_pool: bool = False, **kwargs):
        super().__init__(in_channels, **kwargs)
        self.max_pool = max_pool

    def _forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        d = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool_tf(x)
        return [self.branch1x1(x), b3, d, self.branch_pool(pooled)]


class FIDInception(Inception3):
    """Inception3(num_classes=1008, aux_logits=False) with the FID blocks swapped in; its
    state-dict keys are those of pytorch-fid's weights file."""

    def __init__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torchvision's init_weights notice
            super().__init__(num_classes=N_LOGITS, aux_logits=False, transform_input=False, init_weights=False)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            setattr(self, name, FIDInceptionC(768, channels_7x7=c7))
        self.Mixed_7b = FIDInceptionE(1280)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: [N, 3, 299, 299] in [-1, 1] -> (pool3 [N, 2048], logits [N, 1008])."""
        for layer in (self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3, self.maxpool1,
                      self.Conv2d_3b_1x1, self.Conv2d_4a_3x3, self.maxpool2,
                      self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c,
                      self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = layer(x)
        pool3 = torch.flatten(self.avgpool(x), 1)
        return pool3, self.fc(pool3)


def load_fid_inception(weights, device="cpu") -> FIDInception:
    """FIDInception (eval mode, frozen) with the weights of a WeightsFile; a file of another
    architecture is a one-line UserError naming it."""
    from raygan.weights import load_state_dict_strict

    net = FIDInception()
    load_state_dict_strict(net, weights.path, "pytorch-fid's Inception-v3 state dict "
                                              "(pt_inception-2015-12-05-6726825d.pth)")
    return net.to(device).eval().requires_grad_(False)
