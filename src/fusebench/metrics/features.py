"""Metrics of the fused image alone: SD, SF, AG, EI."""

from __future__ import annotations

import numpy as np

from ._ops import channel_mean, magnitude, sobel
from .base import Images, register_metric


@register_metric(
    "SD",
    higher_is_better=True,
    reference="Y.-J. Rao, In-fibre Bragg grating sensors, Meas. Sci. Technol. 8(4):355, 1997",
    uses_sources=False,
)
def standard_deviation(images: Images, *, ddof: int = 0) -> float:
    """SD = sqrt(sum (F - mean F)^2 / (HW - ddof)) per channel (VIFB's "Variance" is this, with ddof 0)."""
    return channel_mean(images.fused.std(axis=(1, 2), ddof=ddof))


@register_metric(
    "SF",
    higher_is_better=True,
    reference="A. M. Eskicioglu, P. S. Fisher, Image quality measures and their performance, "
    "IEEE Trans. Commun. 43(12):2959-2965, 1995",
    uses_sources=False,
)
def spatial_frequency(images: Images, *, layout: str = "per_channel", normalize: str = "pixels") -> float:
    """SF = sqrt(RF^2 + CF^2), RF^2 = sum (F[i,j] - F[i,j-1])^2 / HW, CF^2 = sum (F[i,j] - F[i-1,j])^2 / HW.

    ``normalize`` "pixels" divides both sums by HW (Eskicioglu & Fisher, VIFB); "differences" takes the mean
    of each set of differences, i.e. divides by H(W-1) and (H-1)W (MMIF-CDDFuse's evaluator).
    ``layout`` "per_channel" averages the SF of each channel; "side_by_side" is VIFB's: MATLAB's
    ``[m, n] = size(F)`` makes an HxWx3 image an H x 3W one, so the channels are scored as one image placed
    side by side (including the differences across the two channel seams).
    """
    f = images.fused
    if layout == "side_by_side":
        f = np.broadcast_to(f, (images.channels, *f.shape[1:]))
        f = np.concatenate(list(f), axis=1)[None]
    elif layout != "per_channel":
        raise ValueError(f"layout must be 'per_channel' or 'side_by_side', not {layout!r}")
    h, w = f.shape[1], f.shape[2]
    if normalize == "pixels":
        row_count = col_count = h * w
    elif normalize == "differences":
        row_count, col_count = h * (w - 1), (h - 1) * w
    else:
        raise ValueError(f"normalize must be 'pixels' or 'differences', not {normalize!r}")
    dx = np.diff(f, axis=2)
    dy = np.diff(f, axis=1)
    rows = np.einsum("chw,chw->c", dx, dx) / row_count
    cols = np.einsum("chw,chw->c", dy, dy) / col_count
    return channel_mean(np.sqrt(rows + cols))


@register_metric(
    "AG",
    higher_is_better=True,
    reference="G. Cui, H. Feng, Z. Xu, Q. Li, Y. Chen, Detail preserved fusion of visible and infrared "
    "images using regional saliency extraction and multi-scale image decomposition, "
    "Opt. Commun. 341:199-209, 2015",
    uses_sources=False,
)
def average_gradient(images: Images, *, denominator: str = "interior") -> float:
    """AG = sum sqrt((Fx^2 + Fy^2) / 2) / D, Fx, Fy central differences (one-sided at the borders).

    ``denominator`` "interior": D = (H-1)(W-1) (VIFB); "pixels": D = HW, the plain mean (MMIF-CDDFuse).
    """
    f = images.fused.astype(np.float32)  # exact for 8-bit data; sums are accumulated in float64
    h, w = f.shape[1:]
    fx = np.gradient(f, axis=2)
    fy = np.gradient(f, axis=1)
    fx *= fx
    fy *= fy
    fx += fy
    fx *= 0.5
    total = np.sqrt(fx, out=fx).sum(axis=(1, 2), dtype=np.float64)
    if denominator == "interior":
        count = (h - 1) * (w - 1)
    elif denominator == "pixels":
        count = h * w
    else:
        raise ValueError(f"denominator must be 'interior' or 'pixels', not {denominator!r}")
    return channel_mean(total / count)


@register_metric(
    "EI",
    higher_is_better=True,
    reference="B. Rajalingam, R. Priya, Hybrid multimodality medical image fusion technique for feature "
    "enhancement in medical diagnosis, Int. J. Eng. Sci. Invention, 2018",
    uses_sources=False,
)
def edge_intensity(images: Images, *, padding: str = "replicate") -> float:
    """EI = mean sqrt(Sx^2 + Sy^2), Sx, Sy the 3x3 Sobel responses of F (``padding``: replicate or zero)."""
    dx, dy = sobel(images.fused.astype(np.float32), padding)  # exact for 8-bit data
    return channel_mean(magnitude(dx, dy).mean(axis=(1, 2), dtype=np.float64))
