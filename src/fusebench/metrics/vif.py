"""Visual information fidelity: Sheikh & Bovik's pixel-domain VIF and Han et al.'s fusion metric VIFF.

Both rest on the same multiscale statistics: at scale s = 1..4 a Gaussian window of N = 2^(5-s) + 1 taps
(sigma N/5) gives the local variances of a source X and of F and their covariance; between scales the images
are filtered with the next window and decimated by 2 ('valid' filtering throughout, as in Sheikh's
vifvec/vifp_mscale code).

Precision: a local variance E[x^2] - E[x]^2 loses to cancellation what its operands carry in magnitude. The
windows are processed in bands of rows, each band shifted by a constant (the most frequent value of its
rows: flat backgrounds become exactly 0) and filtered in float32; a band where float32 rounding could reach
1% of (variance + sigma_n^2) at some pixel is redone in float64. VIF then agrees with the float64 reference
code to a few 1e-6 or better (tests/test_metrics_more.py), at float32 speed.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ._ops import channel_mean, downsample_valid, filter_valid, gaussian_window
from .base import Images, register_metric
from .information import combine_pair

#: bound of float32 rounding in a windowed variance, relative to the mean square (measured worst: 4.3e-7)
_F32_BOUND = 5e-7
#: a band is redone in float64 when that bound exceeds this fraction of (variance + sigma_n^2) somewhere
_TOLERANCE = 1e-2
_BAND_ROWS = 32


def _windows(scales: int) -> list[np.ndarray]:
    sizes = [2 ** (scales - s + 1) + 1 for s in range(1, 1 + scales)]
    return [gaussian_window(n, n / 5.0) for n in sizes]


def _mode(x: np.ndarray) -> np.ndarray:
    """Per-channel most frequent rounded value (0-255 clipped) of a (C, h, w) stack, (C, 1, 1), from every
    other row and column (it only needs to be a value flat areas often have)."""
    out = np.empty((len(x), 1, 1), dtype=x.dtype)
    for c, channel in enumerate(x):
        levels = np.clip(np.rint(channel[::2, ::2]), 0, 255).astype(np.intp).ravel()
        out[c] = np.bincount(levels, minlength=256).argmax()
    return out


def _band_stats(
    band: list[np.ndarray], window: np.ndarray, dtype: type
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Windowed means, mean squares (A, B, F) and cross moments (AF, BF) of a band of rows (or a whole
    scale), each image shifted by its most frequent value."""
    shape = np.broadcast_shapes(*(x.shape for x in band))
    c = shape[0]
    stack = np.empty((8 * c, *shape[1:]), dtype=dtype)
    a, b, f = (stack[i * c : (i + 1) * c] for i in range(3))
    for out, x in zip((a, b, f), band, strict=True):
        x = x.astype(dtype, copy=False)
        np.subtract(x, _mode(x), out=out)
    np.multiply(a, a, out=stack[3 * c : 4 * c])
    np.multiply(b, b, out=stack[4 * c : 5 * c])
    np.multiply(f, f, out=stack[5 * c : 6 * c])
    np.multiply(a, f, out=stack[6 * c : 7 * c])
    np.multiply(b, f, out=stack[7 * c : 8 * c])
    moments = filter_valid(stack, window.astype(dtype), "direct")
    parts = [moments[i * c : (i + 1) * c] for i in range(8)]
    return parts[0:3], parts[3:6], parts[6:8]


def _risky_rows(variances: list[np.ndarray], squares: list[np.ndarray], sigma_nsq: float) -> np.ndarray:
    """Output rows with a pixel where the float32 rounding bound (_F32_BOUND * E[x^2] of the shifted image)
    exceeds _TOLERANCE * (variance + sigma_n^2); only pixels with E[x^2] > sigma_n^2 * tol / bound can."""
    rows = []
    for v, e in zip(variances, squares, strict=True):
        c, r, w = np.nonzero(e > sigma_nsq * _TOLERANCE / _F32_BOUND)
        if len(r):
            bad = _F32_BOUND * e[c, r, w] > _TOLERANCE * (np.maximum(v[c, r, w], 0) + sigma_nsq)
            rows.append(r[bad])
    return np.unique(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.intp)


def vif_statistics(
    images: Images, scales: int = 4, sigma_nsq: float = 2.0
) -> Iterator[tuple[int, list[tuple[np.ndarray, np.ndarray, np.ndarray]]]]:
    """(scale index, [(var_a, var_f, cov_af), (var_b, var_f, cov_bf)]) for every scale, float32 (C, h, w);
    ``sigma_nsq`` (in the images' units) sets the precision check."""
    levels = [np.asarray(x, dtype=np.float32) for x in (images.a, images.b, images.fused)]
    for s, window in enumerate(_windows(scales)):
        k = len(window)
        if s:
            if min(levels[0].shape[-2:]) < 3 * k - 2:
                return  # the next scale would be empty (MATLAB's 'valid' filtering returns [])
            levels = [downsample_valid(x, window) for x in levels]
        elif min(levels[0].shape[-2:]) < k:
            raise ValueError(f"VIF: a {k}x{k} window does not fit in {levels[0].shape[-2:]}")
        # float32 moments of the whole scale, each image shifted by its most frequent value ...
        means, squares, cross = _band_stats(levels, window, np.float32)
        variances = [e - m * m for e, m in zip(squares, means, strict=True)]
        covs = [e - means[i] * means[2] for i, e in enumerate(cross)]
        # ... and bands of rows where float32 rounding could matter redone in float64, shifted locally
        for top in np.unique(_risky_rows(variances, squares, sigma_nsq) // _BAND_ROWS) * _BAND_ROWS:
            bottom = min(top + _BAND_ROWS, variances[0].shape[-2])
            band = [x[:, top : bottom + k - 1] for x in levels]
            m64, e64, x64 = _band_stats(band, window, np.float64)
            for i in range(3):
                variances[i][:, top:bottom] = e64[i] - m64[i] * m64[i]
            for i in range(2):
                covs[i][:, top:bottom] = x64[i] - m64[i] * m64[2]
        yield s, [(variances[0], variances[2], covs[0]), (variances[1], variances[2], covs[1])]


def vif_maps(
    var_x: np.ndarray, var_f: np.ndarray, cov: np.ndarray, sigma_nsq: float, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(g, information with distortion, information without) maps of one scale, Sheikh's vifvec rules.

    g = cov / (var_x + eps), sv^2 = max(var_f - g cov, eps); num = log10(1 + g^2 var_x / (sv^2 + sigma_n^2)),
    den = log10(1 + var_x / sigma_n^2). The reference code's special cases all end in g = 0 (num = 0) where
    var_x < eps, var_f < eps or g < 0, and in den = 0 where var_x < eps; they are applied as such.
    """
    var_x, var_f, cov = (np.asarray(x, dtype=np.float32) for x in np.broadcast_arrays(var_x, var_f, cov))
    s1 = np.maximum(var_x, np.float32(0))
    s2 = np.maximum(var_f, np.float32(0))
    g = s1 + np.float32(eps)
    np.divide(cov, g, out=g)
    sv = g * cov
    np.subtract(s2, sv, out=sv)
    np.maximum(sv, np.float32(eps), out=sv)
    sv += np.float32(sigma_nsq)
    valid = (s1 >= eps) & (s2 >= eps) & (g >= 0)
    g *= valid
    num = g * g
    num *= s1
    num /= sv
    np.log1p(num, out=num)
    num *= np.float32(1.0 / np.log(10.0))
    den = s1 * np.float32(1.0 / sigma_nsq)
    np.log1p(den, out=den)
    den *= np.float32(1.0 / np.log(10.0))
    den *= s1 >= eps
    return g, num, den


@register_metric(
    "VIF",
    higher_is_better=True,
    reference="H. R. Sheikh, A. C. Bovik, Image information and visual quality, IEEE Trans. Image Process. "
    "15(2):430-444, 2006 (pixel-domain multiscale form, vifp_mscale)",
)
def vif(images: Images, *, sigma_nsq: float = 2.0, eps: float = 1e-10, scales: int = 4, pair: str = "sum") -> float:
    """VIF = VIF(A, F) (+) VIF(B, F), VIF(X, F) = sum_s sum_i num_s,i / sum_s sum_i den_s,i over the 4 scales,
    num = log10(1 + g^2 s_x^2 / (s_v^2 + sigma_n^2)), den = log10(1 + s_x^2 / sigma_n^2), g = s_xf / s_x^2,
    s_v^2 = s_f^2 - g s_xf (Gaussian windows N = 2^(5-s) + 1, sigma N/5).

    ``sigma_nsq`` (HVS noise) and ``eps`` are on the 0-255 scale (rescaled for other value ranges); a source
    with no information (den = 0) scores 1, as in the CDDFuse evaluator. ``pair`` "sum" (CDDFuse) or "mean".
    """
    unit = (images.value_range / 255.0) ** 2
    num = np.zeros((2, images.channels))
    den = np.zeros((2, images.channels))
    for _, stats in vif_statistics(images, scales, sigma_nsq * unit):
        for k, (var_x, var_f, cov) in enumerate(stats):
            _, n, d = vif_maps(var_x, var_f, cov, sigma_nsq * unit, eps * unit)
            num[k] += n.sum(axis=(1, 2), dtype=np.float64)
            den[k] += d.sum(axis=(1, 2), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, num / np.where(den > 0, den, 1.0), 1.0)
    return channel_mean(combine_pair(ratio[0], ratio[1], pair))


def _pick(map_a: np.ndarray, map_b: np.ndarray, use_a: np.ndarray, use_b: np.ndarray) -> np.ndarray:
    """Per-channel sum of map_a where use_a, map_b where use_b, their mean elsewhere (ties)."""
    tie = 0.5 * (map_a.astype(np.float64) + map_b)
    return np.where(use_a, map_a, np.where(use_b, map_b, tie)).sum(axis=(1, 2))


@register_metric(
    "VIFF",
    higher_is_better=True,
    reference="Y. Han, Y. Cai, Y. Cao, X. Xu, A new image fusion performance metric based on visual "
    "information fidelity, Information Fusion 14(2):127-135, 2013 (code as distributed with MEFB)",
)
def viff(
    images: Images,
    *,
    visual_noise: float = 0.005,
    c: float = 1e-7,
    eps: float = 1e-10,
    weights: tuple[float, ...] = (1.0, 0.0, 0.15, 1.0),
    ties: str = "mean",
) -> float:
    """VIFF = sum_s p_s VID_s / VIND_s, p = ``weights`` / sum(weights); at each pixel of scale s the source
    with the smaller gain g is used: VID_s = sum_i (num_X,i + c), VIND_s = sum_i (den_X,i + c), X = argmin_X g_X.

    num, den, g as in :func:`vif` with sigma_n^2 = ``visual_noise`` * 255^2 (0.005: 325.1 on 0-255 data);
    where g_A = g_B, ``ties`` "mean" averages the two sources' terms (symmetric in A and B), "source_b" takes
    B's as Han's code does (``L = G1 < G2``). Scales too small for their window are left out (their weights
    renormalised away), as are VIF's.
    """
    unit = (images.value_range / 255.0) ** 2
    sigma_nsq = visual_noise * 255.0**2 * unit
    if ties not in ("mean", "source_b"):
        raise ValueError(f"ties must be 'mean' or 'source_b', not {ties!r}")
    vid = np.zeros((len(weights), images.channels))
    vind = np.zeros((len(weights), images.channels))
    count = np.zeros(len(weights))
    for s, stats in vif_statistics(images, len(weights), sigma_nsq):
        (g_a, num_a, den_a), (g_b, num_b, den_b) = (vif_maps(*st, sigma_nsq, eps * unit) for st in stats)
        use_a = g_a < g_b
        use_b = (g_b < g_a) if ties == "mean" else ~use_a
        vid[s] += _pick(num_a, num_b, use_a, use_b)
        vind[s] += _pick(den_a, den_b, use_a, use_b)
        count[s] += use_a.shape[1] * use_a.shape[2]
    used = count > 0
    p = np.asarray(weights, dtype=np.float64)[used]
    p /= p.sum()
    c_total = count[used, None] * c
    total = (p[:, None] * (vid[used] + c_total) / (vind[used] + c_total)).sum(axis=0)
    return channel_mean(total)
