"""Edge- and perception-based metrics comparing F with both sources: Qabf, Qcb, Qcv."""

from __future__ import annotations

import numpy as np

from ._ops import (
    block_sum,
    channel_mean,
    fft_filter,
    fft_radius,
    gaussian_1d,
    gaussian_filters,
    sobel,
    stretch,
)
from .base import Images, per_source, register_metric


def _safe_ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1.0), fill)


def _ratio(num: np.ndarray, den: np.ndarray, fill: float) -> np.ndarray:
    """num / den with ``fill`` where den is 0 (a new array; fast when den has no zeros)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.divide(num, den)
    zero = den == 0
    if zero.any():
        out[np.broadcast_to(zero, out.shape)] = fill
    return out


def _edges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Squared Sobel strength, strength and orientation atan(Sy / Sx) (pi/2 where Sx = 0), in float32.

    Sx, Sy are the *convolutions* (MATLAB ``conv2``, ``scipy.signal.convolve2d``) with [-1 0 1; -2 0 2;
    -1 0 1] and [1 2 1; 0 0 0; -1 -2 -1], i.e. Sx = -dx and Sy = dy of :func:`sobel`. The signs matter: the
    fixed pi/2 where Sx = 0 is compared with atan(Sy / Sx) elsewhere. On 8-bit data the Sobel responses and
    squared strengths are integers below 2^24, hence exact in float32 (and so are equality tests on them).
    """
    dx, dy = sobel(x.astype(np.float32), "zero")
    square = dx * dx
    square += dy * dy
    with np.errstate(divide="ignore", invalid="ignore"):
        angle = np.arctan(dy / -dx)
    np.putmask(angle, dx == 0, np.float32(np.pi / 2))
    return square, np.sqrt(square), angle


def _sigmoid(x: np.ndarray, top: float, slope: float, center: float) -> np.ndarray:
    """top / (1 + exp(slope (x - center))), in place on float32 ``x``."""
    x -= center
    x *= slope
    np.exp(x, out=x)
    x += 1.0
    np.divide(top, x, out=x)
    return x


@register_metric(
    "Qabf",
    higher_is_better=True,
    reference="C. S. Xydeas, V. Petrovic, Objective image fusion performance measure, "
    "Electronics Letters 36(4):308-309, 2000",
)
def qabf(
    images: Images,
    *,
    tg: float = 0.9994,
    kg: float = -15.0,
    dg: float = 0.5,
    ta: float = 0.9879,
    ka: float = -22.0,
    da: float = 0.8,
    gain: float = 1.0,
    equal_gradients: str = "one",
) -> float:
    """Qabf = sum(Q^AF g_A + Q^BF g_B) / sum(g_A + g_B), Q^XF = Q_g Q_a, Q_g = Tg / (1 + e^(kg (G - Dg))),
    Q_a = Ta / (1 + e^(ka (A - Da))).

    g, a: Sobel strength and orientation; G = min(g_X, g_F) / max(g_X, g_F), A = 1 - |a_X - a_F| / (pi/2).
    Where g_X = g_F, ``equal_gradients`` "one" sets G = 1; "fused" sets G = gain * g_F, the quirk of the
    widely copied MATLAB/Python code (G = 0 where both are flat, Q_g saturated where both are equal edges),
    ``gain`` being the factor that code applied to the images (VIFB's ``255 * im2double`` of 0-255 data: 255).
    Where neither source has an edge the score is 0.
    """
    if equal_gradients not in ("one", "fused"):
        raise ValueError(f"equal_gradients must be 'one' or 'fused', not {equal_gradients!r}")
    sq_f, g_f, a_f = _edges(images.fused)
    num = np.zeros(images.channels)
    den = np.zeros(images.channels)
    for sq_x, g_x, a_x in per_source(images, "Sobel edges", _edges):
        with np.errstate(divide="ignore", invalid="ignore"):
            strength = np.minimum(g_x, g_f)
            strength /= np.maximum(g_x, g_f)
        equal = sq_x == sq_f
        np.copyto(strength, g_f * np.float32(gain) if equal_gradients == "fused" else 1.0, where=equal)
        orientation = np.abs(a_x - a_f)
        orientation *= -2.0 / np.pi
        orientation += 1.0
        q = _sigmoid(strength, tg, kg, dg)
        q *= _sigmoid(orientation, ta, ka, da)
        q *= g_x
        num += q.sum(axis=(1, 2), dtype=np.float64)
        den += g_x.sum(axis=(1, 2), dtype=np.float64)
    return channel_mean(_safe_ratio(num, den, 0.0))


@register_metric(
    "Qcb",
    higher_is_better=True,
    reference="Y. Chen, R. S. Blum, A new automated quality assessment algorithm for image fusion, "
    "Image and Vision Computing 27(10):1421-1432, 2009",
)
def chen_blum(
    images: Images,
    *,
    f0: float = 15.3870,
    f1: float = 1.3456,
    a: float = 0.7622,
    csf_divisor: float = 30.0,
    sigma1: float = 2.0,
    sigma2: float = 4.0,
    radius: int = 15,
    k: float = 1.0,
    h: float = 1.0,
    p: float = 3.0,
    q: float = 2.0,
    z: float = 1e-4,
) -> float:
    """Qcb = mean(l_A Q_AF + l_B Q_BF), Q_XF = min(C_X, C_F) / max(C_X, C_F), l_X = C_X^2 / (C_A^2 + C_B^2).

    Each image is min-max stretched to rounded 0-255 levels and filtered by the DoG contrast sensitivity
    S(r) = exp(-(r/f0)^2) - a exp(-(r/f1)^2) (r: DFT index * 2 / ``csf_divisor``); its local contrast is
    c = |G1 * I / G2 * I - 1| with unnormalised Gaussians of ``sigma1``, ``sigma2`` (radius ``radius``, zero
    padding) and masked as C = k c^p / (h c^q + Z) (Z.Liu's metricChenBlum.m, as in VIFB).
    """
    height, width = images.shape
    r = fft_radius(height, width, csf_divisor)
    sensitivity = np.exp(-((r / f0) ** 2)) - a * np.exp(-((r / f1) ** 2))
    kernels = [gaussian_1d(s, radius, normalize=False) for s in (sigma1, sigma2)]

    def masked_contrast(x: np.ndarray) -> np.ndarray:
        center, surround = gaussian_filters(fft_filter(stretch(x), sensitivity, np.float32), kernels)
        contrast = _ratio(center, surround, 1.0)
        contrast -= 1.0
        np.abs(contrast, out=contrast)
        if (k, h, p, q) == (1.0, 1.0, 3.0, 2.0):  # the usual constants, without pow()
            square = contrast * contrast
            masked = square * contrast
            square += z
            masked /= square
            return masked
        return k * contrast**p / (h * contrast**q + z)

    key = ("Qcb contrast", f0, f1, a, csf_divisor, sigma1, sigma2, radius, k, h, p, q, z)
    m_a, m_b = per_source(images, key, masked_contrast)
    m_f = masked_contrast(images.fused)
    a_sq, b_sq = m_a * m_a, m_b * m_b
    total = a_sq + b_sq
    score = _ratio(np.minimum(m_a, m_f), np.maximum(m_a, m_f), 1.0) * _ratio(a_sq, total, 0.5)
    score += _ratio(np.minimum(m_b, m_f), np.maximum(m_b, m_f), 1.0) * _ratio(b_sq, total, 0.5)
    return channel_mean(score.mean(axis=(1, 2), dtype=np.float64))


def _strength_power(x: np.ndarray, alpha: float) -> np.ndarray:
    """(Sobel strength) ** alpha, zero padding, in float32."""
    dx, dy = sobel(x.astype(np.float32), "zero")
    square = dx * dx
    square += dy * dy
    if alpha == 5.0:
        return square * square * np.sqrt(square)
    return square ** (alpha / 2.0)


@register_metric(
    "Qcv",
    higher_is_better=False,
    reference="H. Chen, P. K. Varshney, A human perception inspired quality metric for image fusion based on "
    "regional information, Information Fusion 8(2):193-207, 2007",
)
def chen_varshney(
    images: Images,
    *,
    window: int = 16,
    alpha: float = 5.0,
    csf: str = "mannos_sakrison",
    csf_divisor: float = 8.0,
) -> float:
    """Qcv = sum_w (l_A(w) D_A(w) + l_B(w) D_B(w)) / sum_w (l_A(w) + l_B(w)) over ``window``-sized blocks w.

    Images are min-max stretched to rounded 0-255 levels; l_X(w) = sum_w g_X^alpha (g: Sobel strength);
    D_X(w) = mean_w ((X - F) filtered by the CSF)^2, the CSF ("mannos_sakrison" 2.6 (0.0192 + 0.144 r)
    e^(-(0.144 r)^1.1), or "ahumada") on r = DFT index * 2 / ``csf_divisor``. Partial blocks are zero-padded
    (MATLAB blkproc). Lower is better; 0 when no source has an edge.
    """
    f = stretch(images.fused)
    x_a, x_b = per_source(images, "stretched", lambda x: stretch(x).astype(np.float32))  # exact: integers
    height, width = images.shape
    r = fft_radius(height, width, csf_divisor)
    if csf == "mannos_sakrison":
        response = 2.6 * (0.0192 + 0.144 * r) * np.exp(-((0.144 * r) ** 1.1))
    elif csf == "ahumada":
        response = np.exp(-((r / 97.3227) ** 2)) - 0.685 * np.exp(-((r / 12.1653) ** 2))
    else:
        raise ValueError(f"csf must be 'mannos_sakrison' or 'ahumada', not {csf!r}")
    weights = per_source(
        images,
        ("Qcv weights", window, alpha),
        lambda x: block_sum(_strength_power(stretch(x), alpha), window, np.float64),
    )
    diffs = fft_filter(np.concatenate([x_a - f, x_b - f]), response, np.float32)
    diffs *= diffs
    blocks = block_sum(diffs, window, np.float64) / (window * window)
    n_a = max(x_a.shape[0], f.shape[0])
    num = (weights[0] * blocks[:n_a]).sum(axis=(1, 2)) + (weights[1] * blocks[n_a:]).sum(axis=(1, 2))
    den = weights[0].sum(axis=(1, 2)) + weights[1].sum(axis=(1, 2))
    return channel_mean(_safe_ratio(num, den, 0.0))
