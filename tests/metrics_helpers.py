"""Helpers shared by the metric tests: textured synthetic images."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth(rng: np.random.Generator, shape: tuple[int, ...], scale: float = 6.0) -> np.ndarray:
    """Textured test image spanning 0..255 exactly (uint8): blurred noise plus a ramp."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=(scale, scale) + (0,) * (len(shape) - 2))
    ramp = np.linspace(-1, 1, shape[1])[None, :] if len(shape) == 2 else np.linspace(-1, 1, shape[1])[None, :, None]
    x = noise / noise.std() + ramp
    low, high = x.min(axis=(0, 1), keepdims=True), x.max(axis=(0, 1), keepdims=True)
    return np.round((x - low) / (high - low) * 255).astype(np.uint8)  # each channel spans 0..255


def synthetic_triplet(seed: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fused RGB, visible RGB, infrared gray) uint8 images: the fused one a clipped mix of the sources."""
    rng = np.random.default_rng(seed)
    vi = smooth(rng, (height, width, 3))
    ir = smooth(rng, (height, width))
    fused = np.clip(0.6 * vi + 0.5 * ir[..., None] - 20, 0, 255).astype(np.uint8)
    return fused, vi, ir
