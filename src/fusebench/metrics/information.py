"""Histogram (information-theoretic) metrics: EN, MI, CE."""

from __future__ import annotations

import math

import numpy as np

from ._ops import LEVELS, channel_mean, entropy, histograms, joint_histograms, quantize, stretch
from .base import Images, per_source, register_metric


def combine_pair(first: np.ndarray, second: np.ndarray, pair: str) -> np.ndarray:
    """Combine the (A, F) and (B, F) scores: "sum" or "mean"."""
    if pair == "sum":
        return first + second
    if pair == "mean":
        return (first + second) / 2.0
    raise ValueError(f"pair must be 'sum' or 'mean', not {pair!r}")


def _levels(x: np.ndarray, value_range: float, stretched: bool) -> np.ndarray:
    return stretch(x).astype(np.intp) if stretched else quantize(x, value_range)


@register_metric(
    "EN",
    higher_is_better=True,
    reference="J. W. Roberts, J. van Aardt, F. Ahmed, Assessment of image fusion procedures using entropy, "
    "image quality, and multispectral classification, J. Appl. Remote Sens. 2(1):023522, 2008",
    uses_sources=False,
)
def entropy_metric(images: Images, *, log_base: float = 2.0) -> float:
    """EN = -sum_l p_F(l) log p_F(l), p_F the 256-bin histogram of F's gray levels (floored), per channel."""
    counts = histograms(quantize(images.fused, images.value_range))
    return channel_mean(entropy(counts) / math.log(log_base))


@register_metric(
    "MI",
    higher_is_better=True,
    reference="G. Qu, D. Zhang, P. Yan, Information measure for performance of image fusion, "
    "Electronics Letters 38(7):313-315, 2002",
)
def mutual_information(images: Images, *, log_base: float = math.e, stretched: bool = True, pair: str = "sum") -> float:
    """MI = MI(A, F) (+) MI(B, F), MI(X, F) = H(X) + H(F) - H(X, F) from the 256x256 joint histogram.

    With ``stretched`` each channel is first min-max stretched to 0-255 and rounded (VIFB), else its levels
    are floored; ``pair`` is "sum" (the usual MI_AB^F) or "mean"; entropies in base ``log_base``.
    """
    f = _levels(images.fused, images.value_range, stretched)
    sources = per_source(images, ("levels", stretched), lambda x: _levels(x, images.value_range, stretched))
    scores = []
    for source in sources:
        joint = joint_histograms(source, f)
        h_joint = entropy(joint.reshape(joint.shape[0], LEVELS * LEVELS))
        scores.append(entropy(joint.sum(axis=2)) + entropy(joint.sum(axis=1)) - h_joint)
    return channel_mean(combine_pair(scores[0], scores[1], pair) / math.log(log_base))


@register_metric(
    "CE",
    higher_is_better=False,
    reference="D. M. Bulanon, T. F. Burks, V. Alchanatis, Image fusion of visible and thermal images for "
    "fruit detection, Biosystems Engineering 103(1):12-22, 2009",
)
def cross_entropy(
    images: Images, *, log_base: float = 2.0, pair: str = "mean", constant_fused: str = "reference"
) -> float:
    """CE = (D(A|F) + D(B|F)) / 2, D(X|F) = sum_l p_X(l) log(p_X(l) / p_F(l)) over levels where p_X, p_F > 0.

    (The relative entropy of the 256-bin gray-level histograms, as in VIFB; levels are floored.) Restricted to
    the common levels the sum is not a divergence: a constant F gives p_X(c) log p_X(c) <= 0, better than any
    real fusion. ``constant_fused="worst"`` scores a constant fused channel +inf (the divergence it has,
    since F misses every other level of the source); "reference" keeps VIFB's value.
    """
    if constant_fused not in ("reference", "worst"):
        raise ValueError(f"constant_fused must be 'reference' or 'worst', not {constant_fused!r}")

    def distribution(x: np.ndarray) -> np.ndarray:
        counts = histograms(quantize(x, images.value_range)).astype(np.float64)
        return counts / counts.sum(axis=1, keepdims=True)

    pf = distribution(images.fused)
    scores = []
    for px in per_source(images, "level distribution", distribution):
        both = (px > 0) & (pf > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(both, px * np.log(np.where(both, px / np.where(both, pf, 1.0), 1.0)), 0.0)
        scores.append(terms.sum(axis=1))
    if constant_fused == "worst":
        flat = images.fused.min(axis=(1, 2)) == images.fused.max(axis=(1, 2))
        scores = [np.where(flat, np.inf, score) for score in scores]
    return channel_mean(combine_pair(scores[0], scores[1], pair) / math.log(log_base))
