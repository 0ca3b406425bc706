"""Metrics comparing F with each source pixel- or window-wise: SSIM, PSNR, RMSE."""

from __future__ import annotations

import numpy as np

from ._ops import channel_mean, filter_valid, gaussian_1d, safe_corr
from .base import Images, per_source, register_metric
from .information import combine_pair


def _window(window: str, size: int, sigma: float) -> np.ndarray:
    if size % 2 != 1:
        raise ValueError(f"window size must be odd, not {size}")
    if window == "gaussian":
        return gaussian_1d(sigma, size // 2)
    if window == "uniform":
        return np.full(size, 1.0 / size)
    raise ValueError(f"window must be 'gaussian' or 'uniform', not {window!r}")


def centred(x: np.ndarray, dtype: type = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """(x - c, c) with c the rounded per-channel mean: windowed variances of the shifted image lose far less
    to cancellation (and are exactly 0 on flat windows of integer data), the shift is added back to means."""
    shift = np.round(x.mean(axis=(-2, -1), keepdims=True))
    return (x - shift).astype(dtype, copy=False), shift


def moments(x: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Windowed ('valid') mean and mean square of a (shifted) stack, in its precision."""
    out = filter_valid(np.concatenate([x, x * x]), kernel.astype(x.dtype))
    return out[: len(x)], out[len(x) :]


def local_stats(
    x: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]],
    f: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]],
    kernel: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mu_x, mu_f, var_x, var_f, cov) over the 'valid' windows; ``x``, ``f`` = (shifted, shift, moments)."""
    (xs, x_shift, (mu_x, e_xx)), (fs, f_shift, (mu_f, e_ff)) = x, f
    e_xf = filter_valid(xs * fs, kernel.astype(fs.dtype))
    var_x = e_xx - mu_x * mu_x
    var_f = e_ff - mu_f * mu_f
    cov = e_xf - mu_x * mu_f
    return mu_x + x_shift, mu_f + f_shift, var_x, var_f, cov


def ssim_and_cs(
    stats: tuple[np.ndarray, ...], c1: float, c2: float, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """SSIM map and contrast-structure map from :func:`local_stats`; ``scale`` multiplies the moments."""
    mu_x, mu_f, var_x, var_f, cov = stats
    cs = (2.0 * scale * cov + c2) / (scale * (var_x + var_f) + c2)
    luminance = (2.0 * mu_x * mu_f + c1) / (mu_x * mu_x + mu_f * mu_f + c1)
    return luminance * cs, cs


def _prepared(images: Images, kernel: np.ndarray, key: tuple, dtype: type) -> tuple[tuple, tuple, tuple]:
    """(shifted, shift, moments) of A, B (remembered per source pair) and F."""

    def prepare(x: np.ndarray) -> tuple:
        xs, shift = centred(x, dtype)
        return xs, shift, moments(xs, kernel)

    a, b = per_source(images, (*key, np.dtype(dtype).str), prepare)
    return a, b, prepare(images.fused)


@register_metric(
    "SSIM",
    higher_is_better=True,
    reference="Z. Wang, A. C. Bovik, H. R. Sheikh, E. P. Simoncelli, Image quality assessment: from error "
    "visibility to structural similarity, IEEE Trans. Image Process. 13(4):600-612, 2004",
)
def ssim(
    images: Images,
    *,
    window: str = "gaussian",
    size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
    sample_covariance: bool = False,
    pair: str = "sum",
) -> float:
    """SSIM(A, F) (+) SSIM(B, F); SSIM(X, F) = mean over the 'valid' windows of
    (2 mu_x mu_f + C1)(2 s_xf + C2) / ((mu_x^2 + mu_f^2 + C1)(s_x^2 + s_f^2 + C2)), C_i = (k_i L)^2.

    ``window`` "gaussian" (``size`` x ``size``, ``sigma``, normalised) or "uniform"; L = ``data_range``
    (default: the convention's value range); ``sample_covariance`` rescales the moments by n/(n-1) as
    scikit-image does; ``pair`` "sum" (VIFB, hence values near 1.4-2) or "mean".
    """
    kernel = _window(window, size, sigma)
    if min(images.shape) < size:
        raise ValueError(f"SSIM window {size} must fit in the {images.shape} image")
    scale = size * size / (size * size - 1.0) if sample_covariance else 1.0
    span = images.value_range if data_range is None else data_range
    c1, c2 = (k1 * span) ** 2, (k2 * span) ** 2
    if window == "uniform" and images.levels and size <= 13 and size * 65025 * images.shape[0] < 2**31:
        return channel_mean(combine_pair(*_ssim_box_exact(images, size, c1, c2, scale), pair))
    # float32 moments (of mean-shifted images) are plenty when C2 dwarfs their rounding (~1e-7 of the
    # squared range); small constants (e.g. a data range of 2 on 0-255 data) need float64
    dtype = np.float32 if c2 >= 1e-4 * images.value_range**2 else np.float64
    a, b, f = _prepared(images, kernel, ("SSIM", window, size, sigma), dtype)
    scores = []
    for x in (a, b):
        ssim_map, _ = ssim_and_cs(local_stats(x, f, kernel), c1, c2, scale)
        scores.append(ssim_map.mean(axis=(1, 2), dtype=np.float64))
    return channel_mean(combine_pair(scores[0], scores[1], pair))


def _run_sums(x: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Sums of ``size`` consecutive entries along ``axis`` ('valid'), from sums over 1, 2, 4... entries
    combined along the binary digits of ``size`` (2 log2(size) additions instead of size - 1)."""
    n = x.shape[axis] - size + 1

    def part(a: np.ndarray, start: int) -> np.ndarray:
        index = [slice(None)] * a.ndim
        index[axis] = slice(start, start + n)
        return a[tuple(index)]

    out, offset, power, width, left = None, 0, x, 1, size
    while left:
        if left & 1:
            piece = part(power, offset)
            out = piece.copy() if out is None else out.__iadd__(piece)
            offset += width
        left >>= 1
        if left:
            m = power.shape[axis] - width
            index_a, index_b = [slice(None)] * x.ndim, [slice(None)] * x.ndim
            index_a[axis], index_b[axis] = slice(0, m), slice(width, width + m)
            power = power[tuple(index_a)] + power[tuple(index_b)]
            width *= 2
    return out


def _box_sums(x: np.ndarray, size: int, block: int = 32) -> np.ndarray:
    """'valid' size x size window sums of a stack (..., H, W) in its dtype (exact for integer types), in
    blocks of rows that stay in cache."""
    h, w = x.shape[-2:]
    rows = np.empty((*x.shape[:-2], h, w - size + 1), dtype=x.dtype)
    for top in range(0, h, block):
        rows[..., top : top + block, :] = _run_sums(x[..., top : top + block, :], size, -1)
    out = np.empty((*x.shape[:-2], h - size + 1, w - size + 1), dtype=x.dtype)
    for top in range(0, h - size + 1, block):
        bottom = min(top + block, h - size + 1)
        out[..., top:bottom, :] = _run_sums(rows[..., top : bottom + size - 1, :], size, -2)
    return out


def _ssim_box_exact(images: Images, size: int, c1: float, c2: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """SSIM with a uniform window on 8-bit levels, from exact integer window sums.

    With S the window sums of x, x^2 and x f and n = size^2, n^2 var_x = n S_xx - S_x^2 and
    n^2 cov = n S_xf - S_x S_f are exact in int32 (|.| < 2^31 for size <= 13), so no variance suffers
    cancellation; only the final ratio is rounded (float32, ~1e-7 relative).
    """
    n = size * size
    inv = np.float32(1.0 / (n * n))

    def sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        xi = x.astype(np.int32)
        both = _box_sums(np.concatenate([xi, xi * xi]), size)
        s_x, s_xx = both[: len(xi)], both[len(xi) :]
        s_xx *= n
        s_xx -= s_x * s_x  # n^2 var
        return xi, s_x, s_xx

    fi, s_f, v_f = sums(images.fused)
    sq_f = s_f * s_f
    scores = []
    for xi, s_x, v_x in per_source(images, ("SSIM box sums", size), sums):
        cov = _box_sums(xi * fi, size)
        cov *= n
        cov -= s_x * s_f  # n^2 cov
        cs = cov.astype(np.float32)
        cs *= np.float32(2.0 * scale) * inv
        cs += np.float32(c2)
        den = (v_x + v_f).astype(np.float32)
        den *= np.float32(scale) * inv
        den += np.float32(c2)
        cs /= den
        lum = (s_x * s_f).astype(np.float32)
        lum *= np.float32(2.0) * inv
        lum += np.float32(c1)
        den = (s_x * s_x + sq_f).astype(np.float32)
        den *= inv
        den += np.float32(c1)
        lum /= den
        lum *= cs
        scores.append(lum.mean(axis=(1, 2), dtype=np.float64))
    return scores[0], scores[1]


def _halve(x: np.ndarray) -> np.ndarray:
    """MATLAB ``imfilter(x, ones(2)/4, 'symmetric')`` then ``x(1:2:end, 1:2:end)``: 2x2 block means, the last
    row/column repeated when the size is odd."""
    h, w = x.shape[-2:]
    if h % 2:
        x = np.concatenate([x, x[..., -1:, :]], axis=-2)
    if w % 2:
        x = np.concatenate([x, x[..., :, -1:]], axis=-1)
    return 0.25 * (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2])


@register_metric(
    "MS-SSIM",
    higher_is_better=True,
    reference="Z. Wang, E. P. Simoncelli, A. C. Bovik, Multiscale structural similarity for image quality "
    "assessment, 37th Asilomar Conference on Signals, Systems and Computers, 2003",
)
def ms_ssim(
    images: Images,
    *,
    weights: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333),
    size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
    pair: str = "mean",
) -> float:
    """MS-SSIM(X, F) = prod_{j<M} mean(cs_j)^w_j * mean(ssim_M)^w_M over M = len(``weights``) scales, each
    scale halving the images by 2x2 averaging (Wang's msssim.m); pair-combined over A and B (``pair``).

    Gaussian ``size`` x ``size`` window (``sigma``), 'valid' maps, C_i = (k_i L)^2. Negative mean cs values are
    clamped to 0 (a fractional power of a negative number is undefined). The weights are used as given (the
    published five sum to 1.0001, as in msssim.m); images too small for all scales use the first scales that
    fit, with those weights renormalised to sum 1.
    """
    kernel = gaussian_1d(sigma, size // 2)
    span = images.value_range if data_range is None else data_range
    c1, c2 = (k1 * span) ** 2, (k2 * span) ** 2
    levels, (h, w) = 0, images.shape
    while levels < len(weights) and min(h, w) >= size:
        levels, h, w = levels + 1, -(-h // 2), -(-w // 2)
    if levels == 0:
        raise ValueError(f"MS-SSIM window {size} must fit in the {images.shape} image")
    used = np.asarray(weights[:levels], dtype=np.float64)
    if levels < len(weights):
        used = used / used.sum()

    def pyramid(x: np.ndarray) -> list[tuple]:
        out = []
        for level in range(levels):
            if level:
                x = _halve(x)
            xs, shift = centred(x)
            out.append((xs, shift, moments(xs, kernel)))
        return out

    pa, pb = per_source(images, ("MS-SSIM pyramid", size, sigma, levels), pyramid)
    pf = pyramid(images.fused)
    scores = []
    for px in (pa, pb):
        total = np.ones(len(pf[0][0]))
        for level, weight in enumerate(used):
            ssim_map, cs = ssim_and_cs(local_stats(px[level], pf[level], kernel), c1, c2)
            value = (ssim_map if level == levels - 1 else cs).mean(axis=(1, 2))
            total = total * np.maximum(value, 0.0) ** weight
        scores.append(total)
    return channel_mean(combine_pair(scores[0], scores[1], pair))


def _errors(images: Images, error: str) -> np.ndarray:
    """Per-channel mean of the (A, F) and (B, F) error terms."""
    pixels = images.shape[0] * images.shape[1]
    terms = []
    for x in (images.a, images.b):
        d = x - images.fused
        sq = np.einsum("chw,chw->c", d, d)
        if error == "vifb":
            terms.append(np.sqrt(sq) / pixels)
        elif error == "mse":
            terms.append(sq / pixels)
        elif error == "rmse":
            terms.append(np.sqrt(sq / pixels))
        else:
            raise ValueError(f"error must be 'vifb', 'mse' or 'rmse', not {error!r}")
    return (terms[0] + terms[1]) / 2.0


@register_metric(
    "RMSE",
    higher_is_better=False,
    reference="P. Jagalingam, A. V. Hegde, A review of quality metrics for fused image, "
    "Aquatic Procedia 4:133-142, 2015",
)
def rmse(images: Images, *, error: str = "rmse") -> float:
    """RMSE = (e(A, F) + e(B, F)) / 2 per channel; e = sqrt(sum (X - F)^2 / (HW)) ("rmse").

    ``error`` "vifb" is VIFB's e = sqrt(sum (X - F)^2) / (HW) (the root taken before dividing by the pixel
    count, hence its values around 0.05).
    """
    return channel_mean(_errors(images, error))


@register_metric(
    "PSNR",
    higher_is_better=True,
    reference="P. Jagalingam, A. V. Hegde, A review of quality metrics for fused image, "
    "Aquatic Procedia 4:133-142, 2015",
)
def psnr(images: Images, *, error: str = "mse", peak: float | str | None = None) -> float:
    """PSNR = 20 log10(P / sqrt(E)) per channel, E = (e(A, F) + e(B, F)) / 2, P = ``peak`` (or the range).

    ``error`` "mse": e = sum (X - F)^2 / (HW) (the usual PSNR); "vifb": VIFB's e = sqrt(sum (X - F)^2) / (HW),
    which gives values near 58 dB. ``peak`` "fused_max" uses max(F) (MMIF-CDDFuse's evaluator). Infinite
    when F equals both sources.
    """
    if peak == "fused_max":
        top = images.fused.max(axis=(1, 2))
    elif isinstance(peak, str):
        raise ValueError(f"peak must be a number, None or 'fused_max', not {peak!r}")
    else:
        top = images.value_range if peak is None else peak
    mean_error = _errors(images, error)
    with np.errstate(divide="ignore", invalid="ignore"):
        values = np.where(mean_error == 0, np.inf, 20.0 * np.log10(top / np.sqrt(mean_error)))
    return channel_mean(values)


@register_metric(
    "MSE",
    higher_is_better=False,
    reference="P. Jagalingam, A. V. Hegde, A review of quality metrics for fused image, "
    "Aquatic Procedia 4:133-142, 2015",
)
def mse(images: Images) -> float:
    """MSE = (MSE(A, F) + MSE(B, F)) / 2 per channel, MSE(X, F) = sum (X - F)^2 / (HW), on the convention's
    value scale (0-255 squared for vifb, cddfuse and fusebench)."""
    return channel_mean(_errors(images, "mse"))


@register_metric(
    "CC",
    higher_is_better=True,
    reference="P. Jagalingam, A. V. Hegde, A review of quality metrics for fused image, "
    "Aquatic Procedia 4:133-142, 2015",
)
def correlation_coefficient(images: Images, *, pair: str = "mean") -> float:
    """CC = (r(A, F) + r(B, F)) / 2 per channel (``pair`` "mean", or "sum"), r the Pearson correlation
    r(X, F) = sum (X - mean X)(F - mean F) / sqrt(sum (X - mean X)^2 sum (F - mean F)^2); r = 0 on a flat image."""
    f = images.fused
    return channel_mean(combine_pair(safe_corr(images.a, f), safe_corr(images.b, f), pair))


@register_metric(
    "SCD",
    higher_is_better=True,
    reference="V. Aslantas, E. Bendes, A new image quality metric for image fusion: the sum of the "
    "correlations of differences, AEU Int. J. Electron. Commun. 69(12):1890-1896, 2015",
)
def sum_of_correlations_of_differences(images: Images) -> float:
    """SCD = r(F - B, A) + r(F - A, B) per channel, r the Pearson correlation (0 on a flat image): how much of
    each source the fused image holds beyond the other source."""
    f, a, b = images.fused, images.a, images.b
    return channel_mean(safe_corr(f - b, a) + safe_corr(f - a, b))
