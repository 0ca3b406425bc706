"""FusionGAN: architecture and parameter count, the official test-time procedure (edge padding, train-mode
BatchNorm, min-max save), TF1 -> PyTorch conversion against an independent NHWC NumPy forward pass (synthetic
TF-layout generator variables; the real TF1 discriminator of MFF-GAN, which has FusionGAN's discriminator
layout), LSGAN training and resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from training_helpers import check_resume, check_untrained_errors, real_patches, recipe, torch_threads

from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.fusiongan import (
    GENERATOR_LAYERS,
    FusionGAN,
    FusionGANDiscriminator,
    FusionGANGenerator,
    FusionGANTrainer,
    discriminator_from_tf_variables,
    from_tf_variables,
    parameter_count,
)
from fusebench.methods.gan import LSGAN

MFFGAN = Path("weights") / "official" / "mffgan-tf" / "Lytro_model" / "CGAN.model-19"


one_thread = torch_threads(1)


# --------------------------------------------------------------------- an independent NHWC reference
def conv_nhwc(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride: int = 1) -> np.ndarray:
    """TF ``conv2d(..., padding='VALID')`` + bias for one HxWxC image and an HWIO kernel, in float64."""
    kh, kw = w.shape[:2]
    win = sliding_window_view(x, (kh, kw), axis=(0, 1))[::stride, ::stride]  # H' x W' x C x kh x kw
    return np.einsum("hwcij,ijco->hwo", win, w, optimize=True) + b


def bn_nhwc(x: np.ndarray, v: dict[str, np.ndarray], prefix: str, train: bool) -> np.ndarray:
    if train:
        mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    else:
        mean, var = v[f"{prefix}/BatchNorm/moving_mean"], v[f"{prefix}/BatchNorm/moving_variance"]
    return (x - mean) / np.sqrt(var + 1e-5) * v[f"{prefix}/BatchNorm/gamma"] + v[f"{prefix}/BatchNorm/beta"]


def lrelu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.2 * x)


def generator_nhwc(x: np.ndarray, v: dict[str, np.ndarray], train: bool) -> np.ndarray:
    for i in range(1, 6):
        p = f"fusion_model/layer{i}"
        x = conv_nhwc(x, v[f"{p}/w{i}"].astype(np.float64), v[f"{p}/b{i}"])
        x = np.tanh(x) if i == 5 else lrelu(bn_nhwc(x, v, p, train))
    return x[..., 0]


def discriminator_nhwc(x: np.ndarray, v: dict[str, np.ndarray]) -> float:
    for i in range(1, 5):
        p = f"discriminator/layer_{i}"
        x = conv_nhwc(x, v[f"{p}/w_{i}"].astype(np.float64), v[f"{p}/b_{i}"], stride=2)
        x = lrelu(x if i == 1 else bn_nhwc(x, v, p, train=False))
    return float(x.reshape(-1) @ v["discriminator/line_5/w_5"][:, 0] + v["discriminator/line_5/b_5"][0])


def synthetic_tf_variables(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    v: dict[str, np.ndarray] = {}
    for i, (k, cin, cout) in enumerate(GENERATOR_LAYERS, start=1):
        p = f"fusion_model/layer{i}"
        v[f"{p}/w{i}"] = (rng.standard_normal((k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
        v[f"{p}/b{i}"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
        if i < 5:
            v[f"{p}/BatchNorm/gamma"] = rng.uniform(0.5, 1.5, cout).astype(np.float32)
            v[f"{p}/BatchNorm/beta"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
            v[f"{p}/BatchNorm/moving_mean"] = (0.1 * rng.standard_normal(cout)).astype(np.float32)
            v[f"{p}/BatchNorm/moving_variance"] = rng.uniform(0.5, 2.0, cout).astype(np.float32)
    return v


# ------------------------------------------------------------------------------------------------ tests
def test_registered_and_parameter_counts() -> None:
    assert METHODS.get("fusiongan") is FusionGAN and issubclass(FusionGAN, LearnedMethod)
    assert FusionGAN.tasks == ("ivif",)
    assert recipe("fusiongan")["patch_size"] == 132 and recipe("fusiongan")["lam"] == 100.0
    assert parameter_count(FusionGANGenerator()) == 925_633
    d = FusionGANDiscriminator(120)
    assert d.side == 6 and d.line_5.in_features == 6 * 6 * 256
    assert FusionGANGenerator()(torch.zeros(1, 2, 132, 132)).shape == (1, 1, 120, 120)


@pytest.mark.parametrize("train", [True, False], ids=["bn-train", "bn-eval"])
def test_tf_conversion_matches_an_nhwc_reference(train: bool) -> None:
    v = synthetic_tf_variables()
    state = from_tf_variables(v)
    net = FusionGANGenerator()
    net.load_state_dict(state, strict=True)
    rng = np.random.default_rng(1)
    ir, vi = rng.random((22, 19), dtype=np.float32), rng.random((22, 19), dtype=np.float32)
    method = FusionGAN(normalize="none", bn_mode="train" if train else "eval")
    method._set_net(state, "cpu", Path("synthetic"))
    ours = method.fuse_raw(ir, vi)
    # the official test procedure: (u - 127.5) / 127.5, edge padding 6, NHWC graph
    x = np.stack([ir, vi], axis=-1).astype(np.float64) * 2 - 1
    x = np.pad(x, ((6, 6), (6, 6), (0, 0)), mode="edge")
    expected = generator_nhwc(x, v, train)
    assert ours.shape == expected.shape == (22, 19)
    assert np.abs(ours - expected).max() < 1e-4


def test_tf_discriminator_conversion_on_a_real_checkpoint(shared: Path) -> None:
    """MFF-GAN's TF1 checkpoint holds a discriminator of exactly FusionGAN's layout (2 x 2 x 256 inputs)."""
    from fusebench.tfcheckpoint import load_checkpoint

    v = load_checkpoint(shared / MFFGAN, scope="discriminator/")
    state = discriminator_from_tf_variables(v)
    d = FusionGANDiscriminator(48)
    assert d.side == 2
    d.load_state_dict(state, strict=True)
    d.eval()
    x = np.random.default_rng(2).random((48, 48, 1)) * 2 - 1
    with torch.no_grad():
        ours = float(d(torch.from_numpy(x.transpose(2, 0, 1)[None].astype(np.float32)))[0, 0])
    assert abs(ours - discriminator_nhwc(x, {k: a.astype(np.float64) for k, a in v.items()})) < 1e-3 * (1 + abs(ours))
    # the generator converter checks names and shapes: MFF-GAN's generator is not FusionGAN's
    with pytest.raises((KeyError, ValueError)):
        FusionGAN().load_official(shared / MFFGAN)


def test_fuse_pads_keeps_size_and_statistics() -> None:
    m = FusionGAN()
    m._set_net(from_tf_variables(synthetic_tf_variables(3)), "cpu", Path("synthetic"))
    assert m.net is not None
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    a = np.random.default_rng(4).random((30, 41), dtype=np.float32)
    out = m.fuse(a, a[::-1].copy())
    assert out.shape == a.shape and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0  # min-max stretch, as scipy.misc.imsave
    assert all(torch.equal(before[k], v) for k, v in m.net.state_dict().items())
    raw = FusionGAN(normalize="none")
    raw._set_net(from_tf_variables(synthetic_tf_variables(3)), "cpu", Path("synthetic"))
    assert 0.0 <= raw.fuse(a, a).min() and raw.fuse(a, a).max() <= 1.0


def test_official_checkpoint_runs_with_fresh_batchnorm(tmp_path: Path) -> None:
    """A TF-layout checkpoint file (trained-like gamma/beta): load_official keeps its kernels and biases but, as
    the official test_one_image.py (fresh batch_norm layers: gamma 1, beta 0, statistics of the fused image),
    not its gamma/beta; fuse_official is that graph on scipy's YCbCr-flatten luma plus scipy's min-max save."""
    from test_tfcheckpoint import write_bundle

    from fusebench.official import scipy_bytescale, scipy_luma

    v = synthetic_tf_variables(5)
    write_bundle(tmp_path / "synthetic.model-3", v)  # not the registered file name: that one is verified
    method = FusionGAN(bn_mode="eval")  # the official procedure ignores it
    method.load_official(tmp_path / "synthetic.model-3.index")
    assert method.net is not None
    state = method.net.state_dict()
    for i in range(1, 5):
        assert torch.equal(state[f"layer{i}.bn.weight"], torch.ones(GENERATOR_LAYERS[i - 1][2]))
        assert torch.equal(state[f"layer{i}.bn.bias"], torch.zeros(GENERATOR_LAYERS[i - 1][2]))
        assert torch.equal(
            state[f"layer{i}.conv.weight"], torch.from_numpy(v[f"fusion_model/layer{i}/w{i}"].transpose(3, 2, 0, 1))
        )
    rng = np.random.default_rng(6)
    paths = []
    for name, channels in (("ir", 1), ("vi", 3)):
        pixels = rng.integers(0, 256, (21, 17, channels) if channels == 3 else (21, 17), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        paths.append(tmp_path / f"{name}.png")
    fresh = {
        k: np.ones_like(a) if k.endswith("gamma") else np.zeros_like(a) if k.endswith("beta") else a
        for k, a in v.items()
    }
    x = (np.stack([scipy_luma(p) for p in paths], axis=-1).astype(np.float64) - 127.5) / 127.5
    expected = scipy_bytescale(
        generator_nhwc(np.pad(x, ((6, 6), (6, 6), (0, 0)), mode="edge"), fresh, True) * 127.5 + 127.5
    )
    ours = method.fuse_official(*paths)
    assert ours.dtype == np.uint8 and ours.shape == (21, 17)
    assert np.abs(ours.astype(np.int16) - expected).max() <= 1
    # with the trained gamma/beta (what the converter used to load) the image would be a different one
    trained = scipy_bytescale(generator_nhwc(np.pad(x, ((6, 6), (6, 6), (0, 0)), mode="edge"), v, True) * 127.5 + 127.5)
    assert np.abs(trained.astype(np.int16) - expected).max() > 10


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="normalize"):
        FusionGAN(normalize="stretch")
    with pytest.raises(ValueError, match="bn_mode"):
        FusionGAN(bn_mode="both")
    check_untrained_errors(FusionGAN, tmp_path, epsilon=1.0)
    with pytest.raises(ValueError, match="too small"):
        FusionGAN().trainer("cpu", patch_size=32)


def test_training_on_real_patches(mirror: Path) -> None:
    patches = torch.from_numpy(real_patches(mirror, 64).astype(np.float32) / 255)
    trainer = create("fusiongan").trainer("cpu", seed=0, patch_size=64, lr=1e-3)  # type: ignore[attr-defined]
    assert isinstance(trainer, FusionGANTrainer) and trainer.d_steps == 2
    obj = trainer.objectives["vi"]
    assert isinstance(obj, LSGAN) and obj.real_label == (0.7, 1.2) and obj.fake_label == (0.0, 0.3)
    g0 = [p.detach().clone() for p in trainer.generator.parameters()]
    d0 = [p.detach().clone() for p in trainer.discriminators["vi"].parameters()]
    logs = [trainer.train_step(patches[(2 * s) % len(patches) :][:2], s) for s in range(6)]
    assert all(np.isfinite(list(e.values())).all() for e in logs)
    assert {"loss", "adv", "content", "intensity", "grad", "d_vi"} <= set(logs[0])
    assert all(not torch.equal(p, q) for p, q in zip(trainer.generator.parameters(), g0, strict=True))
    assert all(not torch.equal(p, q) for p, q in zip(trainer.discriminators["vi"].parameters(), d0, strict=True))
    assert trainer.d_optimizers["vi"].state[next(iter(trainer.discriminators["vi"].parameters()))]["step"] == 12
    assert np.mean([e["content"] for e in logs[-2:]]) < np.mean([e["content"] for e in logs[:2]])
    m = FusionGAN(normalize="none")
    m._set_net(trainer.export(), "cpu", Path("trained"))
    assert m.fuse(patches[0, 0].numpy(), patches[0, 1].numpy()).shape == (64, 64)


def test_resume_through_the_shared_loop(mirror: Path, tmp_path: Path) -> None:
    patches = real_patches(mirror, 48)
    check_resume(lambda: FusionGAN().trainer("cpu", seed=2, patch_size=48), patches, tmp_path)
