"""Vectorised building blocks shared by the metrics; all work on (C, H, W) stacks of channels."""

from __future__ import annotations

from collections import OrderedDict

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


# ---------------------------------------------------------------- windows and 'valid' filtering


def gaussian_window(size: int, sigma: float) -> np.ndarray:
    """The separable factor of MATLAB ``fspecial('gaussian', size, sigma)``: exp(-x^2 / 2 sigma^2), sum 1.

    ``outer(g, g)`` equals fspecial's normalised 2-D window (whose ``h < eps * max(h)`` truncation never
    triggers for the windows used here: their corner ratio is at least exp(-size^2 / 8 sigma^2) > 1e-6).
    """
    if size % 2 != 1:
        raise ValueError(f"window size must be odd, not {size}")
    return gaussian_1d(sigma, size // 2)


def _fold_pass(x: np.ndarray, kernel: np.ndarray, axis: int, step: int = 1) -> np.ndarray:
    """'valid' correlation of ``x`` with a symmetric ``kernel`` along ``axis`` (-1 or -2) by shift-and-add,
    pairing the taps that share a weight; keeps every ``step``-th output. Runs in ``x``'s precision."""
    k = len(kernel)
    half = k // 2
    n = x.shape[axis]
    count = (n - k) // step + 1

    def tap(i: int) -> np.ndarray:
        index = [slice(None)] * x.ndim
        index[axis] = slice(i, i + step * (count - 1) + 1, step)
        return x[tuple(index)]

    out = tap(half) * kernel[half]
    tmp = np.empty_like(out)
    for i in range(half):
        np.add(tap(i), tap(k - 1 - i), out=tmp)
        tmp *= kernel[i]
        out += tmp
    return out


def _symmetric(kernel: np.ndarray) -> bool:
    return len(kernel) % 2 == 1 and bool(np.array_equal(kernel, kernel[::-1]))


_SPECTRA: OrderedDict = OrderedDict()


def _kernel_spectrum(height: int, width: int, kernel: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Full-grid DFT of outer(kernel, kernel) centred circularly on the origin: real for a symmetric kernel
    (imaginary rounding dropped). Remembered for the last few shapes."""
    key = (height, width, kernel.tobytes(), np.dtype(dtype).str)
    spectrum = _SPECTRA.pop(key, None)
    if spectrum is None:
        r = len(kernel) // 2
        col, row = np.zeros(height), np.zeros(width)
        col[: r + 1], col[height - r :] = kernel[r:], kernel[:r]
        row[: r + 1], row[width - r :] = kernel[r:], kernel[:r]
        spectrum = (sfft.fft(col).real[:, None] * sfft.fft(row).real[None, :]).astype(dtype)
        while len(_SPECTRA) >= 16:
            _SPECTRA.popitem(last=False)
    _SPECTRA[key] = spectrum
    return spectrum


def _fft_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """:func:`filter_valid` by FFT for a symmetric kernel: maps are packed in pairs as the real and imaginary
    parts of complex images (the kernel is real and even, so each part is filtered on its own), which avoids
    pocketfft's slow complex-to-real multi-dimensional transform."""
    if not _symmetric(kernel):
        raise ValueError("the FFT path needs a symmetric kernel")
    h, w = x.shape[-2:]
    r = len(kernel) // 2
    lead = x.shape[:-2]
    maps = x.reshape(-1, h, w)
    real_type = np.float32 if x.dtype == np.float32 else np.float64
    complex_type = np.complex64 if real_type is np.float32 else np.complex128
    n = len(maps)
    packed = np.empty(((n + 1) // 2, h, w), dtype=complex_type)
    packed.real = maps[0::2]
    packed.imag[: n // 2] = maps[1::2]
    if n % 2:
        packed.imag[-1] = 0.0
    spectrum = sfft.fft2(packed, workers=1, overwrite_x=True)
    spectrum *= _kernel_spectrum(h, w, kernel, real_type)
    filtered = sfft.ifft2(spectrum, workers=1, overwrite_x=True)[:, r : h - r, r : w - r]
    out = np.empty((n, h - 2 * r, w - 2 * r), dtype=real_type)
    out[0::2] = filtered.real
    out[1::2] = filtered.imag[: n // 2]
    return out.reshape(*lead, h - 2 * r, w - 2 * r)


def filter_valid(x: np.ndarray, kernel: np.ndarray, method: str = "auto") -> np.ndarray:
    """'valid' 2-D correlation of every image of a stack (..., H, W) with ``outer(kernel, kernel)``.

    ``method`` "direct": separable shift-and-add (symmetric kernels fold their taps), in ``x``'s precision;
    "fft": one rfft2 of the whole stack, without padding (circular wrap-around only touches the discarded
    border); "auto": FFT for windows of 11 taps or more on images of 256x256 or more, else direct. Both are
    exact to rounding (about 1e-16 relative in float64).
    """
    k = len(kernel)
    h, w = x.shape[-2:]
    if h < k or w < k:
        raise ValueError(f"a {k}x{k} window does not fit in a {h}x{w} image")
    if method == "auto":
        method = "fft" if k >= 11 and h * w >= 65536 else "direct"
    if method == "fft":
        return _fft_valid(x, kernel)
    if method != "direct":
        raise ValueError(f"method must be 'auto', 'direct' or 'fft', not {method!r}")
    kernel = kernel.astype(x.dtype)
    if not _symmetric(kernel):
        out = ndimage.correlate1d(x, kernel, axis=-1, mode="constant")[..., k // 2 : w - k // 2]
        return ndimage.correlate1d(out, kernel, axis=-2, mode="constant")[..., k // 2 : h - k // 2, :]
    return _fold_blocked(x, kernel)


#: rows per block of :func:`_fold_blocked` (all maps of a block stay in cache through the tap loop)
BLOCK_ROWS = 16


def _fold_blocked(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering by :func:`_fold_pass`, in blocks of rows: every tap of a pass runs over a
    block that fits in cache instead of streaming the whole stack through memory once per tap."""
    k = len(kernel)
    h, w = x.shape[-2:]
    lead = x.shape[:-2]
    if h * w * int(np.prod(lead, dtype=np.int64)) * x.itemsize < (1 << 20):
        return _fold_pass(_fold_pass(x, kernel, -1), kernel, -2)
    rows = np.empty((*lead, h, w - k + 1), dtype=x.dtype)
    for top in range(0, h, BLOCK_ROWS):
        rows[..., top : top + BLOCK_ROWS, :] = _fold_pass(x[..., top : top + BLOCK_ROWS, :], kernel, -1)
    out = np.empty((*lead, h - k + 1, w - k + 1), dtype=x.dtype)
    for top in range(0, h - k + 1, BLOCK_ROWS):
        bottom = min(top + BLOCK_ROWS, h - k + 1)
        out[..., top:bottom, :] = _fold_pass(rows[..., top : bottom + k - 1, :], kernel, -2)
    return out


def downsample_valid(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``filter_valid(x, kernel)[..., ::2, ::2]``, computing only the kept outputs."""
    kernel = kernel.astype(x.dtype)
    if not _symmetric(kernel):
        return filter_valid(x, kernel, "direct")[..., ::2, ::2]
    return _fold_pass(_fold_pass(x, kernel, -1, step=2), kernel, -2, step=2)


def box_valid(x: np.ndarray, size: int) -> np.ndarray:
    """'valid' mean over size x size windows of every image of a stack (..., H, W), in ``x``'s precision."""
    return filter_valid(x, np.full(size, 1.0 / size, dtype=x.dtype), "direct")


def safe_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson correlation of each channel pair of (C, H, W) stacks (broadcast); 0 where either is flat."""
    x, y = np.broadcast_arrays(x, y)
    dx = x - x.mean(axis=(-2, -1), keepdims=True)
    dy = y - y.mean(axis=(-2, -1), keepdims=True)
    num = np.einsum("chw,chw->c", dx, dy)
    den = np.sqrt(np.einsum("chw,chw->c", dx, dx) * np.einsum("chw,chw->c", dy, dy))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
