"""U2Fusion: official-weight parity through ``fuse_official`` on every shared official output (one TF1 checkpoint
for all four tasks), the network and weight conversion, the VGG16 information weights, and training (real steps
on real patches with random VGG16 weights, EWC across two tasks, resume bitwise equal to an uninterrupted run).

The parity test follows reference/official-outputs/u2fusion/README.md through the method's own
``fuse_official``: SciPy-style read (no mode), the script's YCbCr formula for 3-channel files (TNO's grey-as-RGB
files included), task-dependent SOURCE1/SOURCE2, colour restored when exactly one source is colour, saved
divided by the image maximum with round-half-up.
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
from fusebench.methods.u2fusion import (
    NET_PARAMETERS,
    U2Fusion,
    U2FusionNet,
    U2FusionTrainer,
    VGG16Features,
    ewc_anchor,
    feature_gradient,
    from_tf_checkpoint,
    information_weights,
    load_tf_net,
    rgb2ycbcr,
    scipy_imread,
    to_tf_names,
    toimage_max,
    ycbcr2rgb,
)
from fusebench.tfcheckpoint import TFCheckpoint
from fusebench.training import FINAL

OFFICIAL = Path("reference") / "official-outputs" / "u2fusion"
WEIGHTS = Path("weights") / "official" / "u2fusion-tf"
FAST = {"25015", "16009", "05"}  # small images (256x256, 280x280); the others run with -m slow
SIZE = 24  # training patch side in the tests

one_thread = torch_threads(1)


@pytest.fixture(scope="module")
def official(shared: Path) -> U2Fusion:
    method = create("u2fusion")
    assert isinstance(method, U2Fusion)
    method.load_official(shared / WEIGHTS)
    return method


# ------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize(
    ("dataset", "pair"),
    [
        pytest.param(d, p, marks=() if p in FAST else pytest.mark.slow, id=f"{d}/{p}")
        for d, p in [(r["dataset"], r["pair"]) for r in official_rows("u2fusion")] or [("TNO", "05")]
    ],
)
def test_fuse_official_reproduces_official_output(shared: Path, official: U2Fusion, dataset: str, pair: str) -> None:
    """Sources in fusebench's (a, b) order (mri first for MIF); the method feeds b as SOURCE1 in every task."""
    (row,) = [r for r in official_rows("u2fusion", shared) if (r["dataset"], r["pair"]) == (dataset, pair)]
    got = official.fuse_official(*fusebench_sources(shared, row))
    with Image.open(shared / OFFICIAL / row["output"]) as img:
        expected = np.asarray(img)
    assert got.dtype == np.uint8 and got.shape == expected.shape
    assert got.shape[2:] == ((3,) if row["channels"] == "3" else ())
    diff = np.abs(got.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, (pair, diff.max())
    assert (diff > 0).mean() < 1e-3, pair  # rounding-boundary pixels only


def test_network_matches_official_raw_output(shared: Path, official: U2Fusion) -> None:
    """The float image the official script hands to its save function (colour restored), at float tolerance."""
    (row,) = [r for r in official_rows("u2fusion", shared) if r["raw_npy"]]
    path_mri, path_pet = fusebench_sources(shared, row)
    mri = scipy_imread(path_mri) / 255.0  # grey
    y, cb, cr = rgb2ycbcr(scipy_imread(path_pet) / 255.0)  # colour
    f = official.fuse_raw(mri.astype(np.float32), y.astype(np.float32))  # b = PET -> SOURCE1
    expected = np.load(shared / OFFICIAL / row["raw_npy"])
    assert np.abs(ycbcr2rgb(f, cb, cr) - expected).max() < 1e-5


def test_fuse_on_the_unified_gray_protocol(shared: Path, official: U2Fusion) -> None:
    """``fuse`` on gray [0, 1] gives the official grey output divided by its maximum (MRI-CT: both sources grey)."""
    src = shared / "datasets" / "Harvard-MRI-CT" / "test"
    a, b = (scipy_imread(src / s / "16009.png").astype(np.float32) / 255 for s in ("mri", "ct"))
    fused = official.fuse(a, b)
    assert fused.dtype == np.float32 and fused.shape == a.shape and fused.max() == 1.0 and fused.min() >= 0
    with Image.open(shared / OFFICIAL / "model" / "Harvard-MRI-CT" / "16009.png") as img:
        expected = np.asarray(img, dtype=np.int16)
    assert np.abs(np.round(fused * 255).astype(np.int16) - expected).max() <= 1
    clip = create("u2fusion", task="mif", output="clip")
    assert isinstance(clip, U2Fusion)
    clip.net, clip.device = official.net, official.device
    raw = official.fuse_raw(a, b)
    assert np.array_equal(clip.fuse(a, b), raw) and np.allclose(fused, raw / raw.max(), atol=1e-7)


def test_input_order(shared: Path, official: U2Fusion) -> None:
    x = np.random.default_rng(0).random((20, 24), dtype=np.float32)
    y = np.random.default_rng(1).random((20, 24), dtype=np.float32)
    ab = create("u2fusion", input_order="ab")
    ab.load_official(shared / WEIGHTS)  # type: ignore[attr-defined]
    assert np.array_equal(ab.fuse_raw(y, x), official.fuse_raw(x, y))  # type: ignore[attr-defined]
    assert not np.array_equal(official.fuse_raw(y, x), official.fuse_raw(x, y))


def test_official_save_helpers() -> None:
    assert toimage_max(np.array([[0.0, 0.5], [1.0, 2.0]], np.float32)).tolist() == [[0, 64], [128, 255]]
    assert toimage_max(np.array([[-0.1, 0.3]], np.float64)).tolist() == [[0, 255]]  # negatives clip to 0
    y, cb, cr = rgb2ycbcr(np.full((1, 1, 3), 0.5))
    assert np.allclose([y[0, 0], cb[0, 0], cr[0, 0]], [0.5, 128 / 255, 128 / 255], atol=1e-12)


# ------------------------------------------------------------------------------- network and weights
def test_registration_options_and_parameters() -> None:
    cls = METHODS.get("u2fusion")
    assert cls is U2Fusion and issubclass(cls, LearnedMethod)
    assert cls.tasks == ("ivif", "mif", "mff", "mef")
    d = recipe(cls.name)
    assert (d["batch_size"], d["patch_size"], d["lr"], d["mse_weight"]) == (18, 64, 1e-4, 20.0)
    assert parameter_count(U2FusionNet()) == NET_PARAMETERS
    with pytest.raises(ValueError, match="output"):
        U2Fusion(output="bogus")
    with pytest.raises(ValueError, match="input_order"):
        U2Fusion(input_order="bogus")


def test_weight_conversion_round_trip(shared: Path) -> None:
    ckpt = TFCheckpoint(shared / WEIGHTS / "model.ckpt.index")
    tensors = {n: ckpt.read(n) for n in ckpt.names()}
    state = load_tf_net(shared / WEIGHTS)
    assert sum(v.numel() for v in state.values()) == NET_PARAMETERS
    back = to_tf_names(state)
    assert set(back) == set(tensors)  # every variable of the checkpoint is used
    assert all(np.array_equal(back[n], tensors[n]) for n in tensors)
    with pytest.raises(KeyError, match="conv2_4"):
        from_tf_checkpoint({k: v for k, v in tensors.items() if "conv2_4" not in k})


def test_dense_block_puts_new_features_first() -> None:
    """Net.py concatenates (new, old): zeroing the input-side half of dense_block_conv2's kernel that sees
    conv1_1's output (the LAST 44 of its 88 inputs) must cut conv1_1 off from that layer."""
    net = U2FusionNet()
    x = torch.rand(1, 1, 12, 12)
    h0 = torch.nn.functional.leaky_relu(net._conv("conv1_1", torch.cat([x, x], 1)), 0.2)
    h1 = torch.cat([torch.nn.functional.leaky_relu(net._conv("dense_block_conv1", h0), 0.2), h0], 1)
    assert torch.equal(h1[:, 44:], h0)


# ------------------------------------------------------------------------------- information weights
@pytest.fixture(scope="module")
def vgg_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random VGG16 weights in torchvision's whole-model layout (``features.N.*`` plus a classifier key)."""
    torch.manual_seed(0)
    state = {f"features.{k}": v for k, v in VGG16Features().state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(state, path)
    return path


def test_vgg_file_layouts_and_errors(vgg_file: Path, tmp_path: Path) -> None:
    vgg = VGG16Features.from_file(vgg_file)
    assert not any(p.requires_grad for p in vgg.parameters())
    taps = vgg(torch.rand(1, 3, 32, 32))
    assert [t.shape[1:] for t in taps] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    features_only = tmp_path / "features.pth"
    torch.save(VGG16Features().state_dict(), features_only)
    VGG16Features.from_file(features_only)
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="torchvision"):
        VGG16Features.from_file(tmp_path / "bad.pth")


def test_information_weights_prefer_the_richer_source(vgg_file: Path) -> None:
    vgg = VGG16Features.from_file(vgg_file)
    rich = torch.rand(2, 1, 32, 32)
    flat = torch.full((2, 1, 32, 32), 0.5)
    w = information_weights(vgg, rich, flat, c=1e-6, size=32)
    assert w.shape == (2, 2) and torch.allclose(w.sum(1), torch.ones(2))
    assert (w[:, 0] > 0.99).all()  # a tiny c makes the softmax decisive
    assert torch.allclose(information_weights(vgg, rich, flat, c=1e12, size=32), torch.full((2, 2), 0.5))
    g = feature_gradient(torch.ones(1, 1, 4, 4))
    assert g[0, 0, 1, 1] == 0 and g[0, 0, 0, 0] == pytest.approx(-5 / 8)  # zero padding at the border


# ------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def patches(mirror: Path) -> np.ndarray:
    """6 real infrared-visible patch pairs (MSRS train, ir and vi luma), uint8 N x 2 x SIZE x SIZE."""
    return real_patches(mirror, SIZE, offsets=((200, 240), (280, 400)), limit=3)


def make_trainer(vgg_file: Path, **options: object) -> U2FusionTrainer:
    method = create("u2fusion", task="ivif")
    trainer = method.trainer("cpu", seed=4, vgg_weights=vgg_file, vgg_size=32, steps=6, **options)  # type: ignore[attr-defined]
    assert isinstance(trainer, U2FusionTrainer) and trainer.c == options.get("c", 3200.0)  # ivif's c by default
    return trainer


def test_training_steps_reduce_the_loss(patches: np.ndarray, vgg_file: Path) -> None:
    trainer = make_trainer(vgg_file, lr=1e-3)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    batch = torch.from_numpy(patches[:4].astype(np.float32) / 255)
    logs = [trainer.train_step(batch, step) for step in range(8)]
    assert set(logs[0]) == {"loss", "content", "ssim", "mse", "ewc", "w1"}
    assert all(np.isfinite(list(r.values())).all() for r in logs)
    assert logs[-1]["content"] < logs[0]["content"] and logs[0]["ewc"] == 0
    assert any(not torch.equal(v, before[k]) for k, v in trainer.net.state_dict().items())
    assert all(p.abs().max() <= 50 for p in trainer.net.parameters())
    # TF1 RMSProp slots: the mean square starts at one
    fresh = make_trainer(vgg_file)
    assert all(torch.equal(s["square_avg"], torch.ones_like(s["square_avg"])) for s in fresh.optimizer.state.values())


def test_sequential_tasks_with_ewc(patches: np.ndarray, vgg_file: Path, tmp_path: Path) -> None:
    """Task 1, its EWC anchor (Fisher information on task 1's patches), task 2 starting from task 1's weights
    with the penalty: the penalty is zero at the start and grows as the weights leave the anchor."""
    first = make_trainer(vgg_file, lr=1e-3)
    batch = torch.from_numpy(patches[:4].astype(np.float32) / 255)
    for step in range(2):
        first.train_step(batch, step)
    anchor = ewc_anchor(first.export(), [(patches, 3200.0)], vgg_file, samples=2, batch_size=3, vgg_size=32)
    assert set(anchor["fisher"]) == set(anchor["star"]) and all((f >= 0).all() for f in anchor["fisher"].values())
    assert sum(float(f.sum()) for f in anchor["fisher"].values()) > 0
    path = tmp_path / "ewc.pt"
    torch.save(anchor, path)
    second = make_trainer(vgg_file, lr=1e-3, c=100.0, ewc=path, ewc_weight=1e4)
    assert all(torch.equal(v, anchor["star"][k]) for k, v in second.net.state_dict().items())
    flipped = torch.flip(batch, dims=[-1])
    logs = [second.train_step(flipped, step) for step in range(3)]
    assert logs[0]["ewc"] == 0 and logs[-1]["ewc"] > 0
    assert logs[-1]["loss"] == pytest.approx(logs[-1]["content"] + 5e3 * logs[-1]["ewc"], rel=1e-5)
    with pytest.raises(ValueError, match="anchor"):
        torch.save({"star": {}}, tmp_path / "bad.pt")
        make_trainer(vgg_file, ewc=tmp_path / "bad.pt")


def test_trainer_options_and_untrained_errors(vgg_file: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vgg_weights"):
        create("u2fusion").trainer("cpu")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="vgg_input"):
        make_trainer(vgg_file, vgg_input="bogus")
    check_untrained_errors(lambda: create("u2fusion", task="ivif"), tmp_path, vgg_weights=vgg_file, bogus=1)


def test_resume_is_bitwise_identical_and_model_fuses(patches: np.ndarray, vgg_file: Path, tmp_path: Path) -> None:
    reference, _ = check_resume(lambda: make_trainer(vgg_file), patches, tmp_path, steps=4, crash_at=3)
    method = create("u2fusion", task="ivif", output="clip")
    method.load(reference / FINAL)  # type: ignore[attr-defined]
    fused = method.fuse(patches[0, 0] / np.float32(255), patches[0, 1] / np.float32(255))
    assert fused.shape == (SIZE, SIZE) and fused.dtype == np.float32 and 0 <= fused.min() <= fused.max() <= 1
