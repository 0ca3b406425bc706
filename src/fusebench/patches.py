"""Training patches: crop co-registered source pairs into one compact array per (dataset, size).

Patches are taken from the gray (luma) version of each source, as the fusion networks see them, and stored
as a uint8 array of shape Nx2xSxS (source a, source b) in a ``.npy`` file that training memory-maps.
Patches where either source is nearly flat are dropped, as in CDDFuse's data preparation: the spread
between the 10th and 90th percentile, relative to the full 0-255 range, must reach ``min_contrast``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path
from .color import luminance
from .imageio import read_image, to_uint8


@dataclass(frozen=True)
class PatchSettings:
    size: int = 128
    stride: int = 200
    min_contrast: float = 0.1

    def __post_init__(self) -> None:
        if self.size < 8 or self.stride < 1:
            raise ValueError(f"patch size must be >= 8 and stride >= 1, got {self.size}, {self.stride}")
        if not 0.0 <= self.min_contrast < 1.0:
            raise ValueError(f"min_contrast must be in [0, 1), got {self.min_contrast}")


def contrast(patch: np.ndarray) -> float:
    """(p90 - p10) / 255 of a uint8 patch."""
    lo, hi = np.percentile(patch, [10, 90])
    return float(hi - lo) / 255.0


def crop_pair(a: np.ndarray, b: np.ndarray, settings: PatchSettings) -> np.ndarray:
    """All kept Sx S windows of a registered uint8 pair on a regular grid, as Nx2xSxS."""
    if a.shape != b.shape:
        raise ValueError(f"sources differ in size: {a.shape} vs {b.shape}")
    s, step = settings.size, settings.stride
    h, w = a.shape
    kept = [
        np.stack([a[y : y + s, x : x + s], b[y : y + s, x : x + s]])
        for y in range(0, h - s + 1, step)
        for x in range(0, w - s + 1, step)
    ]
    kept = [p for p in kept if min(contrast(p[0]), contrast(p[1])) >= settings.min_contrast]
    return np.stack(kept) if kept else np.empty((0, 2, s, s), dtype=np.uint8)


def make_patches(
    pairs: Sequence[tuple[str, Path, Path]],
    out: Path,
    settings: PatchSettings,
    progress: bool = True,
) -> int:
    """Crop every (name, path_a, path_b) pair into ``out`` (.npy) plus ``out``.json metadata; return N."""
    chunks = []
    for _name, path_a, path_b in tqdm(pairs, desc=f"patches {out.stem}", disable=not progress, unit="pair"):
        a = to_uint8(luminance(read_image(path_a)))
        b = to_uint8(luminance(read_image(path_b)))
        if a.shape != b.shape:
            raise ValueError(f"{path_a} and {path_b} differ in size: {a.shape} vs {b.shape}")
        chunks.append(crop_pair(a, b, settings))
    patches = np.concatenate(chunks) if chunks else np.empty((0, 2, settings.size, settings.size), np.uint8)
    if len(patches) == 0:
        raise ValueError(
            f"no patch of size {settings.size} passed the contrast filter in {len(pairs)} pairs; "
            "lower patch size or min_contrast"
        )
    meta = {"count": int(len(patches)), "pairs": [p[0] for p in pairs], **asdict(settings)}
    with atomic_path(out) as tmp, tmp.open("wb") as f:
        np.save(f, patches)
    with atomic_path(out.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
    return len(patches)


def load_patches(path: Path) -> np.ndarray:
    """Memory-map a patch array written by :func:`make_patches`."""
    patches = np.load(path, mmap_mode="r")
    if patches.ndim != 4 or patches.shape[1] != 2 or patches.dtype != np.uint8:
        raise ValueError(f"{path}: not a fusebench patch file (shape {patches.shape}, dtype {patches.dtype})")
    return patches
