"""DenseFuse: parity with the authors' PyTorch release on real pairs, fusion strategies, and real training."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import check_untrained_errors, real_patches

from fusebench.imageio import read_uint8
from fusebench.losses import ms_ssim, ssim
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.densefuse import DenseFuse, DenseFuseNet, DenseFuseTrainer, fuse_features

OFFICIAL = Path("reference") / "official-outputs" / "densefuse"
GRAY_WEIGHTS = Path("weights") / "official" / "densefuse-pytorch" / "densefuse_gray.model"
RGB_WEIGHTS = Path("weights") / "official" / "densefuse-pytorch" / "densefuse_rgb.model"
#: pairs small enough to also run through fuse() (the [0, 1] API) in reasonable time
SMALL = {"05", "FLIR_00006", "FLIR_00018", "16009", "16010", "25015", "25022"}


def read_official_gray(path: Path) -> np.ndarray:
    """The release's test-time reading: scipy.misc.imread(mode='L') = Pillow convert('L') unless already L."""
    with Image.open(path) as img:
        gray = img if img.mode == "L" else img.convert("L")
        return np.asarray(gray).astype(np.float32)  # 0..255, no normalisation


def gray_rows(shared: Path) -> list[dict[str, str]]:
    with (shared / OFFICIAL / "outputs.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["weights"] == "densefuse_gray.model"]


@pytest.fixture(scope="module")
def official(shared: Path) -> DenseFuse:
    method = create("densefuse")
    assert isinstance(method, DenseFuse)
    method.load_official(shared / GRAY_WEIGHTS, "cpu")
    return method


def test_registered() -> None:
    cls = METHODS.get("densefuse")
    assert issubclass(cls, LearnedMethod)
    assert {"ivif", "mif"} <= set(cls.tasks)


def test_parameter_count() -> None:
    # conv1 160 + dense block 2320 + 4624 + 6928 + decoder 36928 + 18464 + 4624 + 145
    assert sum(p.numel() for p in DenseFuseNet().parameters()) == 74_193


def test_official_state_dict_loads_without_key_map(shared: Path) -> None:
    state = torch.load(shared / GRAY_WEIGHTS, map_location="cpu", weights_only=True)
    net = DenseFuseNet()
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state, strict=True)


def test_rgb_model_runs_only_under_the_official_protocol(shared: Path) -> None:
    """densefuse_rgb.model loads (it is offered by `fetch-weights list`); fusebench's gray rule refuses it with
    a message that names the official protocol (its official parity is in test_official_protocol.py)."""
    method = DenseFuse()
    method.load_official(shared / RGB_WEIGHTS)
    with pytest.raises(ValueError, match="protocol official"):
        method.fuse(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))


def test_parity_with_official_outputs(shared: Path, official: DenseFuse) -> None:
    """All 13 gray-addition pairs: official procedure (convert('L'), 0..255, mean, clamp, truncate)."""
    rows = gray_rows(shared)
    assert len(rows) == 13
    report = {}
    for row in rows:
        a = read_official_gray(shared / "datasets" / row["source_a"])
        b = read_official_gray(shared / "datasets" / row["source_b"])
        raw = official.fuse_raw(a, b)
        ours = np.clip(raw, 0, 255).astype(np.uint8)  # clamp(0, 255) then truncation, as the release does
        ref = np.asarray(Image.open(shared / OFFICIAL / row["output"]))
        assert ours.shape == ref.shape == (int(row["height"]), int(row["width"]))
        diff = int(np.abs(ours.astype(np.int16) - ref).max())
        report[f"{row['dataset']}/{row['pair']}"] = diff
        assert diff <= 1, f"{row['dataset']} {row['pair']}: max abs diff {diff} grey levels"
        if row["raw_npy"]:
            npy = np.load(shared / OFFICIAL / row["raw_npy"])
            assert np.abs(raw - npy).max() <= 1e-3
        if row["pair"] in SMALL:
            # The benchmark's [0, 1] API gives the same image (u/255*255 is exact in float32).
            fused = official.fuse(a / np.float32(255), b / np.float32(255))
            assert fused.dtype == np.float32 and fused.min() >= 0 and fused.max() <= 1
            np.testing.assert_allclose(fused, np.clip(raw, 0, 255) / 255, rtol=0, atol=1e-6)
    print("max abs diff per pair (grey levels):", report)


def test_l1_strategy_identical_inputs_equals_addition(official: DenseFuse, mirror: Path) -> None:
    image = read_uint8(mirror / "Harvard-MRI-CT" / "test" / "mri" / "16009.png")[64:160, 64:160]
    x = image.astype(np.float32) / 255
    l1 = DenseFuse(strategy="l1")
    l1.net, l1.device = official.net, official.device
    np.testing.assert_array_equal(l1.fuse(x, x), official.fuse(x, x))


def test_l1_strategy_weights_follow_activity() -> None:
    torch.manual_seed(0)
    e1 = torch.rand(1, 64, 8, 8) * 3
    e2 = torch.rand(1, 64, 8, 8) * 0.1
    fused = fuse_features(e1, e2, "l1")
    # w1 = C1 / (C1 + C2) with C1 >> C2: the fused features lean towards e1 ...
    assert (fused - e1).abs().mean() < (fused - e2).abs().mean()
    # ... and are a convex combination of the two
    assert torch.all(fused <= torch.maximum(e1, e2) + 1e-6) and torch.all(fused >= torch.minimum(e1, e2) - 1e-6)
    # no activity anywhere: weights fall back to 1/2 instead of 0/0
    zero = torch.zeros(1, 64, 4, 4)
    assert torch.equal(fuse_features(zero, zero, "l1"), zero)
    # the paper's literal addition is the sum, twice the release's mean
    assert torch.equal(fuse_features(e1, e2, "sum"), 2 * fuse_features(e1, e2, "addition"))


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="strategy"):
        DenseFuse(strategy="max")
    check_untrained_errors(DenseFuse, tmp_path, lr=1e-4, learning_rate=1e-3)


def test_ssim_loss_basics() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 255
    assert float(ssim(x, x, data_range=255)) == pytest.approx(1.0, abs=1e-5)
    assert float(ms_ssim(x, x, data_range=255, normalize=True)) == pytest.approx(1.0, abs=1e-5)
    noisy = (x + 40 * torch.randn_like(x)).clamp(0, 255)
    assert 0 < float(ssim(x, noisy, data_range=255)) < 0.9
    per_image = ssim(x, noisy, data_range=255, reduction="none")
    assert per_image.shape == (2,)
    # differentiable
    y = noisy.clone().requires_grad_(True)
    (1 - ssim(x, y, data_range=255)).backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_training_lowers_the_loss_on_real_patches(mirror: Path) -> None:
    pairs = [("TNO/test/ir/05", "TNO/test/vi/05"), ("TNO/test/ir/01", "TNO/test/vi/01")]
    pairs.append(("Harvard-MRI-CT/test/mri/16009", "Harvard-MRI-CT/test/ct/16009"))
    patches = real_patches(mirror, 64, ((60, 60), (120, 150)), pairs)  # real IVIF and MRI-CT pairs
    trainer = DenseFuse().trainer("cpu", seed=0)
    assert isinstance(trainer, DenseFuseTrainer)
    batch = torch.from_numpy(patches[[0]].astype(np.float32) / 255)  # one TNO 05 ir/vi pair: 2 images
    images = batch.reshape(-1, 1, 64, 64) * 255
    with torch.no_grad():
        before = {k: float(v) for k, v in trainer.losses(images).items()}
    logged = [trainer.train_step(batch, step) for step in range(20)]
    with torch.no_grad():
        after = {k: float(v) for k, v in trainer.losses(images).items()}
    assert set(logged[0]) == {"loss", "mse", "ssim"}
    assert all(np.isfinite(list(entry.values())).all() for entry in logged)
    assert after["loss"] < 0.97 * before["loss"]
    assert after["ssim"] > before["ssim"]
    # exported weights are what DenseFuse.load reads
    state = trainer.export()
    assert all(v.device.type == "cpu" for v in state.values())
    DenseFuseNet().load_state_dict(state, strict=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(official: DenseFuse, shared: Path) -> None:
    row = next(r for r in gray_rows(shared) if r["pair"] == "FLIR_00006")
    a = read_official_gray(shared / "datasets" / row["source_a"]) / np.float32(255)
    b = read_official_gray(shared / "datasets" / row["source_b"]) / np.float32(255)
    gpu = DenseFuse()
    gpu.load_official(shared / GRAY_WEIGHTS, "cuda")
    assert next(gpu.net.parameters()).is_cuda  # type: ignore[union-attr]
    assert np.abs(gpu.fuse(a, b) - official.fuse(a, b)).max() <= 1.5 / 255
