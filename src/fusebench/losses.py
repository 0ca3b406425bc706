"""Differentiable image losses shared by the learned methods (torch, NCHW tensors).

* :func:`ssim` / :func:`ms_ssim`: Wang et al.'s SSIM with an 11x11 Gaussian window (sigma 1.5) and
  ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``, computed over "valid" windows only (no padding), which is what
  the ``pytorch_msssim`` module copied into DenseFuse, NestFuse and many later fusion repositories does.
  Unlike that module, the dynamic range ``L`` is an explicit argument (``data_range``) instead of being
  guessed from the first image's maximum, so a loss does not silently change constants when an untrained
  network's output happens to stay below 128.
* :func:`sobel` / :func:`gradient_magnitude` / :func:`laplacian`: image gradients (reflect padding, so the
  output has the input's size), for the gradient losses of later methods.

Every function works channel by channel (depthwise convolution) on any float dtype and device.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = [
    "MS_SSIM_WEIGHTS",
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """SSIM map and contrast-structure map over valid windows: two ``N x C x (H-w+1) x (W-w+1)`` tensors.

    The window shrinks to ``min(window_size, H, W)`` for inputs smaller than it (as ``pytorch_msssim`` does).
    """
    _check_pair(x, y)
    channels = x.shape[1]
    size = min(window_size, x.shape[-2], x.shape[-1])
    window = gaussian_window(size, sigma, channels, x.dtype, x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    var_x = blur(x * x) - mu_xx
    var_y = blur(y * y) - mu_yy
    cov = blur(x * y) - mu_xy
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
_LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def _depthwise3x3(x: torch.Tensor, kernel: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW tensor, got shape {tuple(x.shape)}")
    channels = x.shape[1]
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device).expand(channels, 1, 3, 3)
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), k, groups=channels)


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel derivatives (d/dx, d/dy) with reflect padding; same shape as ``x``."""
    gx = _depthwise3x3(x, _SOBEL_X)
    gy = _depthwise3x3(x, tuple(zip(*_SOBEL_X, strict=True)))
    return gx, gy


def gradient_magnitude(x: torch.Tensor, norm: str = "l1") -> torch.Tensor:
    """``|gx| + |gy|`` (``norm="l1"``, the usual choice in fusion losses) or ``sqrt(gx^2 + gy^2)`` ("l2")."""
    gx, gy = sobel(x)
    if norm == "l1":
        return gx.abs() + gy.abs()
    if norm == "l2":
        return torch.sqrt(gx * gx + gy * gy + 1e-12)
    raise ValueError(f"norm must be 'l1' or 'l2', got {norm!r}")


def laplacian(x: torch.Tensor) -> torch.Tensor:
    """4-neighbour Laplacian with reflect padding; same shape as ``x``."""
    return _depthwise3x3(x, _LAPLACIAN)
