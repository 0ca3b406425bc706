"""A straightforward per-window port of Haghighat's fast-FMI (fmi.m as distributed with MEFB/VIFB): the
reference of ``fusebench.metrics`` FMI_pixel / FMI_dct / FMI_w, loop for loop. Very slow (about a minute per
640x480 image and feature); use it on small crops.

``fmi(ima, imb, imf, feature, w)`` takes the three 2-D images on any scale and a feature of
``fusebench.metrics.fmi.feature_image`` ("none", "dct", "wavelet", "gradient"); it keeps fmi.m's overwriting
of F's window by its normalised values while scoring A (so B's identical-window test sees the normalised
window), unless ``literal=False``. Means are sequential sums divided by the count, as MATLAB's.
"""

from __future__ import annotations

import math

import numpy as np

from fusebench.metrics.fmi import feature_image


def _pdf(sub: np.ndarray) -> np.ndarray:
    """Min-max normalise a window (ones if flat) and divide by its sum; column-major order like sub(:)."""
    low, high = sub.min(), sub.max()
    sub = np.ones_like(sub) if high == low else (sub - low) / (high - low)
    flat = sub.flatten(order="F")
    return flat / flat.sum()


def _mean(values: np.ndarray) -> float:
    """MATLAB's mean of a short vector: a sequential sum divided by the count (numpy's pairwise sum would give
    exactly 1/9 for a uniform 3x3 window, where MATLAB's rounding noise makes two flat windows correlate)."""
    total = 0.0
    for v in values:
        total += float(v)
    return total / len(values)


def _entropy(values) -> float:  # noqa: ANN001
    return -sum(p * math.log2(abs(p)) for p in values if p != 0)


def _pair(x_pdf: np.ndarray, f_pdf: np.ndarray) -> float:
    """fmi.m's body for one source window against F's window (both already normalised pdfs)."""
    n = len(x_pdf)
    x_cdf, f_cdf = np.cumsum(x_pdf), np.cumsum(f_pdf)
    xt, ft = x_pdf - _mean(x_pdf), f_pdf - _mean(f_pdf)
    s = float(np.sum(xt * ft))
    c = 0.0 if s == 0 else s / math.sqrt(float(np.sum(xt * xt)) * float(np.sum(ft * ft)))
    e_x = sum((i + 1) * x_pdf[i] for i in range(n))
    e2_x = sum((i + 1) ** 2 * x_pdf[i] for i in range(n))
    e_f = sum((i + 1) * f_pdf[i] for i in range(n))
    e2_f = sum((i + 1) ** 2 * f_pdf[i] for i in range(n))
    x_sd, f_sd = math.sqrt(max(e2_x - e_x**2, 0.0)), math.sqrt(max(e2_f - e_f**2, 0.0))
    if c >= 0:

        def bound(u: float, v: float) -> float:
            return 0.5 * (u + v - abs(u - v))
    else:

        def bound(u: float, v: float) -> float:
            return 0.5 * (u + v - 1 + abs(u + v - 1))

    if (c >= 0 and (c == 0 or x_sd == 0 or f_sd == 0)) or (c < 0 and (x_sd == 0 or f_sd == 0)):
        t = 0.0
    else:
        cov = 0.0
        for i in range(n):
            for j in range(n):
                cov += bound(f_cdf[i], x_cdf[j]) - f_cdf[i] * x_cdf[j]
        t = c / (cov / (f_sd * x_sd))
    joint = []
    for i in range(n):
        for j in range(n):
            mass = bound(f_cdf[i], x_cdf[j])
            if i:
                mass -= bound(f_cdf[i - 1], x_cdf[j])
            if j:
                mass -= bound(f_cdf[i], x_cdf[j - 1])
            if i and j:
                mass += bound(f_cdf[i - 1], x_cdf[j - 1])
            joint.append(t * mass + (1 - t) * f_pdf[i] * x_pdf[j])
    h_x, h_f = _entropy(x_pdf), _entropy(f_pdf)
    mi = h_x + h_f - _entropy(joint)
    return 0.0 if mi == 0 else 2 * mi / (h_x + h_f)


def fmi(
    ima: np.ndarray, imb: np.ndarray, imf: np.ndarray, feature: str = "none", w: int = 3, literal: bool = True
) -> float:
    fa, fb, ff = (feature_image(np.asarray(x, dtype=np.float64), feature) for x in (ima, imb, imf))
    m, n = fa.shape
    r = w // 2
    values = []
    for p in range(r, m - r):
        for q in range(r, n - r):
            a_sub = fa[p - r : p + r + 1, q - r : q + r + 1]
            b_sub = fb[p - r : p + r + 1, q - r : q + r + 1]
            f_sub = ff[p - r : p + r + 1, q - r : q + r + 1]
            if np.array_equal(a_sub, f_sub):
                fmi_af = 1.0
                f_seen_by_b = f_sub
            else:
                fmi_af = _pair(_pdf(a_sub), _pdf(f_sub))
                low, high = f_sub.min(), f_sub.max()
                f_seen_by_b = np.ones_like(f_sub) if high == low else (f_sub - low) / (high - low)
            if not literal:
                f_seen_by_b = f_sub
            fmi_bf = 1.0 if np.array_equal(b_sub, f_seen_by_b) else _pair(_pdf(b_sub), _pdf(f_sub))
            values.append((fmi_af + fmi_bf) / 2)
    return float(np.mean(values))
