"""SDNet: official-weight parity through ``fuse_official`` on every shared official output (four TF1 checkpoints, one
per task), the network and weight conversion, the squeeze-decomposition loss, and training (real steps on real
patches, resume bitwise equal to an uninterrupted run).

The parity test follows reference/official-outputs/sdnet/README.md through the method's own ``fuse_official``:
SciPy's flattened YCbCr read (Pillow YCbCr -> RGB -> 'F'), ``(x - 127.5) / 127.5``, a -> ``*_ir`` branch,
``out * 127.5 + 127.5``, per-image min-max stretch with round-half-up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from official_outputs import fusebench_sources, official_rows
from PIL import Image
from training_helpers import check_resume, check_untrained_errors, real_patches, recipe, torch_threads

from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.gan import parameter_count
from fusebench.methods.mffgan import from_tf_checkpoint, to_tf_names
from fusebench.methods.sdnet import (
    LAYERS,
    LOSS_WEIGHTS,
    NET_PARAMETERS,
    SDNet,
    SDNetNet,
    SDNetTrainer,
    gradient_scores,
    load_tf_net,
    low_pass,
    squeeze_decomposition_loss,
)
from fusebench.official import scipy_luma
from fusebench.tfcheckpoint import TFCheckpoint
from fusebench.training import FINAL

OFFICIAL = Path("reference") / "official-outputs" / "sdnet"
WEIGHTS = Path("weights") / "official" / "sdnet-tf"
CHECKPOINTS = ("IR_VIS", "Medical", "Multi_exposure", "Multi_focus")
#: one small output per weights file runs by default (the rest with -m slow)
FAST = {("IR_VIS", "05"), ("Medical", "16009"), ("Medical", "25015"), ("Multi_exposure", "AirBellowsGap")}
FAST |= {("Multi_focus", "lytro_03")}
SIZE = 32  # training patch side in the tests

one_thread = torch_threads(1)


TASK = {"IR_VIS": "ivif", "Medical": "mif", "Multi_exposure": "mef", "Multi_focus": "mff"}


@pytest.fixture(scope="module")
def methods(shared: Path) -> dict[str, SDNet]:
    out = {}
    for name in CHECKPOINTS:
        method = create("sdnet", task=TASK[name])
        assert isinstance(method, SDNet)
        method.load_official(shared / WEIGHTS / name)
        out[name] = method
    return out


# ------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize(
    ("weights", "dataset", "pair"),
    [
        pytest.param(w, d, p, marks=() if (w, p) in FAST else pytest.mark.slow, id=f"{w}-{d}/{p}")
        for w, d, p in [(r["weights"], r["dataset"], r["pair"]) for r in official_rows("sdnet")]
        or [("IR_VIS", "TNO", "05")]
    ],
)
def test_fuse_official_reproduces_official_output(
    shared: Path, methods: dict[str, SDNet], weights: str, dataset: str, pair: str
) -> None:
    """Sources in fusebench's (a, b) order (mri first for MIF: the Medical model then feeds b to its ir branch)."""
    rows = official_rows("sdnet", shared)
    (row,) = [r for r in rows if (r["weights"], r["dataset"], r["pair"]) == (weights, dataset, pair)]
    method = methods[weights]
    path_a, path_b = fusebench_sources(shared, row)
    if row["raw_npy"]:  # the network itself, before the stretch (0..255 scale)
        raw = method.fuse_raw(scipy_luma(path_a), scipy_luma(path_b))
        assert np.abs(raw - np.load(shared / OFFICIAL / row["raw_npy"])).max() < 1e-3
    got = method.fuse_official(path_a, path_b)
    with Image.open(shared / OFFICIAL / row["output"]) as img:
        expected = np.asarray(img)
    assert got.dtype == np.uint8 and got.shape == expected.shape == (int(row["height"]), int(row["width"]))
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, (pair, diff.max())
    assert (diff > 0).mean() < 1e-4, pair  # rounding-boundary pixels only


def test_every_weights_file_has_official_outputs(shared: Path) -> None:
    assert sorted({r["weights"] for r in official_rows("sdnet", shared)}) == sorted(CHECKPOINTS)


def test_fuse_on_the_unified_gray_protocol(shared: Path, methods: dict[str, SDNet]) -> None:
    """``fuse`` on gray [0, 1] returns the official stretched image on [0, 1]; ``output: clip`` the raw output."""
    src = shared / "datasets" / "Harvard-MRI-CT" / "test"
    a, b = (scipy_luma(src / s / "16009.png") for s in ("mri", "ct"))
    fused = methods["Medical"].fuse(a / np.float32(255), b / np.float32(255))
    assert fused.dtype == np.float32 and fused.min() == 0.0 and fused.max() == 1.0
    with Image.open(shared / OFFICIAL / "Medical" / "Harvard-MRI-CT" / "16009.png") as img:
        expected = np.asarray(img, dtype=np.int16)
    assert np.abs(np.round(fused * 255).astype(np.int16) - expected).max() <= 1
    clip = create("sdnet", task="mif", output="clip")
    assert isinstance(clip, SDNet)
    clip.net, clip.device = methods["Medical"].net, methods["Medical"].device
    raw = methods["Medical"].fuse_raw(a, b)
    assert np.allclose(clip.fuse(a / np.float32(255), b / np.float32(255)), np.clip(raw / 255, 0, 1), atol=1e-6)


# ------------------------------------------------------------------------------- network and weights
def test_registration_and_options() -> None:
    cls = METHODS.get("sdnet")
    assert cls is SDNet and issubclass(cls, LearnedMethod) and cls.tasks == ("ivif", "mif", "mff", "mef")
    d = recipe(cls.name)
    assert (d["batch_size"], d["patch_size"], d["lr"]) == (32, 120, 1e-4)
    assert parameter_count(SDNetNet()) == NET_PARAMETERS
    with pytest.raises(ValueError, match="output"):
        SDNet(output="bogus")
    assert SDNet(task="mif").input_order == "ba" and SDNet(task="ivif").input_order == "ab"
    with pytest.raises(ValueError, match="input_order"):
        SDNet(input_order="bogus")


@pytest.mark.parametrize("weights", CHECKPOINTS)
def test_weight_conversion_uses_every_variable(shared: Path, weights: str) -> None:
    tensors = TFCheckpoint(shared / WEIGHTS / weights).read_all("fusion_model/")
    state = load_tf_net(shared / WEIGHTS / weights)
    back = to_tf_names(state, LAYERS)
    assert set(back) == set(tensors) and all(np.array_equal(back[n], tensors[n]) for n in tensors)
    assert sum(v.numel() for v in state.values()) == NET_PARAMETERS
    with pytest.raises(KeyError, match="sdnet: .*layer9_vi"):
        from_tf_checkpoint({k: v for k, v in tensors.items() if "layer9_vi" not in k}, LAYERS, "sdnet")


def test_decomposition_rebuilds_the_sources_with_official_weights(shared: Path) -> None:
    """A consistency check of the decomposition branch against the weights it trained: on an MRI-CT pair the
    sources rebuilt from the official fused image are much closer to the true sources than to each other's."""
    net = SDNetNet()
    net.load_state_dict(load_tf_net(shared / WEIGHTS / "Medical"))
    src = shared / "datasets" / "Harvard-MRI-CT" / "test"
    a, b = (torch.from_numpy(scipy_luma(src / s / "16010.png"))[None, None] / 127.5 - 1 for s in ("ct", "mri"))
    with torch.no_grad():
        _, rebuilt_a, rebuilt_b = net(a, b)
    mse = torch.nn.functional.mse_loss
    assert mse(rebuilt_a, a) < mse(rebuilt_a, b) and mse(rebuilt_b, b) < mse(rebuilt_b, a)


# ------------------------------------------------------------------------------------------------ loss
def test_loss_pieces() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    assert low_pass(x)[0, 0, 2, 2] == pytest.approx(0.1478) and low_pass(x)[0, 0, 1, 1] == pytest.approx(0.0947)
    rng = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 1, 24, 24, generator=rng)
    flat = torch.full_like(texture, 0.5)
    s_ir, s_vi = gradient_scores(texture, flat)
    assert torch.equal(s_ir + s_vi, torch.ones_like(s_ir)) and s_ir[..., 2:-2, 2:-2].mean() > 0.95
    s_ir, s_vi = gradient_scores(texture, texture)  # ties go to ir
    assert s_ir.min() == 1 and s_vi.max() == 0


def test_task_loss_weights_and_terms() -> None:
    assert LOSS_WEIGHTS == {"ivif": (0.5, 80.0), "mif": (0.5, 10.0), "mef": (1.0, 50.0), "mff": (1.0, 3.0)}
    trainer = create("sdnet", task="mff").trainer("cpu", seed=0)  # type: ignore[attr-defined]
    assert isinstance(trainer, SDNetTrainer) and (trainer.b_weight, trainer.grad_weight) == (1.0, 3.0)
    assert not trainer.swap and create("sdnet", task="mif").trainer("cpu").swap  # type: ignore[attr-defined]
    ir, vi = torch.rand(2, 1, 16, 16) * 2 - 1, torch.rand(2, 1, 16, 16) * 2 - 1
    terms = squeeze_decomposition_loss(trainer.net, ir, vi, 0.5, 80.0, 2.0)
    expected = terms["intensity"] + 80 * terms["gradient"] + 2 * terms["decomposition"]
    assert torch.allclose(terms["loss"], expected)


# ------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def patches(mirror: Path) -> np.ndarray:
    """6 real infrared-visible patch pairs (MSRS train, ir and vi luma), uint8 N x 2 x SIZE x SIZE."""
    return real_patches(mirror, SIZE, offsets=((200, 240), (280, 400)), limit=3)


def make_trainer(**options: object) -> SDNetTrainer:
    trainer = create("sdnet", task="ivif").trainer("cpu", seed=3, steps=6, **options)  # type: ignore[attr-defined]
    assert isinstance(trainer, SDNetTrainer)
    return trainer


def test_training_steps_reduce_the_loss(patches: np.ndarray) -> None:
    trainer = make_trainer(lr=1e-3)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    batch = torch.from_numpy(patches[:4].astype(np.float32) / 255)
    logs = [trainer.train_step(batch, step) for step in range(15)]
    assert set(logs[0]) == {"loss", "intensity", "gradient", "decomposition"}
    assert all(np.isfinite(list(r.values())).all() for r in logs)
    assert logs[-1]["loss"] < logs[0]["loss"] and logs[-1]["decomposition"] < logs[0]["decomposition"]
    changed = {k.split(".")[0] for k, v in trainer.net.state_dict().items() if not torch.equal(v, before[k])}
    assert {"layer1_ir", "layer5_fuse", "layer9_vi"} <= changed  # both parts of the network learn


def test_untrained_errors(tmp_path: Path) -> None:
    check_untrained_errors(lambda: create("sdnet", task="ivif"), tmp_path, bogus=1)


def test_resume_is_bitwise_identical_and_model_fuses(patches: np.ndarray, tmp_path: Path) -> None:
    reference, _ = check_resume(make_trainer, patches, tmp_path, steps=4, crash_at=3)
    method = create("sdnet", task="ivif", output="clip")
    method.load(reference / FINAL)  # type: ignore[attr-defined]
    fused = method.fuse(patches[0, 0] / np.float32(255), patches[0, 1] / np.float32(255))
    assert fused.shape == (SIZE, SIZE) and fused.dtype == np.float32 and 0 <= fused.min() <= fused.max() <= 1
