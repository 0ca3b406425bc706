"""Reading images deeper than 8 bits (issue 11, item 1): scaled to the 8-bit levels, never clipped.

Every deeper file here is made from a real 8-bit image of ../shared, with low-order content that the
documented rule must round away, so the expected result is the original 8-bit image exactly.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusebench.imageio import ImageReadError, read_image, read_uint8
from fusebench.metrics import score_folders

MRI = "Harvard-MRI-CT/cddfuse/mri/11.png"
CT = "Harvard-MRI-CT/cddfuse/ct/11.png"


def _as_16bit(image: np.ndarray, seed: int = 0) -> np.ndarray:
    """v * 257 plus noise of at most +-128 (which round(x / 257) removes)."""
    noise = np.random.default_rng(seed).integers(-128, 129, image.shape)
    return np.clip(image.astype(np.int64) * 257 + noise, 0, 65535).astype(np.uint16)


def _write_png_rgb16(path: Path, rgb: np.ndarray) -> None:
    """A 48-bit RGB PNG (Pillow cannot write one): IHDR bit depth 16, colour type 2, filter 0 rows."""
    height, width, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_gray_is_divided_by_257(mirror: Path, tmp_path: Path, suffix: str) -> None:
    image = read_uint8(mirror / MRI)
    path = tmp_path / f"mri16{suffix}"
    Image.fromarray(_as_16bit(image)).save(path)
    with Image.open(path) as check:
        assert check.mode.startswith("I")  # a real 16-bit file
    assert np.array_equal(read_uint8(path), image)  # was all 255 (clipped) before the fix
    assert np.array_equal(read_image(path), image.astype(np.float32) / 255.0)


def test_32bit_int_and_float_tiff(mirror: Path, tmp_path: Path) -> None:
    image = read_uint8(mirror / MRI)
    as_int = np.rint(image.astype(np.float64) * ((2**31 - 1) / 255.0)).astype(np.int32)
    Image.fromarray(as_int).save(tmp_path / "i32.tif")
    assert np.array_equal(read_uint8(tmp_path / "i32.tif"), image)
    Image.fromarray(image.astype(np.float32) / 255.0).save(tmp_path / "f32.tif")
    assert np.array_equal(read_uint8(tmp_path / "f32.tif"), image)


def test_unscalable_files_are_refused(mirror: Path, tmp_path: Path) -> None:
    image = read_uint8(mirror / MRI)
    Image.fromarray(image.astype(np.float32)).save(tmp_path / "f255.tif")  # floats on 0-255: scale unknown
    with pytest.raises(ImageReadError, match=r"f255.tif: float image .* only when every value is in \[0, 1\]"):
        read_uint8(tmp_path / "f255.tif")
    Image.fromarray(image.astype(np.int32) - 128).save(tmp_path / "signed.tif")
    with pytest.raises(ImageReadError, match="signed.tif: signed integer image with negative values"):
        read_uint8(tmp_path / "signed.tif")
    rgb = read_uint8(mirror / "MSRS/test/vi/00004N.png")[:32, :48]
    _write_png_rgb16(tmp_path / "rgb16.png", _as_16bit(rgb))
    with pytest.raises(ImageReadError, match="rgb16.png: colour image with more than 8 bits per channel"):
        read_uint8(tmp_path / "rgb16.png")


def test_16bit_files_score_like_their_8bit_originals(mirror: Path, tmp_path: Path) -> None:
    """The metrics read through the same path: a 16-bit fused image and 16-bit sources score as 8-bit ones."""
    folders = {name: tmp_path / name for name in ("a8", "b8", "f8", "a16", "b16", "f16")}
    for folder in folders.values():
        folder.mkdir()
    a, b = read_uint8(mirror / MRI), read_uint8(mirror / CT)
    fused = ((a.astype(np.uint16) + b) // 2).astype(np.uint8)
    for key, image in (("a", a), ("b", b), ("f", fused)):
        Image.fromarray(image).save(folders[f"{key}8"] / "11.png")
        Image.fromarray(_as_16bit(image)).save(folders[f"{key}16"] / "11.png")
    metrics = ["EN", "SD", "MI", "SSIM", "Qabf"]
    eight = score_folders(folders["a8"], folders["b8"], folders["f8"], "fusebench", metrics)
    sixteen = score_folders(folders["a16"], folders["b16"], folders["f16"], "fusebench", metrics)
    assert np.array_equal(eight.to_numpy(), sixteen.to_numpy())
