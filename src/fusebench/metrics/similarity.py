"""Metrics comparing F with each source pixel- or window-wise: SSIM, PSNR, RMSE."""

from __future__ import annotations

import numpy as np

from ._ops import channel_mean, correlate_separable, gaussian_1d
from .base import Images, per_source, register_metric
from .information import combine_pair


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
    if window == "gaussian":
        kernel = gaussian_1d(sigma, size // 2)
    elif window == "uniform":
        kernel = np.full(size, 1.0 / size)
    else:
        raise ValueError(f"window must be 'gaussian' or 'uniform', not {window!r}")
    if size % 2 != 1 or min(images.shape) < size:
        raise ValueError(f"SSIM window {size} must be odd and fit in the {images.shape} image")

    def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Windowed mean and mean square; float32 holds 8-bit data and its squares exactly."""
        x = x.astype(np.float32)
        out = correlate_separable(np.concatenate([x, x * x]), kernel, valid=True)
        return out[: len(x)], out[len(x) :]

    (mu_a, e_aa), (mu_b, e_bb) = per_source(images, ("SSIM moments", window, size, sigma), moments)
    a, b = per_source(images, "float32", lambda x: x.astype(np.float32))
    f = images.fused.astype(np.float32)
    maps = [f, f * f, a * f, b * f]
    ends = np.cumsum([len(m) for m in maps])
    mu_f, e_ff, e_af, e_bf = np.split(
        correlate_separable(np.concatenate(maps), kernel, valid=True), ends[:-1]
    )
    scale = size * size / (size * size - 1.0) if sample_covariance else 1.0
    span = images.value_range if data_range is None else data_range
    c1, c2 = (k1 * span) ** 2, (k2 * span) ** 2
    mu_f_sq = mu_f * mu_f
    scores = []
    for mu_x, e_xx, e_xf in ((mu_a, e_aa, e_af), (mu_b, e_bb, e_bf)):
        mu_xf = mu_x * mu_f
        squares = mu_x * mu_x + mu_f_sq
        variances = e_xx + e_ff  # -> s_x^2 + s_f^2 + C2
        variances -= squares
        variances *= scale
        variances += c2
        squares += c1
        squares *= variances  # the denominator
        covariance = e_xf - mu_xf  # -> 2 s_xf + C2
        covariance *= 2.0 * scale
        covariance += c2
        mu_xf *= 2.0
        mu_xf += c1
        mu_xf *= covariance  # the numerator
        mu_xf /= squares
        scores.append(mu_xf.mean(axis=(1, 2), dtype=np.float64))
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
def psnr(images: Images, *, error: str = "mse", peak: float | None = None) -> float:
    """PSNR = 20 log10(P / sqrt(E)) per channel, E = (e(A, F) + e(B, F)) / 2, P = ``peak`` (or the range).

    ``error`` "mse": e = sum (X - F)^2 / (HW) (the usual PSNR); "vifb": VIFB's e = sqrt(sum (X - F)^2) / (HW),
    which gives values near 58 dB. Infinite when F equals both sources.
    """
    top = images.value_range if peak is None else peak
    mean_error = _errors(images, error)
    with np.errstate(divide="ignore"):
        values = 20.0 * np.log10(top / np.sqrt(mean_error))
    return channel_mean(values)
