"""Non-learned baselines: no training, no weights, deterministic."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from scipy import ndimage

from .base import METHODS, FusionMethod

# Burt & Adelson's 5-tap binomial generating kernel.
_KERNEL = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(image: np.ndarray) -> np.ndarray:
    out = ndimage.convolve1d(image, _KERNEL, axis=0, mode="reflect")
    return ndimage.convolve1d(out, _KERNEL, axis=1, mode="reflect")


def _down(image: np.ndarray) -> np.ndarray:
    return _blur(image)[::2, ::2]


def _up(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    up = np.zeros(shape, dtype=image.dtype)
    up[::2, ::2] = image
    return 4.0 * _blur(up)  # x4: three of four samples are zero


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    pyramid = []
    current = image.astype(np.float64)
    for _ in range(levels - 1):
        if min(current.shape) < 2:
            break
        smaller = _down(current)
        pyramid.append(current - _up(smaller, current.shape))
        current = smaller
    pyramid.append(current)
    return pyramid


def reconstruct(pyramid: list[np.ndarray]) -> np.ndarray:
    image = pyramid[-1]
    for detail in reversed(pyramid[:-1]):
        image = detail + _up(image, detail.shape)
    return image


@METHODS.register("average")
class Average(FusionMethod):
    name: ClassVar[str] = "average"

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((a.astype(np.float32) + b.astype(np.float32)) / 2.0).astype(np.float32)


@METHODS.register("laplacian")
class LaplacianPyramid(FusionMethod):
    """Burt & Adelson (1983) Laplacian pyramid fusion: detail bands by max-absolute, base by mean."""

    name: ClassVar[str] = "laplacian"

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        levels = int(self.options.get("levels", 4))
        if levels < 1:
            raise ValueError(f"laplacian: levels must be >= 1, got {levels}")
        pa, pb = laplacian_pyramid(a, levels), laplacian_pyramid(b, levels)
        fused = [np.where(np.abs(da) >= np.abs(db), da, db) for da, db in zip(pa[:-1], pb[:-1], strict=True)]
        fused.append((pa[-1] + pb[-1]) / 2.0)
        return np.clip(reconstruct(fused), 0.0, 1.0).astype(np.float32)
