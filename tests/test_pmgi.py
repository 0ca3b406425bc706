"""PMGI: official-weight parity on every shared output (one test per task checkpoint, through ``fuse_official``
in fusebench's source order), the TF weight conversion and BatchNorm behaviour, the gray ``fuse``, and training
with the proportional gradient/intensity loss on real patches."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import check_resume, check_untrained_errors, real_patches, torch_threads

from fusebench.datasets import DATASETS
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.gan import parameter_count
from fusebench.methods.pmgi import (
    IR_SOURCE,
    LOSS_WEIGHTS,
    PMGI,
    PMGIGenerator,
    PMGITrainer,
    from_tf_checkpoint,
    load_tf_generator,
)
from fusebench.official import scipy_luma
from fusebench.tfcheckpoint import TFCheckpoint
from fusebench.training import FINAL

OFFICIAL = Path("reference") / "official-outputs" / "pmgi"
WEIGHTS = Path("weights") / "official" / "pmgi-tf"
one_thread = torch_threads(1)


def fusebench_order(row: dict[str, str]) -> tuple[str, str]:
    """The official table gives (ir slot, vi slot); fusebench's medical order is (mri, ct|pet)."""
    a, b = row["source_a"], row["source_b"]
    return (b, a) if DATASETS.get(row["dataset"]).task == "mif" else (a, b)


@pytest.mark.parametrize(("checkpoint", "count"), [("IR_VI", 9), ("Medical", 4), ("Multi-exp", 2), ("Multi-focus", 3)])
def test_official_parity(shared: Path, checkpoint: str, count: int) -> None:
    """Every official output of the checkpoint within 1 grey level (the per-image min-max stretch with
    round-half-up leaves a few boundary pixels), and the raw network output against the official ``.npy``."""
    with (shared / OFFICIAL / "outputs.csv").open(newline="") as f:
        table = [r for r in csv.DictReader(f) if r["weights"] == checkpoint]
    assert len(table) == count
    methods: dict[str, PMGI] = {}
    report = {}
    for row in table:
        task = DATASETS.get(row["dataset"]).task
        if task not in methods:
            methods[task] = create("pmgi", task=task)  # type: ignore[assignment]
            methods[task].load_official(shared / WEIGHTS / checkpoint)
        method = methods[task]
        path_a, path_b = (shared / "datasets" / p for p in fusebench_order(row))
        got = method.fuse_official(path_a, path_b)
        with Image.open(shared / OFFICIAL / row["output"]) as img:
            expected = np.asarray(img, dtype=np.int16)
        assert got.dtype == np.uint8 and got.shape == expected.shape, row["pair"]
        diff = np.abs(got.astype(np.int16) - expected)
        report[f"{row['dataset']}/{row['pair']}"] = int(diff.max())
        assert diff.max() <= 1 and (diff > 0).mean() < 3e-3, (row["pair"], diff.max(), (diff > 0).mean())
        if row["raw_npy"]:
            raw = method.fuse_raw(scipy_luma(path_a), scipy_luma(path_b))
            assert np.abs(raw - np.load(shared / OFFICIAL / row["raw_npy"])).max() < 0.05, row["pair"]  # 0..255
    print(checkpoint, "max abs diff per pair (grey levels):", report)


def test_fuse_gray_protocol_and_norm_option(shared: Path) -> None:
    src = shared / "datasets" / "Harvard-MRI-CT" / "test"
    mri, ct = (np.asarray(Image.open(src / m / "16009.png").convert("L"), np.float32) / 255 for m in ("mri", "ct"))
    method = create("pmgi", task="mif")
    method.load_official(shared / WEIGHTS / "Medical")  # type: ignore[attr-defined]
    fused = method.fuse(mri, ct)
    with Image.open(shared / OFFICIAL / "Medical" / "Harvard-MRI-CT" / "16009.png") as img:
        expected = np.asarray(img, np.float32) / 255
    assert fused.dtype == np.float32 and fused.min() == 0 and fused.max() == 1  # the official stretch
    assert np.abs(fused - expected).max() <= 1.5 / 255  # gray 'L' files read the same both ways
    # the source order matters (CT/PET feed the ir branch)
    assert np.abs(method.fuse(ct, mri) - fused).mean() > 1 / 255
    # trained BatchNorm statistics give another, still valid image; clip output is not stretched
    trained = create("pmgi", task="mif", norm="trained", output="clip")
    trained.load_official(shared / WEIGHTS / "Medical")  # type: ignore[attr-defined]
    other = trained.fuse(mri, ct)
    assert other.dtype == np.float32 and 0 <= other.min() and other.max() <= 1
    assert np.abs(other - fused).mean() > 1 / 255


# ------------------------------------------------------------------------------- network and weights
def test_registration_and_options(tmp_path: Path) -> None:
    cls = METHODS.get("pmgi")
    assert cls is PMGI and issubclass(cls, LearnedMethod) and set(cls.tasks) == {"ivif", "mif", "mef", "mff"}
    for option in ("norm", "output"):
        with pytest.raises(ValueError, match=option):
            PMGI(**{option: "bogus"})
    check_untrained_errors(PMGI, tmp_path, lr=1e-4, learning_rate=1e-3)
    assert IR_SOURCE == {"ivif": 0, "mif": 1, "mef": 0, "mff": 0}


def test_conversion_covers_every_checkpoint_variable(shared: Path) -> None:
    ckpt = TFCheckpoint(shared / WEIGHTS / "IR_VI")
    tensors = ckpt.read_all("fusion_model/")
    state = from_tf_checkpoint(tensors)
    net = PMGIGenerator()
    assert set(net.state_dict()) == set(state)
    net.load_state_dict(state)
    assert state["layer1.conv.weight"].shape == (16, 3, 5, 5)
    assert np.array_equal(
        state["layer2_3_vi.conv.weight"].numpy().transpose(2, 3, 1, 0), tensors["fusion_model/layer2_3_vi/w2_3_vi"]
    )
    # every checkpoint variable of the generator is used (conv, bias, 4 BatchNorm tensors per layer)
    assert sum(int(np.prod(v.shape)) for v in tensors.values()) == parameter_count(net) + 2 * 16 * 12
    with pytest.raises(KeyError):
        from_tf_checkpoint({k: v for k, v in tensors.items() if "layer4_vi" not in k})


def test_official_batchnorm_is_per_image_instance_normalisation(shared: Path) -> None:
    """With ``image_stats`` every BatchNorm uses the image's own statistics and no affine, so (1) the
    checkpoint's gamma/beta/moving averages do not matter and (2) the output of one image does not depend on
    what else is in the batch only when it is alone: a crop's result is not the crop of the result."""
    state = load_tf_generator(shared / WEIGHTS / "IR_VI" / "CGAN.model-1.index")
    net = PMGIGenerator()
    net.load_state_dict(state)
    net.eval()
    x = torch.rand(1, 1, 24, 24) * 2 - 1
    y = torch.rand(1, 1, 24, 24) * 2 - 1
    with torch.no_grad():
        out = net(x, y, image_stats=True)
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(3.0)
                module.running_mean.fill_(5.0)
        assert torch.equal(net(x, y, image_stats=True), out)
        assert not torch.allclose(net(x, y), out)  # eval mode: moving averages and gamma are used
        crop = net(x[..., :12, :12], y[..., :12, :12], image_stats=True)
        assert not torch.allclose(crop, out[..., :12, :12], atol=1e-3)


def test_scipy_luma(shared: Path) -> None:
    """Gray 'L' files come through unchanged; colour files give Pillow's luma of the YCbCr round trip."""
    gray = shared / "datasets" / "Harvard-MRI-CT" / "test" / "mri" / "16009.png"
    with Image.open(gray) as img:
        assert np.array_equal(scipy_luma(gray), np.asarray(img.convert("L"), np.float32))
    colour = shared / "datasets" / "MFIFB" / "test" / "a" / "lytro_01.jpg"
    with Image.open(colour) as img:
        expected = np.asarray(img.convert("YCbCr").convert("RGB").convert("F"), np.float32)
    assert np.array_equal(scipy_luma(colour), expected)


# ------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def patches(mirror: Path) -> np.ndarray:
    """Real IVIF patch pairs (ir, vi), uint8 N x 2 x 40 x 40."""
    return real_patches(mirror, 40, limit=2)


def test_training_lowers_the_official_loss(patches: np.ndarray) -> None:
    trainer = create("pmgi", task="ivif").trainer("cpu", seed=0, lr=1e-3)  # type: ignore[attr-defined]
    assert isinstance(trainer, PMGITrainer) and trainer.weights == LOSS_WEIGHTS["ivif"] == (1.0, 0.3, 4.0, 5.0)
    batch = torch.from_numpy(patches.astype(np.float32) / 255)
    logs = [trainer.train_step(batch, step) for step in range(20)]
    assert set(logs[0]) == {"loss", "int_ir", "int_vi", "grad_ir", "grad_vi"}
    assert all(np.isfinite(list(r.values())).all() for r in logs)
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    # the loss is the official weighted sum, x 100
    w = trainer.weights
    terms = [logs[0][k] for k in ("int_ir", "int_vi", "grad_ir", "grad_vi")]
    assert logs[0]["loss"] == pytest.approx(100 * sum(a * b for a, b in zip(w, terms, strict=True)), rel=1e-5)
    # medical: MRI (source a) feeds the vi branch and carries the 300x gradient term
    medical = create("pmgi", task="mif").trainer("cpu", seed=0)  # type: ignore[attr-defined]
    assert medical.weights == (1.0, 1.0, 0.0, 300.0)
    with pytest.raises(ValueError, match="loss_weights"):
        create("pmgi").trainer("cpu", loss_weights=[1, 2])  # type: ignore[attr-defined]


def test_resume_is_bitwise_identical_and_model_fuses(patches: np.ndarray, tmp_path: Path) -> None:
    def make() -> PMGITrainer:
        return create("pmgi", task="ivif").trainer("cpu", seed=1, lr=1e-3)  # type: ignore[attr-defined]

    reference, _ = check_resume(make, patches, tmp_path, steps=4, checkpoint_every=2, crash_at=3, batch_size=2)
    method = create("pmgi", task="ivif")
    method.load(reference / FINAL)  # type: ignore[attr-defined]
    fused = method.fuse(patches[0, 0] / np.float32(255), patches[0, 1] / np.float32(255))
    assert fused.shape == (40, 40) and fused.dtype == np.float32 and 0 <= fused.min() and fused.max() <= 1
