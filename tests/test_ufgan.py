"""UFGAN: the U-Net generator (size arithmetic, parameter count), inference padding, the FusionGAN-style
LSGAN training with the generator updated every second batch, and resume through the shared loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import check_resume, check_untrained_errors, real_patches, recipe, torch_threads

from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.gan import LSGAN
from fusebench.methods.ufgan import (
    UFGAN,
    UFGANDiscriminator,
    UFGANGenerator,
    UFGANTrainer,
    laplacian_zero,
    min_input_size,
    parameter_count,
)

SIZE = 128  # a small training patch (the U-Net needs at least 126)


one_thread = torch_threads(1)


def test_registered_and_parameter_counts() -> None:
    assert METHODS.get("ufgan") is UFGAN and issubclass(UFGAN, LearnedMethod)
    assert UFGAN.tasks == ("ivif",) and recipe("ufgan")["g_every"] == 2

    def double(cin: int, cout: int) -> int:  # two (conv + bias, BN weight + bias)
        return 9 * cin * cout + cout + 2 * cout + 9 * cout * cout + cout + 2 * cout

    def up(c: int) -> int:  # ConvTranspose2d(c, c/2, 2) + bias, BN
        return 4 * c * (c // 2) + c // 2 + 2 * (c // 2)

    encoder = double(2, 64) + double(64, 128) + double(128, 256) + double(256, 512) + double(512, 1024)
    decoder = sum(up(c) + double(c, c // 2) for c in (1024, 512, 256, 128)) + 64 + 1
    assert parameter_count(UFGANGenerator()) == encoder + decoder == 31_044_865
    assert parameter_count(UFGANDiscriminator()) == 389_057


def test_generator_size_arithmetic() -> None:
    g = UFGANGenerator().eval()
    with torch.no_grad():
        assert g(torch.zeros(1, 2, 160, 160)).shape == (1, 1, 152, 152)  # main.py's patch and label sizes
        assert g(torch.zeros(1, 2, 126, 131)).shape == (1, 1, 118, 123)
    assert min_input_size() == 126
    with pytest.raises(ValueError, match="at least 126"):
        g(torch.zeros(1, 2, 125, 200))
    assert UFGANDiscriminator()(torch.zeros(2, 1, 152, 152)).shape == (2, 1)


def test_laplacian_uses_zero_padding() -> None:
    x = torch.ones(1, 1, 4, 4)
    lap = laplacian_zero(x)
    assert lap[0, 0, 1, 1] == 0 and lap[0, 0, 0, 0] == -2 and lap[0, 0, 0, 1] == -1


def test_fuse_keeps_the_size_and_options(tmp_path: Path) -> None:
    torch.manual_seed(0)
    path = tmp_path / "model.pt"
    torch.save(UFGANGenerator().state_dict(), path)
    check_untrained_errors(lambda: create("ufgan", task="ivif"), tmp_path, size=120, generator_interval=2)
    m = create("ufgan", task="ivif")
    assert isinstance(m, UFGAN)
    m.load(path)
    a = np.random.default_rng(0).random((119, 125), dtype=np.float32)
    out = m.fuse(a, a[::-1].copy())
    assert out.shape == a.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert np.array_equal(out, m.fuse(a, a[::-1].copy()))  # eval mode: no dropout, deterministic
    with pytest.raises(ValueError, match="at least 118"):
        m.fuse(a[:117], a[:117])
    with pytest.raises(NotImplementedError, match="official weights"):
        m.load_official(path)
    with pytest.raises(ValueError, match="bn_mode"):
        UFGAN(bn_mode="frozen")
    with pytest.raises(ValueError, match="content"):
        m.trainer("cpu", content="ssim")


def test_training_on_real_patches(mirror: Path) -> None:
    patches = torch.from_numpy(real_patches(mirror, SIZE).astype(np.float32) / 255)
    trainer = UFGAN().trainer("cpu", seed=0)
    assert isinstance(trainer, UFGANTrainer) and trainer.g_every == 2
    obj = trainer.objectives["vi"]
    assert isinstance(obj, LSGAN) and obj.real_label == (0.7, 1.2) and obj.fake_label == (0.0, 0.3)
    g0 = [p.detach().clone() for p in trainer.generator.parameters()]
    d0 = [p.detach().clone() for p in trainer.discriminators["vi"].parameters()]
    g_param = next(iter(trainer.generator.parameters()))
    logs = []
    for s in range(4):
        logs.append(trainer.train_step(patches[(2 * s) % len(patches) :][:2], s))
        g_steps = int(trainer.g_optimizer.state[g_param]["step"]) if trainer.g_optimizer.state else 0
        assert g_steps == (s + 1) // 2  # the generator moves on every second batch only
    assert all(np.isfinite(list(e.values())).all() for e in logs)
    assert {"loss", "adv", "content", "intensity", "grad", "d_vi"} <= set(logs[0])
    # every generator tensor moves except the conv biases that a BatchNorm follows (their gradient is 0)
    moved = {n for (n, p), q in zip(trainer.generator.named_parameters(), g0, strict=True) if not torch.equal(p, q)}
    names = {n for n, _ in trainer.generator.named_parameters()}
    assert {n for n in names if not n.endswith(".bias") or ".1." in n or ".4." in n or n == "conv.bias"} <= moved
    assert all(not torch.equal(p, q) for p, q in zip(trainer.discriminators["vi"].parameters(), d0, strict=True))
    assert logs[-1]["content"] < logs[0]["content"]
    assert set(trainer.export()) == set(UFGANGenerator().state_dict())


def test_resume_through_the_shared_loop(mirror: Path, tmp_path: Path) -> None:
    patches = real_patches(mirror, SIZE)[:4]
    check_resume(lambda: UFGAN().trainer("cpu", seed=2), patches, tmp_path)
