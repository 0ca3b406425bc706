"""Reading and writing images with one convention for the whole benchmark.

Images are returned as float32 arrays in [0, 1]: HxW for gray, HxWx3 for colour. Many benchmark files store
gray images as three identical channels (TNO, CDDFuse's medical sets); those are read as gray so that
"is this source colour?" has one answer everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file is missing, truncated or not an image; the message names the file."""


def read_uint8(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode ``path`` (with Pillow) to uint8, HxW if gray (incl. RGB-encoded gray) else HxWx3."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("L", "1"):
                array = np.asarray(img.convert("L"))
            else:
                array = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({exc}); the file is corrupt or truncated") from exc
    if array.ndim == 3 and _is_gray_rgb(array):
        array = array[..., 0]
    return np.ascontiguousarray(array)


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Float32 image in [0, 1]: HxW for gray, HxWx3 for colour."""
    return read_uint8(path).astype(np.float32) / 255.0


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding to nearest (NaN is an error, not black)."""
    if np.isnan(image).any():
        raise ValueError("image contains NaN")
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


def write_png(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Write a [0, 1] float (or uint8) image as 8-bit PNG, atomically."""
    array = image if image.dtype == np.uint8 else to_uint8(image)
    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def list_images(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Map file stem -> path for the images directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith("."):
            if path.stem in found:
                raise ValueError(f"{folder}: two images share the stem {path.stem!r}")
            found[path.stem] = path
    return found


def _is_gray_rgb(array: np.ndarray) -> bool:
    return bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]))
