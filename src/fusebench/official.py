"""The image reading, colour and saving conventions of the authors' test scripts, stated once.

Under ``protocol: official`` a method runs its published test-time procedure end to end
(``fuse_official(path_a, path_b)``, see :mod:`fusebench.fuse`). Those procedures differ from fusebench's own
colour rule (:mod:`fusebench.color`) in how they decode the sources, which grey or luma formula they use, how
they scale and round the output and how they put colour back. The building blocks are here, each bit-exact to
the library call it stands for, as measured in ``reference/official-outputs/<method>/README.md`` of the data
bundle:

* readers return what the official code sees: :func:`pil_rgb` (Pillow ``convert("RGB")``, which is also what
  ``cv2.imread(IMREAD_COLOR)`` decodes, in RGB order), :func:`pil_gray` (``scipy.misc.imread(mode="L")``),
  :func:`scipy_luma` (``scipy.misc.imread(flatten=True, mode="YCbCr")``);
* colour conversions: OpenCV's 8-bit fixed-point ``BGR2GRAY`` and ``BGR2YCrCb`` / ``YCrCb2BGR``
  (:func:`opencv_gray`, :func:`opencv_crcb`, :func:`opencv_ycrcb_to_rgb`) and its float ``RGB2YCrCb`` with
  the float chroma offset 0.5 (:func:`opencv_float_ycrcb`, :func:`opencv_float_ycrcb_to_rgb`);
* savers turn the float result into the uint8 pixels the official save call writes: :func:`scipy_bytescale`
  (``scipy.misc.imsave`` of a float array: per-image min-max stretch), :func:`imageio_as_uint8`
  (``skimage.io.imsave`` via imageio 2.26), :func:`torch_save_image_uint8` (torchvision ``save_image``).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from .imageio import ImageReadError

F32 = np.float32


def _open(path: str | os.PathLike[str], mode: str) -> Image.Image:
    try:
        with Image.open(path) as img:
            img.load()
            return img.copy() if img.mode == mode else img.convert(mode)
    except (FileNotFoundError, OSError, SyntaxError) as exc:
        raise ImageReadError(f"{path}: cannot decode image ({exc})") from exc


def pil_rgb(path: str | os.PathLike[str]) -> np.ndarray:
    """HxWx3 uint8, RGB order: Pillow ``convert("RGB")`` (grey replicated, alpha dropped). OpenCV's
    ``imread(IMREAD_COLOR)`` decodes PNG and these JPEGs to the same pixels (BGR order)."""
    return np.asarray(_open(path, "RGB"))


def pil_gray(path: str | os.PathLike[str]) -> np.ndarray:
    """HxW uint8: ``scipy.misc.imread(path, mode="L")`` = Pillow ``convert("L")``, ITU-R 601 luma in 16-bit fixed
    point, ``(19595 R + 38470 G + 7471 B + 32768) >> 16``."""
    return np.asarray(_open(path, "L"))


def scipy_luma(path: str | os.PathLike[str]) -> np.ndarray:
    """HxW float32 on 0..255: ``scipy.misc.imread(path, flatten=True, mode="YCbCr")`` (SciPy <= 1.1), i.e.
    Pillow ``convert("YCbCr")`` then ``convert("F")``. Pillow goes YCbCr -> RGB (8-bit) -> F, so this is the luma
    ``(299 R + 587 G + 114 B) / 1000`` of the RGB -> YCbCr -> RGB round-tripped image."""
    return np.asarray(_open(path, "YCbCr").convert("F"), dtype=np.float32)


def is_gray_rgb(rgb: np.ndarray) -> bool:
    """R == G == B at every pixel (how the official scripts that test for it decide "grey")."""
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 1], rgb[..., 2]))


# ------------------------------------------------------------------------------- OpenCV, 8-bit fixed point
def _rgb_int(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return r, g, b


def opencv_gray(rgb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(bgr, COLOR_BGR2GRAY)`` for uint8: ``(3735 B + 19235 G + 9798 R + 16384) >> 15``."""
    r, g, b = _rgb_int(rgb)
    return ((3735 * b + 19235 * g + 9798 * r + 16384) >> 15).astype(np.uint8)


def opencv_crcb(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(Cr, Cb) of ``cv2.cvtColor(bgr, COLOR_BGR2YCrCb)`` for uint8 (14-bit fixed point, saturated)."""
    r, g, b = _rgb_int(rgb)
    y = (1868 * b + 9617 * g + 4899 * r + 8192) >> 14
    cr = ((r - y) * 11682 + 128 * 2**14 + 8192) >> 14
    cb = ((b - y) * 9241 + 128 * 2**14 + 8192) >> 14
    return np.clip(cr, 0, 255).astype(np.uint8), np.clip(cb, 0, 255).astype(np.uint8)


def opencv_ycrcb_to_rgb(y: np.ndarray, cr: np.ndarray, cb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(ycrcb, COLOR_YCrCb2BGR)`` for uint8, returned as HxWx3 RGB."""
    yi = y.astype(np.int64)
    dcr, dcb = cr.astype(np.int64) - 128, cb.astype(np.int64) - 128
    b = yi + ((dcb * 29049 + 8192) >> 14)
    g = yi + ((dcb * -5636 + dcr * -11698 + 8192) >> 14)
    r = yi + ((dcr * 22987 + 8192) >> 14)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ OpenCV, float path
def opencv_float_ycrcb(rgb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(float32 rgb, COLOR_RGB2YCrCb)`` on 0..255 data: HxWx3 (Y, Cr, Cb), float32. OpenCV's float
    path adds the chroma offset 0.5 (not 128) whatever the data range."""
    rgb = np.asarray(rgb, dtype=F32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = r * F32(0.299) + g * F32(0.587) + b * F32(0.114)
    cr = (r - y) * F32(0.713) + F32(0.5)
    cb = (b - y) * F32(0.564) + F32(0.5)
    return np.stack([y, cr, cb], axis=-1).astype(F32)


def opencv_float_ycrcb_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(float32, COLOR_YCrCb2RGB)`` with the same 0.5 chroma offset."""
    y, cr, cb = ycc[..., 0], ycc[..., 1] - F32(0.5), ycc[..., 2] - F32(0.5)
    r = y + cr * F32(1.403)
    g = y + cr * F32(-0.714) + cb * F32(-0.344)
    b = y + cb * F32(1.773)
    return np.stack([r, g, b], axis=-1).astype(F32)


# -------------------------------------------------------------------------------------------------- savers
def scipy_bytescale(r: np.ndarray) -> np.ndarray:
    """SciPy <= 1.1 ``imsave`` of a float image: per-image min-max stretch to 0..255 with round-half-up,
    ``uint8(clip((r - min) * (255 / (max - min)), 0, 255) + 0.5)``, in float32 as SciPy computes it on a
    float32 array. A constant image maps to 0 (SciPy divides by zero there; we do not)."""
    r = np.asarray(r, dtype=F32)
    lo, hi = r.min(), r.max()
    scale = F32(255.0 / float(hi - lo)) if hi > lo else F32(0.0)
    scaled = (r - lo) * scale
    return (np.clip(scaled, 0, 255) + F32(0.5)).astype(np.uint8)


def imageio_as_uint8(image: np.ndarray) -> np.ndarray:
    """imageio 2.26 ``image_as_uint(bitdepth=8)`` (what ``skimage.io.imsave`` of a float array does): data
    inside [0, 1] are scaled by 255, anything else is min-max rescaled over the whole array (all channels
    together), in float64, then ``+ 0.499999999`` and truncation."""
    v = np.asarray(image, dtype=np.float64)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    if lo >= 0 and hi <= 1:
        v = v * 255.0
    elif hi == lo:
        return np.asarray(image).astype(np.uint8)
    else:
        v = (v - lo) / (hi - lo) * 255.0
    return (v + 0.499999999).astype(np.uint8)


def torch_save_image_uint8(x01: np.ndarray) -> np.ndarray:
    """torchvision ``save_image`` of a [0, 1] float32 image: ``x * 255 + 0.5``, clamped, truncated to uint8."""
    x = np.asarray(x01, dtype=F32) * F32(255) + F32(0.5)
    return np.clip(x, 0, 255).astype(np.uint8)
