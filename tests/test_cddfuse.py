"""CDDFuse: the release's checkpoint layout, losses on hand-computed inputs, two-stage training, resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_helpers import check_resume, log_rows, real_patches, torch_threads

from fusebench.methods import METHODS, create
from fusebench.methods.cddfuse import (
    LOSS_KEYS,
    OFFICIAL_GROUPS,
    PARAMETER_COUNT,
    CDDFuse,
    CDDFuseNet,
    CDDFuseTrainer,
    cc,
    decomposition_loss,
    fusion_loss,
    parameter_counts,
    sobel_abs,
    spatial_gradient,
    ssim_loss,
)
from fusebench.training import FINAL
from fusebench.weights import WeightsError

one_thread = torch_threads(1, scope="function")


@pytest.fixture(scope="module")
def msrs_patches(mirror: Path) -> np.ndarray:
    """Real MSRS train pairs ([ir, vi] luma, uint8) cropped into 64x64 patches: N x 2 x 64 x 64."""
    return real_patches(mirror, 64, ((100, 100), (200, 300), (300, 450)), limit=2)


@pytest.fixture(scope="module")
def real_batch(msrs_patches: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(msrs_patches[:2].astype(np.float32) / 255.0)


def _official_checkpoint(net: CDDFuseNet) -> dict[str, dict[str, torch.Tensor]]:
    """``net`` saved as the release does: four nn.DataParallel state dicts (``module.`` prefix)."""
    return {
        group: {f"module.{k}": v.clone() for k, v in getattr(net, attr).state_dict().items()}
        for group, attr in OFFICIAL_GROUPS.items()
    }


def _random_net(seed: int = 0) -> CDDFuseNet:
    torch.manual_seed(seed)
    net = CDDFuseNet()
    with torch.no_grad():  # make norms, temperatures and biases matter
        for name, p in net.named_parameters():
            if p.ndim == 1 or "temperature" in name or "scale" in name:
                p.add_(0.1 * torch.randn_like(p))
    return net


# ------------------------------------------------------------------------------------------ architecture
def test_registered_for_ivif_and_mif() -> None:
    assert METHODS.get("cddfuse") is CDDFuse
    method = create("cddfuse")
    assert method.learned and set(method.tasks) == {"ivif", "mif"}
    with pytest.raises(ValueError, match="unknown option"):
        create("cddfuse", varaint="ivf")
    with pytest.raises(ValueError, match="variant"):
        create("cddfuse", variant="mff")


def test_parameter_count_matches_the_release() -> None:
    counts = parameter_counts()
    assert counts == {
        "DIDF_Encoder": 599_144,
        "DIDF_Decoder": 207_936,
        "BaseFuseLayer": 363_016,
        "DetailFuseLayer": 18_176,
        "total": 1_188_272,
    }
    assert counts["total"] == PARAMETER_COUNT


def test_official_layout_loads_strictly(tmp_path: Path) -> None:
    net = _random_net()
    checkpoint = _official_checkpoint(net)
    # Key names and counts of the release's state dicts (net.py at the pinned commit).
    assert [len(checkpoint[g]) for g in OFFICIAL_GROUPS] == [89, 47, 11, 11]
    for group, key in (
        ("DIDF_Encoder", "module.patch_embed.proj.weight"),
        ("DIDF_Encoder", "module.encoder_level1.3.attn.qkv_dwconv.weight"),
        ("DIDF_Encoder", "module.baseFeature.attn.qkv2.weight"),
        ("DIDF_Encoder", "module.detailFeature.net.2.theta_eta.bottleneckBlock.3.weight"),
        ("DIDF_Decoder", "module.output.2.weight"),
        ("BaseFuseLayer", "module.mlp.dwconv.weight"),
        ("DetailFuseLayer", "module.net.0.shffleconv.bias"),
    ):
        assert key in checkpoint[group], key
    assert tuple(checkpoint["BaseFuseLayer"]["module.mlp.dwconv.weight"].shape) == (128, 2, 3, 3)
    path = tmp_path / "official_layout.pth"
    torch.save(checkpoint, path)

    method = CDDFuse()
    method.load_official(path)
    assert method.net is not None
    for group, attr in OFFICIAL_GROUPS.items():
        loaded = getattr(method.net, attr).state_dict()
        assert all(torch.equal(loaded[k.removeprefix("module.")], v) for k, v in checkpoint[group].items())

    broken = dict(checkpoint)
    del broken["DetailFuseLayer"]
    torch.save(broken, tmp_path / "broken.pth")
    with pytest.raises(ValueError, match="lacks DetailFuseLayer"):
        method.load_official(tmp_path / "broken.pth")
    wrong = {g: dict(sd) for g, sd in checkpoint.items()}
    wrong["DIDF_Decoder"]["module.output.2.weight"] = torch.zeros(1, 16, 3, 3)
    torch.save(wrong, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="does not fit"):
        method.load_official(tmp_path / "wrong.pth")


def test_a_file_named_like_the_official_one_must_be_it(tmp_path: Path) -> None:
    path = tmp_path / "CDDFuse_IVF.pth"
    torch.save(_official_checkpoint(_random_net()), path)
    with pytest.raises(WeightsError, match="d2794226bd48961132111bceff89ce3c955b3985"):
        CDDFuse().load_official(path)


def _expected_fusion(net: CDDFuseNet, vis: np.ndarray, ir: np.ndarray, residual: str) -> np.ndarray:
    """The release's test procedure, step by step: each source encoded on its own, sum, fuse, decode,
    min-max normalise."""
    with torch.no_grad():
        v = torch.from_numpy(vis)[None, None]
        i = torch.from_numpy(ir)[None, None]
        vb, vd, _ = net.encoder(v)
        ib, id_, _ = net.encoder(i)
        res = {"visible": v, "sum": v + i, "none": None}[residual]
        out, _ = net.decoder(res, net.base_fuse(vb + ib), net.detail_fuse(vd + id_))
        out = (out - out.min()) / (out.max() - out.min())
    return out[0, 0].numpy()


@pytest.mark.parametrize(
    ("options", "vis_is", "residual"),
    [
        ({"variant": "ivf"}, "b", "visible"),  # test_IVF.py: Decoder(data_VIS, ...)
        ({"variant": "mif"}, "a", "none"),  # test_MIF.py, MIF weights: Decoder(None, ...)
        ({"variant": "ivf", "visible": "a", "residual": "sum"}, "a", "sum"),  # test_MIF.py, IVF weights
    ],
)
def test_fusion_follows_the_test_scripts(tmp_path: Path, options: dict[str, Any], vis_is: str, residual: str) -> None:
    net = _random_net(1)
    path = tmp_path / "w.pth"
    torch.save(_official_checkpoint(net), path)
    rng = np.random.default_rng(0)
    a = rng.random((20, 24), dtype=np.float32)
    b = np.clip(a * 0.5 + 0.3 * rng.random((20, 24), dtype=np.float32), 0, 1).astype(np.float32)
    method = CDDFuse(**options)
    method.load_official(path)
    fused = method.fuse(a, b)
    vis, ir = (b, a) if vis_is == "b" else (a, b)
    assert fused.dtype == np.float32 and fused.shape == a.shape
    assert fused.min() == 0.0 and fused.max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(fused, _expected_fusion(net, vis, ir, residual), atol=2e-6)


def test_normalize_off_gives_the_sigmoid_output(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(_official_checkpoint(_random_net(2)), path)
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 16, 16), dtype=np.float32)
    raw = CDDFuse(normalize=False)
    raw.load_official(path)
    out = raw.fuse(a, b)
    assert 0.0 < out.min() and out.max() < 1.0
    with pytest.raises(RuntimeError, match="no weights loaded"):
        CDDFuse().fuse(a, b)


# ------------------------------------------------------------------------------------------------ losses
def _t(values: list[float], shape: tuple[int, ...] = (1, 1, 2, 2)) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(shape)


def test_correlation_coefficient_hand_computed() -> None:
    x = _t([1, 2, 3, 4])
    assert float(cc(x, _t([2, 4, 6, 8]))) == pytest.approx(1.0, abs=1e-6)
    assert float(cc(x, _t([4, 3, 2, 1]))) == pytest.approx(-1.0, abs=1e-6)
    # centred x = (-1.5, -.5, .5, 1.5), y = (-1.5, .5, -.5, 1.5): sum xy = 4, |x|^2 = |y|^2 = 5 -> 0.8
    assert float(cc(x, _t([1, 3, 2, 4]))) == pytest.approx(0.8, abs=1e-6)
    assert float(cc(_t([1, -1, 1, -1]), _t([1, 1, -1, -1]))) == pytest.approx(0.0, abs=1e-7)
    assert float(cc(_t([5, 5, 5, 5]), x)) == 0.0  # constant channel: eps in the denominator
    # mean over (image, channel): channels with cc 1 and 0.8 -> 0.9
    two = cc(_t([1, 2, 3, 4, 1, 2, 3, 4], (1, 2, 2, 2)), _t([2, 4, 6, 8, 1, 3, 2, 4], (1, 2, 2, 2)))
    assert float(two) == pytest.approx(0.9, abs=1e-6)
    # decomposition loss cc(D)^2 / (1.01 + cc(B)): cc(B) = 1, cc(D) = 0.8 -> 0.64 / 2.01
    loss = decomposition_loss(x, _t([2, 4, 6, 8]), x, _t([1, 3, 2, 4]))
    assert float(loss) == pytest.approx(0.64 / 2.01, abs=1e-6)
    loss = decomposition_loss(x, _t([4, 3, 2, 1]), x, _t([4, 3, 2, 1]))  # cc(B) = cc(D) = -1 -> 1 / 0.01
    assert float(loss) == pytest.approx(100.0, rel=1e-4)


def test_fusion_loss_hand_computed() -> None:
    impulse = torch.zeros(1, 1, 3, 3)
    impulse[0, 0, 1, 1] = 1.0
    zeros = torch.zeros_like(impulse)
    # |Sobel x| + |Sobel y| of an impulse, zero padding: 2 on the 8 neighbours, 0 at the centre.
    np.testing.assert_array_equal(sobel_abs(impulse)[0, 0].numpy(), [[2, 2, 2], [2, 0, 2], [2, 2, 2]])
    total, intensity, gradient = fusion_loss(impulse, zeros, zeros)
    assert float(intensity) == pytest.approx(1 / 9, abs=1e-7)
    assert float(gradient) == pytest.approx(16 / 9, abs=1e-6)
    assert float(total) == pytest.approx(1 / 9 + 10 * 16 / 9, abs=1e-5)
    # the fused image equal to the elementwise max of sources whose gradients it also dominates: 0
    a = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert float(fusion_loss(0.5 * a, a, a)[0]) == 0.0


def test_stage1_loss_terms_match_kornia_0_2_conventions() -> None:
    c1 = 0.01**2
    # constant 0 vs constant 1: SSIM = C1 / (1 + C1) everywhere, kornia's loss (1 - SSIM) / 2
    loss = ssim_loss(torch.zeros(1, 1, 12, 12), torch.ones(1, 1, 12, 12))
    assert float(loss) == pytest.approx((1 - c1 / (1 + c1)) / 2, abs=1e-6)
    x = torch.rand(2, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    assert float(ssim_loss(x, x)) == pytest.approx(0.0, abs=1e-6)
    # SpatialGradient: Sobel / 8 with replicate padding; on a ramp x[i, j] = j: d/dx = 1 inside, 0.5 at
    # the left and right columns, d/dy = 0
    ramp = torch.arange(6, dtype=torch.float32).expand(1, 1, 5, 6)
    g = spatial_gradient(ramp)[0]
    np.testing.assert_allclose(g[0].numpy(), np.tile([0.5, 1, 1, 1, 1, 0.5], (5, 1)), atol=1e-6)
    np.testing.assert_array_equal(g[1].numpy(), np.zeros((5, 6)))


# ---------------------------------------------------------------------------------------------- training
def test_schedule_follows_the_release() -> None:
    # 120 epochs of 10 steps: stage I for epochs 0-39; enc/dec lr halves every 20 epochs; the fusion
    # layers' StepLR only advances in stage II.
    trainer = CDDFuseTrainer("cpu", steps=1200, seed=0)
    assert trainer.epoch(199) == 19 and trainer.epoch(200) == 20
    assert [trainer.stage(s) for s in (0, 399, 400, 1199)] == [1, 1, 2, 2]
    rates = {s: trainer.learning_rates(s) for s in (0, 200, 400, 600, 1199)}
    assert [rates[s]["encoder"] for s in rates] == [1e-4, 5e-5, 2.5e-5, 1.25e-5, 3.125e-6]
    assert [rates[s]["base_fuse"] for s in rates] == [1e-4, 1e-4, 1e-4, 5e-5, 1.25e-5]  # (119-40)//20 = 3
    explicit = CDDFuseTrainer("cpu", epoch_steps=10, seed=0)
    assert explicit.stage(399) == 1 and explicit.stage(400) == 2
    assert explicit.learning_rates(10**6)["encoder"] == 1e-6  # floor
    with pytest.raises(ValueError, match="needs the run length"):
        CDDFuseTrainer("cpu")
    with pytest.raises(TypeError, match="unknown option"):
        CDDFuseTrainer("cpu", steps=10, lr_gama=0.1)
    mif = CDDFuse(variant="mif").trainer("cpu", steps=10, seed=0)
    assert mif.residual is False and mif.visible == "a"
    ivf = CDDFuse().trainer("cpu", steps=10, seed=0, batch_size=16, patch_size=128)
    assert ivf.residual is True and ivf.visible == "b"


@pytest.mark.parametrize("stage", [1, 2])
def test_a_few_real_steps_decrease_the_loss(real_batch: torch.Tensor, stage: int) -> None:
    epochs_stage1 = 120 if stage == 1 else 0
    trainer = CDDFuseTrainer("cpu", steps=1000, epochs_stage1=epochs_stage1, seed=0)
    history = [trainer.train_step(real_batch, step) for step in range(3)]
    assert all(h["stage"] == stage for h in history)
    assert all(list(h) == list(LOSS_KEYS) for h in history)
    losses = [h["loss"] for h in history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    if stage == 1:
        assert np.isnan(history[0]["fusion"]) and history[0]["rec_vis"] > 0
    else:
        assert np.isnan(history[0]["rec_vis"]) and history[0]["fusion"] > 0
    exported = trainer.export()
    assert set(exported) == set(OFFICIAL_GROUPS)


def test_resume_after_a_kill_is_bitwise_identical(msrs_patches: np.ndarray, tmp_path: Path) -> None:
    patches = np.ascontiguousarray(msrs_patches[:, :, :32, :32])
    # 4 steps, 4 "epochs" of one step: stage I for steps 0-1, stage II for 2-3, lr halving every step.
    options = {"steps": 4, "epochs": 4, "epochs_stage1": 2, "lr_step_epochs": 1, "seed": 3}
    whole, run = check_resume(
        lambda: CDDFuseTrainer("cpu", **options), patches, tmp_path, steps=4, checkpoint_every=2, crash_at=3, seed=5
    )
    assert set(torch.load(run / FINAL, weights_only=True)) == set(OFFICIAL_GROUPS)
    assert [r[2] for r in log_rows(whole)[1:]] == ["1", "1", "2", "2"]

    method = CDDFuse()
    method.load(run / FINAL)
    fused = method.fuse(patches[0, 0] / np.float32(255), patches[0, 1] / np.float32(255))
    assert fused.shape == (32, 32) and np.isfinite(fused).all()
