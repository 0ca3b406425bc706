"""Vectorised building blocks shared by the metrics; all work on (C, H, W) stacks of channels."""

from __future__ import annotations

import numpy as np
from scipy import fft as sfft
from scipy import ndimage

LEVELS = 256


def quantize(x: np.ndarray, value_range: float) -> np.ndarray:
    """Gray levels 0..255 (intp) by flooring ``x`` rescaled from ``0..value_range``; identity on integers."""
    if value_range != LEVELS - 1:
        x = x * ((LEVELS - 1) / value_range)
    return np.clip(x, 0, LEVELS - 1).astype(np.intp)  # truncation is floor on non-negative values


def stretch(x: np.ndarray) -> np.ndarray:
    """Per-channel min-max stretch to 0..255, rounded half away from zero; a constant channel becomes 0.

    The order of operations, ``((x - min) / (max - min)) * 255``, is the MATLAB one, so that ties land on the
    same side.
    """
    low = x.min(axis=(-2, -1), keepdims=True)
    span = x.max(axis=(-2, -1), keepdims=True) - low
    out = x - low  # >= 0, and all 0 in a constant channel
    out /= np.where(span > 0, span, 1.0)
    out *= LEVELS - 1
    out += 0.5
    return np.floor(out, out=out)  # round half away from zero, for non-negative values


def sobel(x: np.ndarray, padding: str = "zero") -> tuple[np.ndarray, np.ndarray]:
    """Correlation of each channel with ``[-1 0 1; -2 0 2; -1 0 1]`` (dx) and its transpose (dy).

    ``padding``: "zero" (MATLAB ``conv2``/``filter2`` 'same') or "replicate" (``imfilter(..., 'replicate')``).
    Other codebases' Sobel variants differ from these only in sign.
    """
    mode = {"zero": "constant", "replicate": "edge"}[padding]
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode=mode)
    sv = p[:, :-2, :] + 2.0 * p[:, 1:-1, :] + p[:, 2:, :]  # [1 2 1] down the rows, (C, H, W + 2)
    sh = p[:, :, :-2] + 2.0 * p[:, :, 1:-1] + p[:, :, 2:]  # [1 2 1] along the rows, (C, H + 2, W)
    return sv[:, :, 2:] - sv[:, :, :-2], sh[:, 2:, :] - sh[:, :-2, :]


def magnitude(dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    return np.sqrt(dx * dx + dy * dy)


def gaussian_1d(sigma: float, radius: int, normalize: bool = True) -> np.ndarray:
    """exp(-x^2 / (2 sigma^2)) on -radius..radius, normalised to sum 1 (or scaled as the continuous pdf)."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum() if normalize else g / (np.sqrt(2.0 * np.pi) * sigma)


def correlate_separable(x: np.ndarray, kernel: np.ndarray, valid: bool = False) -> np.ndarray:
    """2-D correlation of each channel with ``outer(kernel, kernel)``; zero padding ('same') or 'valid'."""
    r = len(kernel) // 2
    out = ndimage.correlate1d(x, kernel, axis=-1, mode="constant")
    if valid:
        out = out[..., r : out.shape[-1] - r]
    out = ndimage.correlate1d(out, kernel, axis=-2, mode="constant")
    if valid:
        out = out[..., r : out.shape[-2] - r, :]
    return out


def fft_radius(height: int, width: int, divisor: float) -> np.ndarray:
    """|frequency| on the rfft2 grid, in the units of MATLAB ``freqspace([H W]) * [W H] / divisor``.

    freqspace gives (k - floor(n/2)) * 2/n for the shifted index k; scaled by n/divisor that is the signed DFT
    index times 2/divisor. Only its absolute value matters, so the rfft half-plane suffices.
    """
    v = np.fft.fftfreq(height, d=1.0 / height) * (2.0 / divisor)
    u = np.arange(width // 2 + 1, dtype=np.float64) * (2.0 / divisor)
    return np.sqrt(u[None, :] ** 2 + v[:, None] ** 2)


def fft_filter(x: np.ndarray, response: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """Circular filtering of each channel by a real, even frequency response given on the rfft2 grid."""
    h, w = x.shape[-2:]
    spectrum = sfft.rfft2(x.astype(dtype, copy=False), workers=1)
    spectrum *= response.astype(dtype, copy=False)
    return sfft.irfft2(spectrum, s=(h, w), workers=1)


def gaussian_filters(x: np.ndarray, kernels: list[np.ndarray]) -> list[np.ndarray]:
    """Zero-padded 'same' correlation of each channel with each ``outer(k, k)``, by FFT in ``x``'s precision.

    The image is zero-padded by at least the kernel radius (and to at least the kernel length) so that the
    circular convolution equals the linear one on the image support.
    """
    h, w = x.shape[-2:]
    radius = max(len(k) for k in kernels) // 2
    ph = sfft.next_fast_len(max(h + radius, 2 * radius + 1), real=True)
    pw = sfft.next_fast_len(max(w + radius, 2 * radius + 1), real=True)
    spectrum = sfft.rfft2(x, s=(ph, pw), workers=1)
    out = []
    for kernel in kernels:
        r = len(kernel) // 2
        col, row = np.zeros(ph), np.zeros(pw)
        col[: r + 1], col[ph - r :] = kernel[r:], kernel[:r]  # kernel centred on index 0, circularly
        row[: r + 1], row[pw - r :] = kernel[r:], kernel[:r]
        response = (sfft.fft(col)[:, None] * sfft.rfft(row)[None, :]).astype(spectrum.dtype)
        out.append(sfft.irfft2(spectrum * response, s=(ph, pw), workers=1)[..., :h, :w])
    return out


def block_sum(x: np.ndarray, size: int, dtype: type | None = None) -> np.ndarray:
    """Sums over non-overlapping size x size blocks, zero-padding partial blocks (MATLAB ``blkproc``)."""
    c, h, w = x.shape
    bh, bw = -(-h // size), -(-w // size)
    if (bh * size, bw * size) != (h, w):
        padded = np.zeros((c, bh * size, bw * size), dtype=x.dtype)
        padded[:, :h, :w] = x
        x = padded
    return x.reshape(c, bh, size, bw, size).sum(axis=(2, 4), dtype=dtype)


def entropy(counts: np.ndarray, axis: tuple[int, ...] | int = -1) -> np.ndarray:
    """Shannon entropy in nats of histograms ``counts`` along ``axis``."""
    total = counts.sum(axis=axis, keepdims=True)
    p = counts / np.where(total > 0, total, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=axis)


def histograms(levels: np.ndarray) -> np.ndarray:
    """(C, 256) counts of each channel of an int level stack (C, H, W)."""
    c = levels.shape[0]
    offsets = (np.arange(c, dtype=np.int64) * LEVELS)[:, None, None]
    return np.bincount((levels + offsets).ravel(), minlength=c * LEVELS).reshape(c, LEVELS)


def joint_histograms(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(C, 256, 256) joint counts of two int level stacks, broadcasting a single channel to C."""
    x, y = np.broadcast_arrays(x, y)
    c = x.shape[0]
    offsets = (np.arange(c, dtype=np.int64) * LEVELS * LEVELS)[:, None, None]
    index = (x * LEVELS + y + offsets).ravel()
    return np.bincount(index, minlength=c * LEVELS * LEVELS).reshape(c, LEVELS, LEVELS)


def channel_mean(values: np.ndarray) -> float:
    """Mean of per-channel scores (a single value stands for every channel)."""
    return float(np.mean(values))
