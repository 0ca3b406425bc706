"""IFCNN: parity with the release's test procedure on every shared official output (through ``fuse_official``),
the OpenCV replicas, the unified gray ``fuse``, and supervised training on synthetic multi-focus patches."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import check_untrained_errors, real_patches, torch_threads

from fusebench.datasets import DATASETS
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.ifcnn import (
    IFCNN,
    PARAMETERS,
    IFCNNNet,
    IFCNNTrainer,
    _to_uint8,
    clahe,
    cv_rgb2gray,
    cv_ycrcb2rgb,
    fuse_features,
)

OFFICIAL = Path("reference") / "official-outputs" / "ifcnn"
WEIGHTS = Path("weights") / "official" / "ifcnn"
one_thread = torch_threads(1)


def rows(shared: Path, weights: str) -> list[dict[str, str]]:
    with (shared / OFFICIAL / "outputs.csv").open(newline="") as f:
        return [r for r in csv.DictReader(f) if r["weights"] == weights]


def official(shared: Path, weights: str, task: str) -> IFCNN:
    method = create("ifcnn", task=task, rule=weights.removeprefix("IFCNN-").removesuffix(".pth").lower())
    assert isinstance(method, IFCNN)
    method.load_official(shared / WEIGHTS / weights)
    return method


def read_png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img, dtype=np.int16)


# ------------------------------------------------------------------------------------------------ parity
@pytest.mark.parametrize(("weights", "count"), [("IFCNN-MAX.pth", 16), ("IFCNN-MEAN.pth", 2), ("IFCNN-SUM.pth", 18)])
def test_official_parity(shared: Path, weights: str, count: int) -> None:
    """Every official output of the weights file, from the source files, through ``fuse_official``.

    IVIF/MIF/MFF: within 1 grey level (1-level flips at the uint8 truncation boundary, the network agreeing
    with the official one to ~2e-6). MEF: CLAHE is discontinuous in its input (one pixel crossing a
    truncation boundary changes a tile histogram's clipped excess, hence the LUT of the whole tile), so the
    last-bit float differences of the network (see docs/methods/ifcnn.md) move a few pixels by up to 3
    levels; the post-processing itself is checked bit-exactly from the official raw output below.
    """
    table = rows(shared, weights)
    assert len(table) == count
    methods: dict[str, IFCNN] = {}
    report = {}
    for row in table:
        task = DATASETS.get(row["dataset"]).task
        method = methods.setdefault(task, official(shared, weights, task))
        got = method.fuse_official(shared / "datasets" / row["source_a"], shared / "datasets" / row["source_b"])
        expected = read_png(shared / OFFICIAL / row["output"])
        assert got.dtype == np.uint8 and got.shape == expected.shape, row["pair"]
        diff = np.abs(got.astype(np.int16) - expected)
        report[f"{row['dataset']}/{row['pair']}"] = int(diff.max())
        if task == "mef":
            assert diff.max() <= 3 and (diff > 0).mean() < 0.03, (row["pair"], diff.max(), (diff > 0).mean())
        else:
            assert diff.max() <= 1, (row["pair"], diff.max())
            assert (diff > 0).mean() < 1e-3, row["pair"]
        if row["raw_npy"] and task != "mef":
            source = [shared / "datasets" / row[k] for k in ("source_a", "source_b")]
            raw = np.load(shared / OFFICIAL / row["raw_npy"])
            assert np.abs(network_output(method, *source) - raw).max() < 1e-5, row["pair"]
    print(weights, "max abs diff per pair (grey levels):", report)


def network_output(method: IFCNN, path_a: Path, path_b: Path) -> np.ndarray:
    """The raw conv4 output (HxWx3) for the IV/MD/CMF branches, as the official ``.npy``."""
    from fusebench.methods.ifcnn import _normalise, _to_tensor

    sources = []
    for path in (path_a, path_b):
        with Image.open(path) as img:
            sources.append(_normalise(_to_tensor(np.asarray(img.convert("RGB"))), method.task == "mff"))
    return method._run(*sources)[0].numpy().transpose(1, 2, 0)


def test_mef_post_processing_is_exact_from_the_official_raw_output(shared: Path) -> None:
    """From the official network output of MEFB 507, our ME-branch chain (truncation, OpenCV gray, range
    squeeze, CLAHE, chroma, YCrCb -> RGB) reproduces the official PNG exactly."""
    method = official(shared, "IFCNN-MEAN.pth", "mef")
    raw = torch.from_numpy(np.load(shared / OFFICIAL / "IFCNN-MEAN" / "MEFB" / "507.npy").transpose(2, 0, 1))[None]
    method._run = lambda *sources: raw  # type: ignore[method-assign]
    got = method.fuse_official(*(shared / "datasets" / "MEFB" / "test" / s / "507.png" for s in ("a", "b")))
    assert np.array_equal(got, read_png(shared / OFFICIAL / "IFCNN-MEAN" / "MEFB" / "507.png"))


def test_fuse_gray_protocol(shared: Path) -> None:
    """``fuse`` on the benchmark's gray [0, 1] images: float, in range, and (gray sources) the official IVIF
    output up to its 8-bit truncation and OpenCV's integer gray."""
    method = official(shared, "IFCNN-MAX.pth", "ivif")
    src = shared / "datasets" / "TNO" / "test"
    a, b = (np.asarray(Image.open(src / m / "05.png").convert("L"), np.float32) / 255 for m in ("ir", "vi"))
    fused = method.fuse(a, b)
    assert fused.dtype == np.float32 and fused.shape == a.shape and 0 <= fused.min() and fused.max() <= 1
    expected = read_png(shared / OFFICIAL / "IFCNN-MAX" / "TNO" / "05.png") / 255
    assert np.abs(fused - expected).max() <= 2.5 / 255
    mff = official(shared, "IFCNN-MAX.pth", "mff")  # the task's branch: ImageNet-normalised input
    other = mff.fuse(a, b)
    assert other.dtype == np.float32 and 0 <= other.min() and other.max() <= 1 and not np.array_equal(other, fused)


# ------------------------------------------------------------------------------------------ network, ops
def test_registration_options_and_weights(shared: Path, tmp_path: Path) -> None:
    cls = METHODS.get("ifcnn")
    assert cls is IFCNN and issubclass(cls, LearnedMethod) and cls.tasks == ("ivif", "mif", "mff", "mef")
    assert sum(p.numel() for p in IFCNNNet().parameters()) == PARAMETERS
    with pytest.raises(ValueError, match="rule"):
        IFCNN(rule="min")
    with pytest.raises(ValueError, match="rule: mean"):
        create("ifcnn").load_official(shared / WEIGHTS / "IFCNN-MEAN.pth")  # type: ignore[attr-defined]
    check_untrained_errors(IFCNN, tmp_path, lr=1e-4, learning_rate=1e-3)
    state = torch.load(shared / WEIGHTS / "IFCNN-SUM.pth", map_location="cpu", weights_only=True)
    assert set(IFCNNNet().state_dict()) - set(state) == {f"conv{i}.bn.num_batches_tracked" for i in (2, 3)}


def test_fusion_rules() -> None:
    a, b = torch.tensor([1.0, -2.0, 3.0]), torch.tensor([0.5, 4.0, 3.0])
    assert fuse_features([a, b], "max").tolist() == [1.0, 4.0, 3.0]
    assert fuse_features([a, b], "sum").tolist() == [1.5, 2.0, 6.0]
    assert fuse_features([a, b], "mean").tolist() == [0.75, 1.0, 3.0]


def test_opencv_replicas() -> None:
    """Values from OpenCV 5.0.0 (the replicas were compared with opencv-python-headless 5.0.0 and 5.1.0, not a
    dependency: both conversions on all 2^24 colours and CLAHE on real and random images, identical)."""
    rgb = np.array([[[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], np.uint8)
    assert cv_rgb2gray(rgb).tolist() == [[255, 76, 150, 29, 18]]
    ycrcb = np.array([[[128, 128, 128], [100, 200, 60], [0, 255, 255]]], np.uint8)
    assert cv_ycrcb2rgb(ycrcb).tolist() == [[[128, 128, 128], [201, 72, 0], [178, 0, 225]]]
    # CLAHE on a textured ramp of a size that is not a multiple of the tile grid: OpenCV 5.0.0's exact output
    rng = np.random.default_rng(0)
    image = np.clip(rng.integers(0, 256, (61, 83)) // 2 + np.add.outer(np.arange(61), np.arange(83)), 0, 255)
    out = clahe(image.astype(np.uint8))
    digest = hashlib.sha256(out.tobytes()).hexdigest()
    assert digest == "a03f30c73d9256761faf78b03e1178d5f70797cf2f2593679c10f6a35a4358a6" and int(out.sum()) == 692960


def test_truncating_save() -> None:
    t = torch.tensor([[[[-0.5, 0.999, 1.5]]]]).expand(1, 3, 1, 3)
    assert _to_uint8(t)[0].tolist() == [[0, 0, 0], [254, 254, 254], [255, 255, 255]]


# ------------------------------------------------------------------------------------------------ training
def test_supervised_training_on_synthetic_multifocus(mirror: Path, shared: Path, tmp_path: Path) -> None:
    # sharp images: MSRS visible and infrared luma (each source of a pair is one ground-truth image)
    patches = torch.from_numpy(real_patches(mirror, 48, limit=2).astype(np.float32) / 255)
    torch.manual_seed(0)
    trainer = create("ifcnn").trainer("cpu", seed=0, lr=1e-3, conv1_weights=str(shared / WEIGHTS / "IFCNN-MAX.pth"))
    assert isinstance(trainer, IFCNNTrainer)
    conv1 = trainer.net.conv1.weight.detach().clone()
    logs = [trainer.train_step(patches, step) for step in range(15)]
    assert set(logs[0]) == {"loss", "mse", "perceptual"}
    assert all(np.isfinite(list(r.values())).all() for r in logs)
    assert np.mean([r["loss"] for r in logs[-3:]]) < 0.7 * logs[0]["loss"]
    assert torch.equal(trainer.net.conv1.weight, conv1)  # frozen, as in the paper
    method = create("ifcnn", task="mff")
    torch.save(trainer.export(), tmp_path / "model.pt")
    method.load(tmp_path / "model.pt")  # type: ignore[attr-defined]
    fused = method.fuse(patches[0, 0].numpy(), patches[0, 1].numpy())
    assert fused.shape == (48, 48) and fused.dtype == np.float32
    with pytest.raises(TypeError, match="unknown"):
        create("ifcnn").trainer("cpu", bogus=1)  # type: ignore[attr-defined]
