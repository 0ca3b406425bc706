"""MFF-GAN: official-weight parity on the Lytro pairs (both TF checkpoints, read by fusebench's pure-Python
reader), the network and weight conversion, the loss pieces, and training on the shared adversarial loop
(smoke run on real patches, resume after a crash bitwise equal to an uninterrupted run).

The parity test follows the official procedure of reference/official-outputs/mffgan/README.md: Pillow
YCbCr -> RGB -> luma ('F') of each source, (x - 127.5) / 127.5, a = near branch, ``out * 127.5 + 127.5``,
SciPy's min-max byte scaling with round-half-up.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import check_resume, real_patches, recipe, torch_threads

from fusebench.imageio import read_image
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.gan import parameter_count
from fusebench.methods.mffgan import (
    GENERATOR_PARAMETERS,
    MFFGAN,
    MFFGANDiscriminator,
    MFFGANGenerator,
    MFFGANTrainer,
    bytescale,
    focus_scores,
    from_tf_checkpoint,
    laplacian_same,
    load_tf_generator,
    repeated_blur_difference,
    to_tf_names,
)
from fusebench.tfcheckpoint import TFCheckpoint
from fusebench.training import FINAL

OFFICIAL = Path("reference") / "official-outputs" / "mffgan"
WEIGHTS = Path("weights") / "official" / "mffgan-tf"
PAIRS = ("lytro_01", "lytro_02", "lytro_03")
SIZE = 40  # training patch side in the tests (the official 60 works too; smaller is faster)


one_thread = torch_threads(1)


def official_gray(path: Path) -> np.ndarray:
    """``scipy.misc.imread(path, flatten=True, mode='YCbCr')``: Pillow YCbCr, 'F' via RGB (README step 1)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("YCbCr").convert("RGB").convert("F"), dtype=np.float32)


# ------------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("model", ["Lytro", "MFI-WHU"])
def test_official_parity_on_lytro(shared: Path, model: str) -> None:
    method = create("mffgan", task="mff")
    assert isinstance(method, MFFGAN)
    method.load_official(shared / WEIGHTS / f"{model}_model")
    with (shared / OFFICIAL / "outputs.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["weights"] == model]
    assert sorted(r["pair"] for r in rows) == list(PAIRS)
    for row in rows:
        a = official_gray(shared / "datasets" / row["source_a"])
        b = official_gray(shared / "datasets" / row["source_b"])
        raw = method.fuse_raw(a, b)
        if row["raw_npy"]:
            expected_raw = np.load(shared / OFFICIAL / row["raw_npy"])
            assert np.abs(raw - expected_raw).max() < 1e-3, row["pair"]  # 0..255 scale
        with Image.open(shared / OFFICIAL / row["output"]) as img:
            expected = np.asarray(img, dtype=np.int16)
        got = bytescale(raw).astype(np.int16)
        diff = np.abs(got - expected)
        assert diff.max() <= 1, (row["pair"], diff.max())
        assert (diff > 0).mean() < 1e-4, row["pair"]  # a handful of rounding-boundary pixels at most
        # fuse() on [0, 1] gray gives the same stretched image
        fused = method.fuse(a / np.float32(255), b / np.float32(255))
        assert fused.dtype == np.float32 and fused.min() == 0.0 and fused.max() == 1.0
        assert np.abs(np.round(fused * 255).astype(np.int16) - expected).max() <= 1


def test_fuse_on_colour_pipeline_inputs(shared: Path) -> None:
    """The benchmark's own gray path (BT.601 Y of the RGB file) stays within a few levels of the official
    output (the official reader's YCbCr round trip differs from plain Y by up to ~2 levels before the
    network)."""
    from fusebench.color import rgb_to_ycbcr

    method = create("mffgan", task="mff")
    method.load_official(shared / WEIGHTS / "Lytro_model")  # type: ignore[attr-defined]
    src = shared / "datasets" / "MFIFB" / "test"
    y_a = rgb_to_ycbcr(read_image(src / "a" / "lytro_01.jpg"))[..., 0]
    y_b = rgb_to_ycbcr(read_image(src / "b" / "lytro_01.jpg"))[..., 0]
    fused = method.fuse(y_a, y_b)
    with Image.open(shared / OFFICIAL / "Lytro" / "MFIFB" / "lytro_01.png") as img:
        expected = np.asarray(img, dtype=np.float32) / 255
    assert np.abs(fused - expected).mean() < 2 / 255


# ------------------------------------------------------------------------------- network and weights
def test_registration_and_defaults() -> None:
    cls = METHODS.get("mffgan")
    assert cls is MFFGAN and issubclass(cls, LearnedMethod) and cls.tasks == ("mff",)
    d = recipe("mffgan")
    assert (d["batch_size"], d["patch_size"], d["lr"], d["d_steps"]) == (32, 60, 1e-4, 2)
    assert (d["adv_weight"], d["content_weight"], d["grad_weight"]) == (1.0, 10.0, 5.0)
    with pytest.raises(ValueError, match="output"):
        MFFGAN(output="bogus")
    with pytest.raises(RuntimeError, match="no weights"):
        MFFGAN().fuse(np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32))


def test_parameter_counts(shared: Path) -> None:
    assert parameter_count(MFFGANGenerator()) == GENERATOR_PARAMETERS == 40_033
    # the discriminator has exactly the official trainable variables (BatchNorm moving stats are buffers)
    ckpt = TFCheckpoint(shared / WEIGHTS / "Lytro_model")
    official_d = sum(
        int(np.prod(e.shape)) for n, e in ckpt.entries.items() if n.startswith("discriminator/") and "moving" not in n
    )
    assert parameter_count(MFFGANDiscriminator()) == official_d == 389_761


def test_weight_conversion_round_trip(shared: Path) -> None:
    state = load_tf_generator(shared / WEIGHTS / "Lytro_model" / "CGAN.model-19.index")
    tensors = TFCheckpoint(shared / WEIGHTS / "Lytro_model").read_all("fusion_model/")
    back = to_tf_names(state)
    assert set(back) == set(tensors)
    for name, value in tensors.items():
        assert np.array_equal(back[name], value), name
    assert state["layer2_3_far.weight"].shape == (16, 32, 1, 1)
    with pytest.raises(KeyError):
        from_tf_checkpoint({k: v for k, v in tensors.items() if "layer4" not in k})
    net = MFFGANGenerator()
    net.load_state_dict(state)
    out = net(torch.zeros(1, 1, 7, 9), torch.zeros(1, 1, 7, 9))
    assert out.shape == (1, 1, 7, 9)


def test_loss_pieces() -> None:
    x = torch.zeros(1, 1, 5, 5)
    x[0, 0, 2, 2] = 1.0
    lap = laplacian_same(x)
    assert lap[0, 0, 2, 2] == -4 and lap[0, 0, 1, 2] == 1 and lap[0, 0, 0, 0] == 0
    # zero padding: a constant image has a non-zero Laplacian on its border, as with TF's SAME padding
    assert laplacian_same(torch.ones(1, 1, 4, 4))[0, 0, 0, 0] == -2
    assert repeated_blur_difference(torch.zeros(1, 1, 6, 6)).abs().max() == 0
    # near is sharp on the left half, far on the right half
    rng = torch.Generator().manual_seed(0)
    texture = torch.rand(1, 1, 32, 32, generator=rng)
    smooth = torch.nn.functional.avg_pool2d(texture, 5, 1, 2)
    near = torch.cat([texture[..., :16], smooth[..., 16:]], dim=-1)
    far = torch.cat([smooth[..., :16], texture[..., 16:]], dim=-1)
    s_near, s_far = focus_scores(near, far)
    assert torch.equal(s_near + s_far, torch.ones_like(s_near))
    assert s_near[..., 4:28, 2:14].mean() > 0.85 and s_far[..., 4:28, 18:30].mean() > 0.85
    # ties (identical sources) go to near
    s_near, s_far = focus_scores(texture, texture)
    assert s_near.min() == 1 and s_far.max() == 0


def test_official_generator_minimises_our_content_loss(shared: Path) -> None:
    """A consistency check of the loss against the weights it trained: on a Lytro pair the official
    generator's output has a far lower content loss than the mean of the sources or either source."""
    state = load_tf_generator(shared / WEIGHTS / "Lytro_model")
    trainer = MFFGANTrainer("cpu", seed=0)
    trainer.generator.load_state_dict(state)
    trainer.generator.eval()
    src = shared / "datasets" / "MFIFB" / "test"
    a, b = (official_gray(src / s / "lytro_05.jpg")[100:356, 100:356] / 255 for s in ("a", "b"))
    batch = torch.from_numpy(np.stack([a, b]))[None] * 2 - 1
    with torch.no_grad():
        losses = {
            name: float(trainer.content_losses(batch, x)["content"])
            for name, x in (
                ("official", trainer.generate(batch)),
                ("mean", batch.mean(1, keepdim=True)),
                ("near", batch[:, :1]),
                ("far", batch[:, 1:]),
            )
        }
    assert losses["official"] < 0.6 * min(losses["mean"], losses["near"], losses["far"]), losses


def test_bytescale_is_scipy_imsave() -> None:
    r = np.array([[10.0, 20.0], [30.0, 40.0]], np.float32)
    assert bytescale(r).tolist() == [[0, 85], [170, 255]]
    assert bytescale(np.full((2, 2), 7.0, np.float32)).tolist() == [[0, 0], [0, 0]]


# ------------------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def patches(mirror: Path) -> np.ndarray:
    """8 real multi-focus patch pairs (near, far) from two Lytro pairs, uint8 N x 2 x SIZE x SIZE (RGB mean)."""
    pairs = [(f"MFIFB/test/a/{p}", f"MFIFB/test/b/{p}") for p in ("lytro_05", "lytro_08")]
    offsets = ((120, 120), (120, 300), (300, 120), (300, 300))
    return real_patches(mirror, SIZE, offsets, pairs, gray=lambda rgb: rgb.mean(axis=-1))


def make_trainer(**options: Any) -> MFFGANTrainer:
    trainer = create("mffgan").trainer("cpu", seed=5, lr=1e-3, steps=10, **options)  # type: ignore[attr-defined]
    assert isinstance(trainer, MFFGANTrainer)
    return trainer


def test_smoke_training_both_players_learn(patches: np.ndarray) -> None:
    torch.manual_seed(0)
    trainer = make_trainer()
    g0 = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.discriminators["grad"].state_dict().items()}
    batch = torch.from_numpy(patches[:4].astype(np.float32) / 255)
    logs = [trainer.train_step(batch, step) for step in range(12)]
    assert set(logs[0]) == {"loss", "adversarial", "intensity", "gradient", "content", "d_grad"}
    assert all(np.isfinite(list(row.values())).all() for row in logs)
    assert logs[-1]["content"] < logs[0]["content"]
    assert logs[-1]["intensity"] < logs[0]["intensity"]
    assert any(not torch.equal(v, g0[k]) for k, v in trainer.generator.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in trainer.discriminators["grad"].state_dict().items())


def test_synthetic_data_option(patches: np.ndarray) -> None:
    torch.manual_seed(0)
    trainer = make_trainer(data="synthetic", synthetic_blur=[1.0, 2.0])
    prepared = trainer.prepare_batch(torch.from_numpy(patches[:2].astype(np.float32) / 255))
    assert prepared.shape == (4, 2, SIZE, SIZE) and prepared.min() >= -1 and prepared.max() <= 1
    with pytest.raises(TypeError, match="synthetic"):
        make_trainer(synthetic_blur=[1.0, 2.0])
    with pytest.raises(TypeError, match="unknown"):
        make_trainer(bogus=1)


def test_resume_is_bitwise_identical_and_model_fuses(patches: np.ndarray, tmp_path: Path) -> None:
    # a crash between two checkpoints (at step 3, the last at step 2)
    reference, _ = check_resume(
        make_trainer, patches, tmp_path, steps=6, checkpoint_every=2, crash_at=3, batch_size=3, seed=2
    )

    method = create("mffgan", task="mff", output="clip")
    method.load(reference / FINAL)  # type: ignore[attr-defined]
    fused = method.fuse(patches[0, 0] / np.float32(255), patches[0, 1] / np.float32(255))
    assert fused.shape == (SIZE, SIZE) and fused.dtype == np.float32
    assert 0.0 <= fused.min() and fused.max() <= 1.0
