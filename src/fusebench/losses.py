"""Differentiable image losses shared by the learned methods (torch, NCHW tensors).

* :func:`ssim` / :func:`ms_ssim`: Wang et al.'s SSIM with an 11x11 Gaussian window (sigma 1.5) and
  ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, computed over "valid" windows only (no padding), which is what
  the ``pytorch_msssim`` module copied into DenseFuse, NestFuse and many later fusion repositories does.
  Unlike that module, the dynamic range ``L`` is an explicit argument (``data_range``) instead of being
  guessed from the first image's maximum, so a loss does not silently change constants when an untrained
  network's output happens to stay below 128.
* :func:`sobel` / :func:`gradient_magnitude` / :func:`laplacian` (and :func:`conv3x3` under them): image
  gradients of the input's size, for the gradient losses of later methods.

The methods' official codes differ in border handling, so the padding is an argument everywhere
(``"reflect"`` the default, ``"zeros"`` for TensorFlow "SAME" / ``Conv2d(padding=1)``, ``"replicate"`` for
kornia's filters), as are the Sobel scale and, for SSIM, padded ("same") instead of valid maps: each method
calls these with its official choices instead of keeping its own copy.

Every function works channel by channel (depthwise convolution) on any float dtype and device.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = [
    "MS_SSIM_WEIGHTS",
    "PADDINGS",
    "conv3x3",
    "gaussian_window",
    "gradient_magnitude",
    "laplacian",
    "ms_ssim",
    "sobel",
    "ssim",
    "ssim_map",
]

#: Wang, Simoncelli & Bovik (2003): the five scale weights of MS-SSIM.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: border handling of every filter here: F.pad modes, "zeros" being a convolution with zero padding
PADDINGS = ("reflect", "zeros", "replicate")


def _pad(x: torch.Tensor, radius: int, padding: str) -> torch.Tensor:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    return F.pad(x, (radius,) * 4, mode="constant" if padding == "zeros" else padding)


@functools.lru_cache(maxsize=32)
def _gaussian_1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size // 2)
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    return g / g.sum()


def gaussian_window(
    size: int = 11,
    sigma: float = 1.5,
    channels: int = 1,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Normalised 2-D Gaussian as a depthwise kernel of shape ``channels x 1 x size x size``."""
    g = _gaussian_1d(int(size), float(sigma))
    window = torch.outer(g, g).to(dtype=dtype, device=device)
    return window.expand(channels, 1, size, size).contiguous()


def _check_pair(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"expected two NCHW tensors of the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")


def ssim_map(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    padding: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM map and contrast-structure map over valid windows: two ``N x C x (H-w+1) x (W-w+1)`` tensors.

    The window shrinks to ``min(window_size, H, W)`` for inputs smaller than it (as ``pytorch_msssim`` does).
    ``padding`` (one of :data:`PADDINGS`): pad both images by ``window_size // 2`` first, giving maps of the
    input's size (e.g. kornia's SSIM loss, reflect).
    """
    _check_pair(x, y)
    if padding is not None:
        x, y = _pad(x, window_size // 2, padding), _pad(y, window_size // 2, padding)
    channels = x.shape[1]
    size = min(window_size, x.shape[-2], x.shape[-1])
    # The five local means in one separable pass (the Gaussian is the outer product of a 1-D one): 2 x 11
    # taps instead of 11 x 11, 7x faster for CDDFuse's loss at 16 x 128 x 128 than one 2-D filter per map,
    # equal to it within float32 rounding (tests/test_losses.py).
    g = _gaussian_1d(size, float(sigma)).to(dtype=x.dtype, device=x.device)
    stacked = torch.cat((x, y, x * x, y * y, x * y), dim=1)
    groups = stacked.shape[1]
    stacked = F.conv2d(stacked, g.view(1, 1, size, 1).expand(groups, 1, size, 1).contiguous(), groups=groups)
    stacked = F.conv2d(stacked, g.view(1, 1, 1, size).expand(groups, 1, 1, size).contiguous(), groups=groups)
    mu_x, mu_y, mean_xx, mean_yy, mean_xy = stacked.split(channels, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = mean_xx - mu_xx
    var_y = mean_yy - mu_yy
    cov = mean_xy - mu_xy
    c1 = (k1 * data_range) ** 2
    c2 = (k2 * data_range) ** 2
    cs = (2.0 * cov + c2) / (var_x + var_y + c2)
    return (2.0 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs, cs


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Mean SSIM of two NCHW batches; ``reduction="none"`` gives one value per image (mean over C, H, W)."""
    s, _ = ssim_map(x, y, data_range, window_size, sigma)
    return _reduce(s, reduction)


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    weights: tuple[float, ...] = MS_SSIM_WEIGHTS,
    normalize: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """Multi-scale SSIM (2x2 average pooling between scales).

    ``normalize=True`` maps each scale's value from [-1, 1] to [0, 1] before the powers, as the
    ``pytorch_msssim.msssim(..., normalize=True)`` call of DenseFuse's PyTorch training script does (it avoids
    NaN from negative values raised to fractional powers; it is not the published definition).
    """
    w = torch.tensor(weights, dtype=x.dtype, device=x.device)
    sims, css = [], []
    for level in range(len(weights)):
        s, cs = ssim_map(x, y, data_range, window_size, sigma)
        sims.append(s.mean(dim=(1, 2, 3)))
        css.append(cs.mean(dim=(1, 2, 3)))
        if level < len(weights) - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    sim = torch.stack(sims, dim=1)  # N x levels
    cs = torch.stack(css, dim=1)
    if normalize:
        sim, cs = (sim + 1) / 2, (cs + 1) / 2
    value = torch.prod(cs[:, :-1] ** w[:-1], dim=1) * sim[:, -1] ** w[-1]
    return _reduce(value, reduction)


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "none":
        return values.reshape(values.shape[0], -1).mean(dim=1)
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
_SOBEL_Y = tuple(zip(*_SOBEL_X, strict=True))
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def conv3x3(
    x: torch.Tensor, kernel: tuple[tuple[float, ...], ...], padding: str = "reflect", scale: float = 1.0
) -> torch.Tensor:
    """Correlate every channel of an NCHW tensor with the 3x3 ``kernel`` times ``scale``; same size as ``x``."""
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW tensor, got shape {tuple(x.shape)}")
    channels = x.shape[1]
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device)
    if scale != 1.0:
        k = k * scale
    k = k.expand(channels, 1, 3, 3)
    if padding == "zeros":
        return F.conv2d(x, k, padding=1, groups=channels)
    return F.conv2d(_pad(x, 1, padding), k, groups=channels)


def sobel(x: torch.Tensor, padding: str = "reflect", scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (d/dx, d/dy), kernels times ``scale`` (kornia's ``SpatialGradient``: 1/8); same shape
    as ``x``."""
    return conv3x3(x, _SOBEL_X, padding, scale), conv3x3(x, _SOBEL_Y, padding, scale)


def gradient_magnitude(x: torch.Tensor, norm: str = "l1", padding: str = "reflect", scale: float = 1.0) -> torch.Tensor:
    """``|gx| + |gy|`` (``norm="l1"``, the usual choice in fusion losses) or ``sqrt(gx^2 + gy^2)`` ("l2") of
    :func:`sobel`."""
    gx, gy = sobel(x, padding, scale)
    if norm == "l1":
        return gx.abs() + gy.abs()
    if norm == "l2":
        return torch.sqrt(gx * gx + gy * gy + 1e-12)
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


def laplacian(x: torch.Tensor, padding: str = "reflect") -> torch.Tensor:
    """4-neighbour Laplacian; same shape as ``x``."""
    return conv3x3(x, _LAPLACIAN, padding)
