"""One-level orthonormal 2-D Haar wavelet transform and SWAGAN-style resampling.

``haar_dwt`` maps [B, C, H, W] to [B, 4C, H/2, W/2], band-major: channels
``[LL(C), LH(C), HL(C), HH(C)]`` (the layout of SWAGAN's ``HaarTransform``).
Within each 2x2 block with pixels ``a b / c d`` (rows top to bottom)::

    LL = ( a + b + c + d) / 2     low-pass both ways
    LH = (-a - b + c + d) / 2     high-pass across rows (horizontal edges)
    HL = (-a + b - c + d) / 2     high-pass across columns (vertical edges)
    HH = ( a - b - c + d) / 2     diagonal

The 4x4 matrix is orthonormal, so the transform preserves energy
(``sum x**2 == sum dwt(x)**2``) and ``haar_idwt`` (its transpose) inverts it
exactly. A constant image of value v has LL = 2v and zero detail bands.

``wavelet_upsample`` / ``wavelet_downsample`` move a wavelet image between
scales as SWAGAN does (inverse DWT, FIR resample, DWT): used by the wavelet
generator's skip path and the wavelet discriminator's input pyramid.
"""

import torch

from raygan.models.layers import make_kernel, upfirdn2d

# Rows: LL, LH, HL, HH; columns: sub-pixels a=(0,0), b=(0,1), c=(1,0), d=(1,1)
# (the order of pixel_unshuffle's sub-channels).
_HAAR = torch.tensor([[1.0, 1.0, 1.0, 1.0],
                      [-1.0, -1.0, 1.0, 1.0],
                      [-1.0, 1.0, -1.0, 1.0],
                      [1.0, -1.0, -1.0, 1.0]]) / 2


def haar_dwt(x):
    """[B, C, H, W] -> [B, 4C, H/2, W/2] in LL, LH, HL, HH band order (H, W even)."""
    b, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {h}x{w}")
    sub = torch.pixel_unshuffle(x, 2).view(b, c, 4, h // 2, w // 2)
    bands = torch.einsum("kp,bcphw->bkchw", _HAAR.to(x), sub)
    return bands.reshape(b, 4 * c, h // 2, w // 2)


def haar_idwt(x):
    """Exact inverse of ``haar_dwt``: [B, 4C, h, w] -> [B, C, 2h, 2w]."""
    b, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"haar_idwt needs 4*C channels, got {c4}")
    c = c4 // 4
    bands = x.view(b, 4, c, h, w)
    sub = torch.einsum("kp,bkchw->bcphw", _HAAR.to(x), bands)
    return torch.pixel_shuffle(sub.reshape(b, 4 * c, h, w), 2)


def _fir(kernel, x):
    k = kernel if torch.is_tensor(kernel) else make_kernel(kernel)
    return k.to(x)


def wavelet_upsample(x, kernel=(1, 3, 3, 1)):
    """Wavelet image at h -> wavelet image at 2h: idwt, 2x FIR upsample, dwt."""
    k = _fir(kernel, x) * 4  # x4 keeps the mean (zero insertion)
    p = k.shape[0] - 2
    img = upfirdn2d(haar_idwt(x), k, up=2, pad=((p + 1) // 2 + 1, p // 2))
    return haar_dwt(img)


def wavelet_downsample(x, kernel=(1, 3, 3, 1)):
    """Wavelet image at h -> wavelet image at h/2: idwt, FIR blur + 2x subsample, dwt."""
    k = _fir(kernel, x)
    p = k.shape[0] - 2
    img = upfirdn2d(haar_idwt(x), k, down=2, pad=((p + 1) // 2, p // 2))
    return haar_dwt(img)
