"""Colour handling, stated once for the whole benchmark.

Fusion networks work on one channel. A colour source is converted to YCbCr (ITU-R BT.601, full range, as in
JPEG/JFIF), its Y channel is fused, and the fused Y is recombined with the colour source's Cb and Cr.
All arrays are float in [0, 1]; chroma is centred at 0.5.
"""

from __future__ import annotations

import numpy as np

# BT.601 full-range (JFIF) matrices; rows give Y, Cb, Cr from R, G, B.
_RGB_TO_YCBCR = np.array(
    [
        [0.299, 0.587, 0.114],
        [-0.168735892, -0.331264108, 0.5],
        [0.5, -0.418687589, -0.081312411],
    ],
    dtype=np.float64,
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in [0, 1] -> HxWx3 YCbCr with Y in [0, 1] and Cb, Cr centred at 0.5."""
    _check_rgb(rgb)
    ycc = rgb.astype(np.float64) @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 0.5
    return ycc.astype(np.float32)


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`; the result is clipped to [0, 1]."""
    _check_rgb(ycc)
    centred = ycc.astype(np.float64).copy()
    centred[..., 1:] -= 0.5
    rgb = centred @ _YCBCR_TO_RGB.T
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def luminance(image: np.ndarray) -> np.ndarray:
    """Y channel of an RGB image, or the image itself if it is already gray (HxW)."""
    return image if image.ndim == 2 else rgb_to_ycbcr(image)[..., 0]


def _check_rgb(array: np.ndarray) -> None:
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 array, got shape {array.shape}")
