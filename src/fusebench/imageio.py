"""Reading and writing images with one convention for the whole benchmark.

Images are returned as float32 arrays in [0, 1]: HxW for gray, HxWx3 for colour. Many benchmark files store
gray images as three identical channels (TNO, CDDFuse's medical sets); those are read as gray so that
"is this source colour?" has one answer everywhere.

Deeper gray files are brought to the 8-bit levels every convention scores, never clipped: 16-bit (PNG, TIFF)
as ``round(v / 257)`` (65535 -> 255 exactly), 32-bit integer TIFF as ``round(v * 255 / (2**31 - 1))`` (by
the maximum of the type; negative values are refused), float TIFF as ``round(v * 255)`` when every value is
in [0, 1] (anything else is refused: its scale is unknown). Colour files with more than 8 bits per channel
are refused (Pillow would silently keep only the high byte).
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
    """Decode ``path`` (with Pillow) to uint8, HxW if gray (incl. RGB-encoded gray) else HxWx3.

    16-bit, 32-bit integer and float gray images are scaled to 0-255 as the module docstring says.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such image file")
    try:
        with Image.open(path) as img:
            raw_modes = [str(tile.args if isinstance(tile.args, str) else tile.args[0]) for tile in img.tile]
            img.load()
            if img.mode in ("L", "1"):
                array = np.asarray(img.convert("L"))
            elif img.mode.startswith("I") or img.mode.startswith("F"):
                array = _deep_gray_to_uint8(np.asarray(img), any(";16" in raw for raw in raw_modes), path)
            else:
                if any(_deep_raw_mode(raw) for raw in raw_modes):
                    raise ImageReadError(
                        f"{path}: colour image with more than 8 bits per channel ({img.mode}, stored as "
                        f"{', '.join(sorted(set(raw_modes)))}); fusebench reads 8-bit colour and 8/16/32-bit or "
                        "float gray images: save it as 8-bit colour (e.g. scaled by 1/257) or as gray"
                    )
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


def _deep_raw_mode(raw_mode: str) -> bool:
    """Whether a Pillow decoder raw mode stores more than 8 bits per channel (e.g. "RGB;16B", "RGBA;16N")."""
    return any(f";{bits}" in raw_mode for bits in ("16", "32")) or raw_mode.startswith("F")


def _deep_gray_to_uint8(array: np.ndarray, stored_16bit: bool, path: Path) -> np.ndarray:
    """A 16-bit, 32-bit integer or float gray image on 8-bit levels (rules in the module docstring).

    ``stored_16bit``: the file stores 16-bit samples (some Pillow versions decode them into int32 mode "I").
    """
    if array.dtype.kind == "f":
        values = array.astype(np.float64)
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            raise ImageReadError(
                f"{path}: float image with values in [{np.nanmin(values):.4g}, {np.nanmax(values):.4g}]; "
                "fusebench reads float images only when every value is in [0, 1] (scaled by 255): rescale it "
                "to [0, 1] or save it as 8/16-bit"
            )
        return np.rint(values * 255.0).astype(np.uint8)
    if array.dtype.kind not in "ui":
        raise ImageReadError(f"{path}: unsupported pixel type {array.dtype}")
    if array.dtype.itemsize == 1:
        return array.astype(np.uint8)
    if array.min() < 0:
        raise ImageReadError(
            f"{path}: signed integer image with negative values (minimum {array.min()}); save it as unsigned "
            "8/16-bit or as float in [0, 1]"
        )
    top = 65535.0 if stored_16bit or array.dtype.itemsize == 2 else float(np.iinfo(array.dtype).max)
    return np.rint(array.astype(np.float64) * (255.0 / top)).astype(np.uint8)


def _is_gray_rgb(array: np.ndarray) -> bool:
    return bool(np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]))
