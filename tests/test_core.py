"""Unit tests of the shared building blocks: registry, atomic output, colour, image IO, patches, fusion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fusebench.atomic import atomic_path
from fusebench.color import rgb_to_ycbcr, ycbcr_to_rgb
from fusebench.fuse import fuse_images, fuse_pairs
from fusebench.imageio import ImageReadError, list_images, read_uint8, write_png
from fusebench.methods import METHODS, create
from fusebench.methods.base import DecisionMapMethod, LearnedMethod
from fusebench.methods.classical import laplacian_pyramid, reconstruct
from fusebench.patches import PatchSettings, crop_pair, load_patches, make_patches
from fusebench.registry import Registry, UnknownNameError
from fusebench.training import Trainer


def test_registry_lists_known_names_on_typo() -> None:
    reg: Registry[int] = Registry("widget")
    reg.add("one", 1)
    with pytest.raises(UnknownNameError, match="unknown widget 'on'; known: one"):
        reg.get("on")
    with pytest.raises(ValueError, match="registered twice"):
        reg.add("one", 2)


def test_methods_are_registered() -> None:
    assert {"average", "laplacian"} <= set(METHODS.names())


def test_learned_methods_fuse_only_after_loading_weights() -> None:
    """Weights come from load(model.pt) or load_official(path) only: fuse() before either is one clear error."""
    zeros = np.zeros((16, 16), np.float32)
    learned = [name for name in METHODS.names() if issubclass(METHODS.get(name), LearnedMethod)]
    assert len(learned) >= 10
    for name in learned:
        with pytest.raises(RuntimeError, match=rf"^{name}: no weights loaded; call load\(model\.pt\) or load_official"):
            create(name).fuse(zeros, zeros)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


def test_ycbcr_round_trip_and_bt601_values() -> None:
    rng = np.random.default_rng(0)
    rgb = rng.random((16, 16, 3)).astype(np.float32)
    assert np.abs(ycbcr_to_rgb(rgb_to_ycbcr(rgb)) - rgb).max() < 1e-5
    white, red = rgb_to_ycbcr(np.array([[[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]]]))[0]
    np.testing.assert_allclose(white, [1.0, 0.5, 0.5], atol=1e-6)
    np.testing.assert_allclose(red, [0.299, 0.5 - 0.168736, 1.0], atol=1e-5)  # JFIF full range


def test_rgb_encoded_gray_reads_as_gray(mirror: Path) -> None:
    tno_ir = mirror / "TNO/test/ir/01.png"
    with Image.open(tno_ir) as img:
        assert img.mode == "RGB"  # stored as three identical channels
    assert read_uint8(tno_ir).ndim == 2
    assert read_uint8(mirror / "MSRS/test/vi/00004N.png").ndim == 3


def test_corrupt_image_error_names_file(tmp_path: Path, mirror: Path) -> None:
    data = (mirror / "MSRS/test/ir/00004N.png").read_bytes()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageReadError, match="broken.png"):
        read_uint8(broken)
    with pytest.raises(ImageReadError, match="no such image"):
        read_uint8(tmp_path / "missing.png")


def test_laplacian_pyramid_is_exact_and_fuses_identical_inputs_to_themselves() -> None:
    rng = np.random.default_rng(1)
    img = rng.random((45, 61)).astype(np.float32)
    assert np.abs(reconstruct(laplacian_pyramid(img, 5)) - img).max() < 1e-6
    assert np.abs(create("laplacian", levels=5).fuse(img, img) - img).max() < 1e-6


def test_crop_pair_grid_and_contrast_filter() -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, 256, (100, 130), dtype=np.uint8)
    b = a.copy()
    b[:32, :] = 128  # the first row of windows is flat in source b
    patches = crop_pair(a, b, PatchSettings(size=32, stride=32, min_contrast=0.1))
    assert patches.shape == (8, 2, 32, 32)  # 3 rows x 4 cols of windows, minus the 4 flat ones
    assert (patches[:, 1].std(axis=(1, 2)) > 0).all()


def test_make_patches_from_real_pairs(tmp_path: Path, mirror: Path) -> None:
    pairs = [
        (name, mirror / f"MSRS/train/ir/{name}.png", mirror / f"MSRS/train/vi/{name}.png")
        for name in ("00556D", "00633D")
    ]
    out = tmp_path / "MSRS_64.npy"
    count = make_patches(pairs, out, PatchSettings(size=64, stride=64, min_contrast=0.1), progress=False)
    patches = load_patches(out)
    assert patches.shape == (count, 2, 64, 64) and 0 < count <= 2 * 70
    assert f'"count": {count}' in out.with_suffix(".json").read_text()


def test_colour_handling(tmp_path: Path, mirror: Path) -> None:
    ir = mirror / "MSRS/test/ir/00004N.png"
    vi = mirror / "MSRS/test/vi/00004N.png"
    out = tmp_path / "fused"
    fuse_pairs(create("average"), [("00004N", ir, vi)], out, progress=False)
    fused = read_uint8(out / "00004N.png")
    assert fused.ndim == 3  # colour visible source -> colour result
    vi_ycc = rgb_to_ycbcr(read_uint8(vi) / 255.0)
    fused_ycc = rgb_to_ycbcr(fused / 255.0)
    # chroma comes back from the visible image (up to 8-bit rounding of the RGB result)
    assert np.abs(fused_ycc[..., 1:] - vi_ycc[..., 1:]).mean() < 2 / 255
    assert "00004N," in (out / "runtime.csv").read_text()
    assert list_images(out) == {"00004N": out / "00004N.png"}


def test_gray_pair_stays_gray_and_size_mismatch_is_an_error() -> None:
    a = np.zeros((8, 8), np.float32)
    assert fuse_images(create("average"), a, a + 0.5).shape == (8, 8)
    with pytest.raises(ValueError, match="differ in size"):
        fuse_images(create("average"), a, np.zeros((8, 9), np.float32))


def test_write_png_rejects_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="NaN"):
        write_png(tmp_path / "x.png", np.full((4, 4), np.nan, np.float32))
    assert not (tmp_path / "x.png").exists()


class _LeftFromA(DecisionMapMethod):
    """A decision map taking the left half from source a: enough to check the colour path."""

    name = "left-from-a"

    def decision_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = np.zeros(a.shape, np.float32)
        m[:, : a.shape[1] // 2] = 1.0
        return m

    def trainer(self, device: str, **train_options: object) -> Trainer:
        raise NotImplementedError

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        raise NotImplementedError


def test_decision_map_methods_combine_colour_sources_with_their_map() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((6, 8, 3)).astype(np.float32), rng.random((6, 8, 3)).astype(np.float32)
    fused = fuse_images(_LeftFromA(), a, b)
    np.testing.assert_allclose(fused[:, :4], a[:, :4])  # every channel from the chosen source
    np.testing.assert_allclose(fused[:, 4:], b[:, 4:])
