"""FuseGAN (no official code): network sizes, the convolutional-CRF refinement, and training on the shared
adversarial loop with synthetic pairs from real sharp images: smoke run and bitwise resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_helpers import check_resume, real_patches, recipe, torch_threads

from fusebench.methods import METHODS, create
from fusebench.methods.base import DecisionMapMethod, combine
from fusebench.methods.fusegan import (
    GENERATOR_PARAMETERS,
    FuseGAN,
    FuseGANGenerator,
    FuseGANTrainer,
    PatchDiscriminator,
    conv_crf,
)
from fusebench.methods.gan import parameter_count
from fusebench.training import FINAL

SIZE = 32


one_thread = torch_threads(1)


@pytest.fixture(scope="module")
def sharp(mirror: Path) -> np.ndarray:
    """4 real sharp patch pairs (uint8 N x 2 x SIZE x SIZE) from MSRS train visible images."""
    offsets = ((150, 200), (250, 330), (200, 450), (300, 100))
    return real_patches(mirror, SIZE, offsets, [("MSRS/train/vi/00556D", "MSRS/train/vi/00881N")])


def test_registration_and_defaults() -> None:
    cls = METHODS.get("fusegan")
    assert cls is FuseGAN and issubclass(cls, DecisionMapMethod) and cls.tasks == ("mff",)
    d = recipe("fusegan")
    assert (d["lr"], d["beta1"], d["l1_weight"], d["synthetic_psf"]) == (2e-4, 0.5, 100.0, "disk")
    with pytest.raises(ValueError, match="refine"):
        FuseGAN(refine="bogus")
    with pytest.raises(NotImplementedError):
        FuseGAN().load_official(Path("nothing"))  # no official weights exist


def test_network_sizes() -> None:
    g = FuseGANGenerator()
    assert parameter_count(g) == GENERATOR_PARAMETERS == 12_551_041
    assert parameter_count(PatchDiscriminator()) == 2_765_633  # pix2pix 70x70 PatchGAN on 3 channels
    assert g.eval()(torch.zeros(1, 1, 32, 40), torch.zeros(1, 1, 32, 40)).shape == (1, 1, 32, 40)
    # Siamese: one encoder for both sources, so swapping the sources only changes the concatenation order
    assert not hasattr(g, "encoder_b")
    assert PatchDiscriminator()(torch.zeros(1, 3, 70, 70)).shape == (1, 1, 6, 6)


def test_conv_crf_cleans_noise_and_follows_edges() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((40, 40), np.float32)
    image[:, 20:] = 1.0  # an intensity edge at column 20
    truth = (image > 0.5).astype(np.float32)
    prob = np.where(truth > 0, 0.7, 0.3).astype(np.float32)
    prob[rng.random(prob.shape) < 0.1] = 0.55  # scattered weak errors
    prob[10, 5] = prob[30, 30] = 0.9 if truth[10, 5] == 0 else 0.1
    prob[:, 18:22] = 0.5  # undecided band along the edge
    refined = conv_crf(prob, image)
    assert refined.shape == prob.shape and refined.dtype == np.float32
    assert ((refined > 0.5) == (truth > 0.5)).mean() == 1.0
    assert ((prob > 0.5) == (truth > 0.5)).mean() < 0.95


def make_trainer(**options: Any) -> FuseGANTrainer:
    trainer = create("fusegan").trainer("cpu", seed=7, lr=1e-3, **options)  # type: ignore[attr-defined]
    assert isinstance(trainer, FuseGANTrainer)
    return trainer


def test_smoke_training_both_players_learn(sharp: np.ndarray) -> None:
    torch.manual_seed(0)
    trainer = make_trainer()
    g0 = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.discriminators["patch"].state_dict().items()}
    batch = torch.from_numpy(sharp[:2].astype(np.float32) / 255)
    prepared = trainer.prepare_batch(batch)
    assert prepared.shape == (4, 3, SIZE, SIZE) and set(prepared[:, 2].unique().tolist()) <= {0.0, 1.0}
    logs = [trainer.train_step(batch, step) for step in range(6)]
    assert set(logs[0]) == {"loss", "adversarial", "l1", "d_patch"}
    assert all(np.isfinite(list(row.values())).all() for row in logs)
    assert logs[-1]["l1"] < logs[0]["l1"]
    with torch.no_grad():  # any patch size (padded to multiples of 4 inside, cropped back)
        assert trainer.generate(trainer.prepare_batch(batch[:1, :, :30, :26])).shape == (2, 1, 30, 26)
    assert any(not torch.equal(v, g0[k]) for k, v in trainer.generator.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in trainer.discriminators["patch"].state_dict().items())


def test_resume_is_bitwise_identical_and_model_fuses(sharp: np.ndarray, tmp_path: Path) -> None:
    reference, _ = check_resume(make_trainer, sharp, tmp_path, steps=4, checkpoint_every=2, crash_at=3, batch_size=1)

    a, b = sharp[0, 0, :, :30] / np.float32(255), sharp[0, 1, :, :30] / np.float32(255)
    for refine in ("crf", "threshold", "none"):
        method = create("fusegan", task="mff", refine=refine)
        method.load(reference / FINAL)  # type: ignore[attr-defined]
        m = method.decision_map(a, b)  # type: ignore[attr-defined]
        assert m.shape == a.shape and m.dtype == np.float32
        if refine != "none":
            assert set(np.unique(m)) <= {0.0, 1.0}
        assert np.allclose(method.fuse(a, b), np.clip(combine(m, a, b), 0, 1))
