"""Batched torch implementations of the hot metrics (EN, SD, SF, AG, MI, SCD, CC, MSE, RMSE, PSNR, SSIM, VIF,
Qabf), on whatever device the tensors live (CPU or CUDA).

Each takes a :class:`TorchImages` batch and the same keyword parameters as the numpy implementation of the
same name (the reference, see tests/test_metrics_more.py) and returns one value per image, (N,) float64.
Preparation mirrors :meth:`fusebench.metrics.base.Convention.prepare` operation for operation. Moments that
suffer cancellation (SSIM, VIF) are taken in float64 on images shifted by their rounded mean, as in numpy;
Sobel gradients of 8-bit levels are exact in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ._ops import LEVELS, gaussian_1d, gaussian_window
from .base import Convention, register_torch


@dataclass(frozen=True)
class TorchImages:
    """A prepared batch: (N, C, H, W) float64 tensors on 0..value_range (sources may have C = 1)."""

    fused: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    channels: int
    value_range: float
    levels: bool

    @property
    def shape(self) -> tuple[int, int]:
        return self.fused.shape[-2], self.fused.shape[-1]


# ---------------------------------------------------------------- preparation


def _as_nchw(x: torch.Tensor, batched: bool, what: str) -> torch.Tensor:
    """Torch layout: (H, W), (C, H, W); batched (N, H, W) or (N, C, H, W); C in {1, 3}."""
    if not batched:
        x = x[None]
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"{what}: expected (N,) (C,) H, W with C in 1 or 3, got shape {tuple(x.shape)}")
    if min(x.shape[-2:]) < 2:
        raise ValueError(f"{what}: image of shape {tuple(x.shape)} is too small to score")
    return x


def _stack(conv: Convention, x: torch.Tensor, what: str, batched: bool) -> tuple[torch.Tensor, bool]:
    x = _as_nchw(x, batched, what)
    integral = x.dtype == torch.uint8
    if x.dtype == torch.uint8:
        scale = conv.value_range / 255.0
    elif x.is_floating_point():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{what}: image contains NaN or infinity")
        scale = conv.value_range / conv.input_range
    else:
        raise ValueError(f"{what}: expected uint8 or float pixels, got {x.dtype}")
    values = x.to(torch.float64)
    if scale != 1.0:
        values = values * scale
    if conv.round_input and not integral:
        levels = 255.0 / conv.value_range
        values = torch.clamp(torch.round(values * levels), 0.0, 255.0) / levels
        integral = True
    if values.shape[1] == 3:
        gray = (values[:, 0] == values[:, 1]).flatten(1).all(1) & (values[:, 0] == values[:, 2]).flatten(1).all(1)
        if bool(gray.all()):
            values = values[:, :1]
        elif conv.color == "luma":
            y = _luma(values, conv)
            values = torch.where(gray[:, None, None, None], values[:, :1], y)
            integral = integral and bool(conv.luma_round)
    return values, integral


def _luma(rgb: torch.Tensor, conv: Convention) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 1, H, W); see :func:`fusebench.metrics.base.luma`."""
    w = conv.luma_weights
    if conv.luma_arithmetic == "opencv_float32":
        scale = 255.0 / conv.value_range
        r, g, b = (rgb[:, k : k + 1] * scale for k in range(3))
        cr, cg, cb = (float(np.float32(c)) for c in w)
        t = (b * cb).to(torch.float32).to(torch.float64)
        t = (g * cg + t).to(torch.float32).to(torch.float64)
        gray = (r * cr + t).to(torch.float32).to(torch.float64) / scale
    else:
        gray = rgb[:, 0:1] * w[0] + rgb[:, 1:2] * w[1] + rgb[:, 2:3] * w[2]
    if conv.luma_round:
        levels = 255.0 / conv.value_range
        if conv.luma_round == "half_even":
            gray = torch.round(gray * levels) / levels
        else:
            gray = torch.floor(gray * levels + 0.5) / levels
    return gray


def prepare(conv: Convention, fused: torch.Tensor, a: torch.Tensor, b: torch.Tensor, batched: bool) -> TorchImages:
    stacks = [_stack(conv, x, what, batched) for x, what in ((fused, "fused"), (a, "source_a"), (b, "source_b"))]
    values = [s for s, _ in stacks]
    sizes = {tuple(v.shape[-2:]) for v in values}
    if len(sizes) != 1:
        raise ValueError(f"images differ in size: {sorted(sizes)}")
    n = max(v.shape[0] for v in values)
    values = [v.expand(n, *v.shape[1:]) if v.shape[0] == 1 else v for v in values]
    if len({v.shape[0] for v in values}) != 1:
        raise ValueError(f"batch sizes differ: {[v.shape[0] for v in values]}")
    channels = max(v.shape[1] for v in values)
    levels = conv.value_range == 255.0 and all(integral for _, integral in stacks)
    return TorchImages(values[0], values[1], values[2], channels, float(conv.value_range), levels)


# ---------------------------------------------------------------- building blocks


def _channel_mean(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(N, C) per-channel scores -> (N,), a single channel standing for every channel."""
    return x.expand(x.shape[0], channels).mean(dim=1) if x.shape[1] == 1 else x.mean(dim=1)


def _pair(first: torch.Tensor, second: torch.Tensor, pair: str) -> torch.Tensor:
    if pair == "sum":
        return first + second
    if pair == "mean":
        return (first + second) / 2.0
    raise ValueError(f"pair must be 'sum' or 'mean', not {pair!r}")


def _filter_valid(x: torch.Tensor, kernel: np.ndarray, stride: int = 1) -> torch.Tensor:
    """'valid' correlation of every (N, C) image with outer(kernel, kernel), separable, in ``x``'s dtype."""
    n, c, h, w = x.shape
    k = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    y = F.conv2d(x.reshape(n * c, 1, h, w), k.view(1, 1, 1, -1), stride=(1, stride))
    y = F.conv2d(y, k.view(1, 1, -1, 1), stride=(stride, 1))
    return y.reshape(n, c, *y.shape[-2:])


def _centred(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    shift = torch.round(x.mean(dim=(-2, -1), keepdim=True))
    return x - shift, shift


def _levels(x: torch.Tensor, value_range: float) -> torch.Tensor:
    if value_range != LEVELS - 1:
        x = x * ((LEVELS - 1) / value_range)
    return torch.clamp(x, 0, LEVELS - 1).to(torch.int64)


def _entropy(counts: torch.Tensor) -> torch.Tensor:
    """Entropy in nats along the last axis of counts."""
    total = counts.sum(dim=-1, keepdim=True).clamp_min(1)
    p = counts / total
    return -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(dim=-1)


def _corr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x, y = torch.broadcast_tensors(x, y)
    dx = x - x.mean(dim=(-2, -1), keepdim=True)
    dy = y - y.mean(dim=(-2, -1), keepdim=True)
    num = (dx * dy).sum(dim=(-2, -1))
    den = torch.sqrt((dx * dx).sum(dim=(-2, -1)) * (dy * dy).sum(dim=(-2, -1)))
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.zeros_like(den))


# ---------------------------------------------------------------- metrics


@register_torch("EN")
def entropy_metric(images: TorchImages, *, log_base: float = 2.0) -> torch.Tensor:
    levels = _levels(images.fused, images.value_range)
    n, c = levels.shape[:2]
    offsets = (torch.arange(n * c, device=levels.device) * LEVELS).view(n, c, 1, 1)
    counts = torch.bincount((levels + offsets).flatten(), minlength=n * c * LEVELS).view(n, c, LEVELS)
    return _channel_mean(_entropy(counts.to(torch.float64)) / math.log(log_base), images.channels)


@register_torch("SD")
def standard_deviation(images: TorchImages, *, ddof: int = 0) -> torch.Tensor:
    return _channel_mean(images.fused.std(dim=(-2, -1), correction=ddof), images.channels)


@register_torch("SF")
def spatial_frequency(images: TorchImages, *, layout: str = "per_channel", normalize: str = "pixels") -> torch.Tensor:
    f = images.fused
    if layout == "side_by_side":
        f = f.expand(f.shape[0], images.channels, *f.shape[2:])
        f = torch.cat(list(f.unbind(1)), dim=-1)[:, None]
    elif layout != "per_channel":
        raise ValueError(f"layout must be 'per_channel' or 'side_by_side', not {layout!r}")
    h, w = f.shape[-2:]
    if normalize == "pixels":
        row_count = col_count = h * w
    elif normalize == "differences":
        row_count, col_count = h * (w - 1), (h - 1) * w
    else:
        raise ValueError(f"normalize must be 'pixels' or 'differences', not {normalize!r}")
    rows = torch.diff(f, dim=-1).square().sum(dim=(-2, -1)) / row_count
    cols = torch.diff(f, dim=-2).square().sum(dim=(-2, -1)) / col_count
    return _channel_mean(torch.sqrt(rows + cols), images.channels)


@register_torch("AG")
def average_gradient(images: TorchImages, *, denominator: str = "interior") -> torch.Tensor:
    f = images.fused
    h, w = f.shape[-2:]
    fx, fy = torch.gradient(f, dim=(-1, -2))
    total = torch.sqrt((fx * fx + fy * fy) / 2.0).sum(dim=(-2, -1))
    if denominator == "interior":
        count = (h - 1) * (w - 1)
    elif denominator == "pixels":
        count = h * w
    else:
        raise ValueError(f"denominator must be 'interior' or 'pixels', not {denominator!r}")
    return _channel_mean(total / count, images.channels)


def _stretch(x: torch.Tensor) -> torch.Tensor:
    low = x.amin(dim=(-2, -1), keepdim=True)
    span = x.amax(dim=(-2, -1), keepdim=True) - low
    out = (x - low) / torch.where(span > 0, span, torch.ones_like(span)) * (LEVELS - 1)
    return torch.floor(out + 0.5)


@register_torch("MI")
def mutual_information(
    images: TorchImages, *, log_base: float = math.e, stretched: bool = True, pair: str = "sum"
) -> torch.Tensor:
    def levels(x: torch.Tensor) -> torch.Tensor:
        return _stretch(x).to(torch.int64) if stretched else _levels(x, images.value_range)

    f = levels(images.fused)
    scores = []
    for source in (images.a, images.b):
        x, y = torch.broadcast_tensors(levels(source), f)
        n, c = x.shape[:2]
        offsets = (torch.arange(n * c, device=x.device) * LEVELS * LEVELS).view(n, c, 1, 1)
        index = (x * LEVELS + y + offsets).flatten()
        joint = torch.bincount(index, minlength=n * c * LEVELS * LEVELS).view(n, c, LEVELS, LEVELS)
        joint = joint.to(torch.float64)
        h_joint = _entropy(joint.flatten(2))
        scores.append(_entropy(joint.sum(dim=3)) + _entropy(joint.sum(dim=2)) - h_joint)
    return _channel_mean(_pair(scores[0], scores[1], pair) / math.log(log_base), images.channels)


@register_torch("SCD")
def sum_of_correlations_of_differences(images: TorchImages) -> torch.Tensor:
    f, a, b = images.fused, images.a, images.b
    return _channel_mean(_corr(f - b, a) + _corr(f - a, b), images.channels)


@register_torch("CC")
def correlation_coefficient(images: TorchImages, *, pair: str = "mean") -> torch.Tensor:
    f = images.fused
    return _channel_mean(_pair(_corr(images.a, f), _corr(images.b, f), pair), images.channels)


def _errors(images: TorchImages, error: str) -> torch.Tensor:
    pixels = images.shape[0] * images.shape[1]
    terms = []
    for x in (images.a, images.b):
        sq = (x - images.fused).square().sum(dim=(-2, -1))
        if error == "vifb":
            terms.append(torch.sqrt(sq) / pixels)
        elif error == "mse":
            terms.append(sq / pixels)
        elif error == "rmse":
            terms.append(torch.sqrt(sq / pixels))
        else:
            raise ValueError(f"error must be 'vifb', 'mse' or 'rmse', not {error!r}")
    return (terms[0] + terms[1]) / 2.0


@register_torch("MSE")
def mse(images: TorchImages) -> torch.Tensor:
    return _channel_mean(_errors(images, "mse"), images.channels)


@register_torch("RMSE")
def rmse(images: TorchImages, *, error: str = "rmse") -> torch.Tensor:
    return _channel_mean(_errors(images, error), images.channels)


@register_torch("PSNR")
def psnr(images: TorchImages, *, error: str = "mse", peak: float | str | None = None) -> torch.Tensor:
    if peak == "fused_max":
        top = images.fused.amax(dim=(-2, -1))
    elif isinstance(peak, str):
        raise ValueError(f"peak must be a number, None or 'fused_max', not {peak!r}")
    else:
        top = torch.tensor(images.value_range if peak is None else peak, dtype=torch.float64)
    error_values = _errors(images, error)
    values = torch.where(error_values == 0, math.inf, 20.0 * torch.log10(top / torch.sqrt(error_values)))
    return _channel_mean(values.expand(images.fused.shape[0], -1), images.channels)


def _local_stats(x: torch.Tensor, f: torch.Tensor, kernel: np.ndarray) -> tuple[torch.Tensor, ...]:
    """(mu_x, mu_f, var_x, var_f, cov) over 'valid' windows, float64, from mean-shifted images."""
    xs, x_shift = _centred(x)
    fs, f_shift = _centred(f)
    xs, fs = torch.broadcast_tensors(xs, fs)
    c = xs.shape[1]
    moments = _filter_valid(torch.cat([xs, fs, xs * xs, fs * fs, xs * fs], dim=1), kernel)
    mu_x, mu_f, e_xx, e_ff, e_xf = moments.split(c, dim=1)
    var_x = e_xx - mu_x * mu_x
    var_f = e_ff - mu_f * mu_f
    cov = e_xf - mu_x * mu_f
    return mu_x + x_shift, mu_f + f_shift, var_x, var_f, cov


@register_torch("SSIM")
def ssim(
    images: TorchImages,
    *,
    window: str = "gaussian",
    size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float | None = None,
    sample_covariance: bool = False,
    pair: str = "sum",
) -> torch.Tensor:
    if size % 2 != 1:
        raise ValueError(f"window size must be odd, not {size}")
    if window == "gaussian":
        kernel = gaussian_1d(sigma, size // 2)
    elif window == "uniform":
        kernel = np.full(size, 1.0 / size)
    else:
        raise ValueError(f"window must be 'gaussian' or 'uniform', not {window!r}")
    if min(images.shape) < size:
        raise ValueError(f"SSIM window {size} must fit in the {images.shape} image")
    scale = size * size / (size * size - 1.0) if sample_covariance else 1.0
    span = images.value_range if data_range is None else data_range
    c1, c2 = (k1 * span) ** 2, (k2 * span) ** 2
    scores = []
    for x in (images.a, images.b):
        mu_x, mu_f, var_x, var_f, cov = _local_stats(x, images.fused, kernel)
        cs = (2.0 * scale * cov + c2) / (scale * (var_x + var_f) + c2)
        lum = (2.0 * mu_x * mu_f + c1) / (mu_x * mu_x + mu_f * mu_f + c1)
        scores.append((lum * cs).mean(dim=(-2, -1)))
    return _channel_mean(_pair(scores[0], scores[1], pair), images.channels)


@register_torch("VIF")
def vif(
    images: TorchImages, *, sigma_nsq: float = 2.0, eps: float = 1e-10, scales: int = 4, pair: str = "sum"
) -> torch.Tensor:
    unit = (images.value_range / 255.0) ** 2
    sigma_nsq, eps = sigma_nsq * unit, eps * unit
    xs = [_centred(images.a)[0], _centred(images.b)[0]]
    f = _centred(images.fused)[0]
    n = f.shape[0]
    num = torch.zeros(2, n, images.channels, dtype=torch.float64, device=f.device)
    den = torch.zeros_like(num)
    for s in range(1, scales + 1):
        size = 2 ** (scales - s + 1) + 1
        window = gaussian_window(size, size / 5.0)
        if s > 1:
            if min(f.shape[-2:]) < 3 * size - 2:
                break
            xs = [_filter_valid(x, window, stride=2) for x in xs]
            f = _filter_valid(f, window, stride=2)
        elif min(f.shape[-2:]) < size:
            raise ValueError(f"VIF: a {size}x{size} window does not fit in {tuple(f.shape[-2:])}")
        for k, x in enumerate(xs):
            xb, fb = torch.broadcast_tensors(x, f)
            c = xb.shape[1]
            m = _filter_valid(torch.cat([xb, fb, xb * xb, fb * fb, xb * fb], dim=1), window)
            mu_x, mu_f, e_xx, e_ff, e_xf = m.split(c, dim=1)
            s1 = torch.clamp_min(e_xx - mu_x * mu_x, 0.0)
            s2 = torch.clamp_min(e_ff - mu_f * mu_f, 0.0)
            s12 = e_xf - mu_x * mu_f
            g = s12 / (s1 + eps)
            sv = s2 - g * s12
            flat_x = s1 < eps
            g = torch.where(flat_x, 0.0, g)
            sv = torch.where(flat_x, s2, sv)
            s1 = torch.where(flat_x, 0.0, s1)
            flat_f = s2 < eps
            g = torch.where(flat_f, 0.0, g)
            sv = torch.where(flat_f, 0.0, sv)
            negative = g < 0
            sv = torch.where(negative, s2, sv)
            g = torch.where(negative, 0.0, g)
            sv = torch.where(sv <= eps, eps, sv)
            num_map = torch.log10(1.0 + g * g * s1 / (sv + sigma_nsq))
            den_map = torch.log10(1.0 + s1 / sigma_nsq)
            num[k] += num_map.sum(dim=(-2, -1)).expand(n, images.channels)
            den[k] += den_map.sum(dim=(-2, -1)).expand(n, images.channels)
    ratio = torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.ones_like(den))
    return _pair(ratio[0], ratio[1], pair).mean(dim=1)


def _sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) of :func:`fusebench.metrics._ops.sobel` with zero padding, float32."""
    n, c, h, w = x.shape
    p = F.pad(x.to(torch.float32).reshape(n * c, 1, h, w), (1, 1, 1, 1))
    sv = p[:, :, :-2, :] + 2.0 * p[:, :, 1:-1, :] + p[:, :, 2:, :]
    sh = p[:, :, :, :-2] + 2.0 * p[:, :, :, 1:-1] + p[:, :, :, 2:]
    dx = sv[:, :, :, 2:] - sv[:, :, :, :-2]
    dy = sh[:, :, 2:, :] - sh[:, :, :-2, :]
    return dx.reshape(n, c, h, w), dy.reshape(n, c, h, w)


def _edges(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    dx, dy = _sobel(x)
    square = dx * dx + dy * dy
    angle = torch.atan(dy / -dx)
    angle = torch.where(dx == 0, torch.tensor(np.float32(np.pi / 2), device=x.device), angle)
    return square, torch.sqrt(square), angle


@register_torch("Qabf")
def qabf(
    images: TorchImages,
    *,
    tg: float = 0.9994,
    kg: float = -15.0,
    dg: float = 0.5,
    ta: float = 0.9879,
    ka: float = -22.0,
    da: float = 0.8,
    gain: float = 1.0,
    equal_gradients: str = "one",
) -> torch.Tensor:
    if equal_gradients not in ("one", "fused"):
        raise ValueError(f"equal_gradients must be 'one' or 'fused', not {equal_gradients!r}")
    sq_f, g_f, a_f = _edges(images.fused)
    num = torch.zeros(images.fused.shape[0], images.channels, dtype=torch.float64, device=g_f.device)
    den = torch.zeros_like(num)
    for source in (images.a, images.b):
        sq_x, g_x, a_x = _edges(source)
        strength = torch.minimum(g_x, g_f) / torch.maximum(g_x, g_f)
        equal = sq_x == sq_f
        fill = g_f * np.float32(gain) if equal_gradients == "fused" else torch.ones_like(g_f)
        strength = torch.where(equal, fill, strength)
        orientation = 1.0 - torch.abs(a_x - a_f) * np.float32(2.0 / np.pi)
        q = tg / (1.0 + torch.exp(kg * (strength - dg)))
        q = q * (ta / (1.0 + torch.exp(ka * (orientation - da))))
        num += (q * g_x).sum(dim=(-2, -1), dtype=torch.float64)
        den += g_x.expand_as(q).sum(dim=(-2, -1), dtype=torch.float64)
    ratio = torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)), torch.zeros_like(den))
    return ratio.mean(dim=1)


def run(name: str, images: TorchImages, params: dict[str, Any]) -> np.ndarray:
    """Score a batch with the torch implementation of ``name``; (N,) float64 numpy."""
    from .base import TORCH_IMPLEMENTATIONS

    with torch.no_grad():
        values = TORCH_IMPLEMENTATIONS[name](images, **params)
    return values.detach().to("cpu", torch.float64).numpy()
