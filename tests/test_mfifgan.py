"""MFIF-GAN: the generator (parameter count, official key layout), the synthetic multi-focus data, the
official post-processing, the conditional WGAN-GP, the learning-rate schedule, and training on the shared
adversarial loop with real sharp images (MSRS visible, Harvard MRI): smoke run and bitwise resume."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from training_helpers import check_resume, recipe, torch_threads

from fusebench.color import luminance
from fusebench.imageio import read_image
from fusebench.methods import METHODS, create
from fusebench.methods.base import DecisionMapMethod, combine
from fusebench.methods.gan import parameter_count
from fusebench.methods.mfifgan import (
    GENERATOR_PARAMETERS,
    MFIFGAN,
    ConditionalWGANGP,
    MFIFGANDiscriminator,
    MFIFGANGenerator,
    MFIFGANTrainer,
    SyntheticFocus,
    center_crop,
    disk_kernel,
    gaussian_kernel,
    postprocess_map,
    random_masks,
    remove_small_regions,
)
from fusebench.training import FINAL

SIZE = 32


one_thread = torch_threads(1)


@pytest.fixture(scope="module")
def sharp(shared: Path) -> np.ndarray:
    """6 real sharp patch pairs (uint8 N x 2 x SIZE x SIZE): MSRS train visible luma and Harvard MRI slices
    (the two sources of a pair are two sharp images; MFIF-GAN synthesises its pairs from each of them)."""
    vi = [luminance(read_image(shared / "datasets/MSRS/train/vi" / f"{n}.png")) for n in ("00556D", "00633D")]
    mri_dir = shared / "datasets/Harvard-MRI-CT/train/mri"
    mri = [read_image(p) for p in sorted(mri_dir.iterdir())[:2]]
    mri = [luminance(m) if m.ndim == 3 else m for m in mri]
    out = []
    for y, x in ((150, 200), (250, 330), (200, 450)):
        for img_v, img_m in zip(vi, mri, strict=True):
            my, mx = 80 + (y % 90), 80 + (x % 90)
            out.append(np.stack([img_v[y : y + SIZE, x : x + SIZE], img_m[my : my + SIZE, mx : mx + SIZE]]))
    return np.round(np.stack(out) * 255).astype(np.uint8)


def as_batch(p: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(p.astype(np.float32) / 255)


# ------------------------------------------------------------------------------------------ networks
def test_registration_and_defaults() -> None:
    cls = METHODS.get("mfifgan")
    assert cls is MFIFGAN and issubclass(cls, DecisionMapMethod) and cls.tasks == ("mff",)
    d = recipe("mfifgan")
    assert (d["steps"], d["n_critic"], d["lambda_rec"], d["lambda_gp"]) == (120_000, 5, 10.0, 10.0)
    assert (d["g_lr"], d["d_lr"], d["beta1"], d["beta2"]) == (1e-4, 1e-4, 0.5, 0.999)


def test_generator_parameters_and_official_layout() -> None:
    g = MFIFGANGenerator()
    assert parameter_count(g) == GENERATOR_PARAMETERS == 13_700_928
    keys = list(g.state_dict())
    # official names (model.py: Generator.line1 = Sequential(Line), Line.line = Sequential(...), decode)
    assert keys[0] == "line1.0.line.0.weight"
    for key in (
        "line1.0.line.9.conv1.weight",
        "line1.0.line.9.bn2.running_var",
        "line1.0.line.9.se.fc.0.weight",
        "line1.0.line.17.se.fc.2.weight",
        "decode.0.weight",
        "decode.3.weight",
        "decode.6.weight",
    ):
        assert key in keys, key
    assert g.state_dict()["decode.0.weight"].shape == (512, 256, 4, 4)  # ConvTranspose2d(512 -> 256)
    assert g.state_dict()["line1.0.line.9.se.fc.0.weight"].shape == (16, 256)
    assert len(keys) == 157
    d = MFIFGANDiscriminator()
    assert d(torch.zeros(2, 3, 64, 64)).shape[:2] == (2, 1)
    out = g.eval()(torch.zeros(1, 1, 30, 34), torch.zeros(1, 1, 30, 34))
    assert out.shape == (1, 1, 32, 36)  # 4 ceil(H / 4): the method center-crops


def test_load_official_layout_state_dict(tmp_path: Path) -> None:
    """An official-layout ``*-G.ckpt`` (plain state dict; old PyTorch files lack num_batches_tracked) loads
    as it is and gives the generator's own eval-mode map."""
    torch.manual_seed(0)
    g = MFIFGANGenerator()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    state = {k: v for k, v in g.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "random-G.ckpt")  # not the release's name, which must hold the pinned file
    method = create("mfifgan", postprocess=False)
    method.load_official(tmp_path / "random-G.ckpt")  # type: ignore[attr-defined]
    rng = np.random.default_rng(0)
    a, b = rng.random((2, 28, 36), dtype=np.float32)
    m = method.decision_map(a, b)  # type: ignore[attr-defined]
    with torch.no_grad():
        expected = g.eval()(torch.from_numpy(a * 2 - 1)[None, None], torch.from_numpy(b * 2 - 1)[None, None])
    assert np.allclose(m, expected[0, 0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="MFIF-GAN generator"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "bad.ckpt")
        create("mfifgan").load_official(tmp_path / "bad.ckpt")  # type: ignore[attr-defined]


def _official_solver_test(g: MFIFGANGenerator, rgb_a: np.ndarray, rgb_b: np.ndarray, grey: bool) -> np.ndarray:
    """Solver.test written out literally: the official Generator.forward (torch.chunk per colour channel),
    to_same_size through an 8-bit PIL image, CNN_post_process with skimage, save_image / the grayscale branch."""
    from PIL import Image
    from skimage.morphology import remove_small_objects

    def load(rgb: np.ndarray) -> torch.Tensor:
        return ((torch.from_numpy(rgb).permute(2, 0, 1).float() / 255 - 0.5) / 0.5)[None]

    a, b = load(rgb_a), load(rgb_b)
    with torch.no_grad():
        fa = [g.line1(x) for x in torch.chunk(a, 3, dim=1)]
        fb = [g.line1(x) for x in torch.chunk(b, 3, dim=1)]
        m = g.decode(torch.cat([(fa[0] + fa[1] + fa[2]) / 3, (fb[0] + fb[1] + fb[2]) / 3], dim=1))
    h, w = rgb_a.shape[:2]
    if m.shape[-2:] != (h, w):
        pil = Image.fromarray(m[0, 0].mul(255).byte().numpy())
        top, left = int(round((pil.height - h) / 2.0)), int(round((pil.width - w) / 2.0))
        m = torch.from_numpy(np.array(pil.crop((left, top, left + w, top + h)))).float().div(255)[None, None]
    ar = m.numpy() > 0.5
    size = 0.001 * h * w
    fm = torch.from_numpy((1 - remove_small_objects(~remove_small_objects(ar, size), size)).astype(np.float64))
    fused = ((a * fm.float() + b * (1 - fm.float())) + 1) / 2
    fused = fused.clamp(0, 1)
    if grey:
        return (fused[0, 0] * 255).numpy().astype("uint8")
    return fused[0].mul(255).add(0.5).clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()


@pytest.mark.filterwarnings("ignore:Parameter `min_size` is deprecated:FutureWarning")  # the official call
@pytest.mark.parametrize(("grey", "size"), [(False, (30, 26)), (True, (28, 36))], ids=["colour-cropped", "grey"])
def test_official_protocol_runs_the_encoder_per_colour_channel(
    tmp_path: Path, grey: bool, size: tuple[int, int]
) -> None:
    """fuse_official on files = the official test written out literally: encoder on R, G, B separately with the
    encodings averaged (not once on Y), the 8-bit crop of to_same_size, post-processing, the official savers."""
    from PIL import Image

    torch.manual_seed(1)
    g = MFIFGANGenerator().eval()
    torch.save(g.state_dict(), tmp_path / "random-G.ckpt")  # the registered name is verified: random weights fail
    method = create("mfifgan")
    method.load_official(tmp_path / "random-G.ckpt")  # type: ignore[attr-defined]
    rng = np.random.default_rng(2)
    rgbs = []
    for name in ("a", "b"):
        rgb = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        if grey:
            rgb[..., 1] = rgb[..., 2] = rgb[..., 0]
        Image.fromarray(rgb[..., 0] if grey else rgb).save(tmp_path / f"{name}.png")
        rgbs.append(rgb)
    ours = method.fuse_official(tmp_path / "a.png", tmp_path / "b.png")  # type: ignore[attr-defined]
    expected = _official_solver_test(g, *rgbs, grey=grey)
    assert ours.dtype == np.uint8 and ours.shape == expected.shape == (size if grey else (*size, 3))
    assert np.abs(ours.astype(np.int16) - expected).max() <= 1
    assert (ours == expected).mean() > 0.999


def test_center_crop_matches_torchvision_rounding() -> None:
    t = torch.arange(36.0).view(1, 1, 6, 6)
    assert center_crop(t, 5, 5)[0, 0, 0, 0] == 0  # round(0.5) = 0 (banker's rounding, as torchvision)
    assert center_crop(t, 3, 3)[0, 0, 0, 0] == t[0, 0, 2, 2]  # round(1.5) = 2
    assert center_crop(t, 4, 4)[0, 0, 0, 0] == t[0, 0, 1, 1]


# ------------------------------------------------------------------------------------- synthetic data
def test_kernels() -> None:
    g = gaussian_kernel(1.0)
    assert g.shape == (5, 5) and np.isclose(g.sum(), 1) and g[2, 2] == g.max()  # 2 ceil(2 sigma) + 1
    assert gaussian_kernel(2.5).shape == (11, 11)
    d = disk_kernel(3.0)
    assert np.isclose(d.sum(), 1) and d.shape == (7, 7) and d[3, 3] == d.max() and d[0, 0] == 0


def test_masks_and_synthesis(sharp: np.ndarray) -> None:
    gen = torch.Generator().manual_seed(3)
    masks = random_masks(20, 48, 40, coverage=(0.3, 0.7), generator=gen)
    assert masks.shape == (20, 1, 48, 40) and set(masks.unique().tolist()) <= {0.0, 1.0}
    cover = masks.mean(dim=(1, 2, 3))
    assert cover.min() > 0.27 and cover.max() < 0.73

    batch = as_batch(sharp[:3])
    synth = SyntheticFocus(blur=(1.5, 1.5))
    a, b, m = synth(batch, generator=torch.Generator().manual_seed(1))
    a2, b2, m2 = synth(batch, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, a2) and torch.equal(b, b2) and torch.equal(m, m2)  # deterministic given the RNG
    assert a.shape == b.shape == m.shape == (6, 1, SIZE, SIZE)
    s = batch.reshape(-1, 1, SIZE, SIZE)
    # A is the sharp image where M = 1; B is the sharp image far from the foreground (alpha matte ~ 0)
    assert torch.equal(a[m == 1], s[m == 1])
    far = torch.nn.functional.max_pool2d(m, 9, 1, 4) == 0
    assert torch.allclose(b[far], s[far], atol=1e-6)
    # A is blurred where M = 0: less high-frequency energy than the sharp image there
    lap = torch.nn.functional.conv2d
    k = torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]])
    bg = (m[..., 1:-1, 1:-1] == 0) & (torch.nn.functional.max_pool2d(m, 5, 1, 2)[..., 1:-1, 1:-1] == 0)
    assert lap(a, k)[bg].abs().mean() < 0.8 * lap(s, k)[bg].abs().mean()

    hard = SyntheticFocus(psf="disk", blur=(2.0, 2.0), matte="hard", swap=1.0, sources="b")
    a, b, m = hard(batch, generator=torch.Generator().manual_seed(2))
    assert a.shape == (3, 1, SIZE, SIZE)
    sb = batch[:, 1:2]
    assert torch.equal(a[m == 1], sb[m == 1]) and torch.equal(b[m == 0], sb[m == 0])  # swapped roles
    with pytest.raises(ValueError):
        SyntheticFocus(psf="box")
    with pytest.raises(TypeError):
        SyntheticFocus.from_options({"synthetic_bogus": 1})


def test_postprocessing() -> None:
    m = np.zeros((100, 100), np.float32)
    m[20:60, 20:60] = 0.9  # a large foreground region: kept
    m[80:83, 80:83] = 0.8  # 9 pixels < 0.001 * 100 * 100 = 10: removed
    m[30:33, 30:33] = 0.1  # a 9-pixel hole in the foreground: filled
    m[5:9, 5:9] = 0.7  # 16 pixels: kept
    out = postprocess_map(m)
    assert out.dtype == np.float32 and set(np.unique(out)) == {0.0, 1.0}
    assert out[20:60, 20:60].all() and not out[80:83, 80:83].any() and out[5:9, 5:9].all()
    # 4-connectivity: two diagonal pixels are two regions
    diag = np.zeros((4, 4), bool)
    diag[0, 0] = diag[1, 1] = True
    assert not remove_small_regions(diag, 2).any()
    assert remove_small_regions(diag, 1).sum() == 2


def test_combine_broadcasts_over_colour() -> None:
    m = np.array([[1.0, 0.0], [0.25, 0.5]], np.float32)
    a, b = np.ones((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32)
    out = combine(m, a, b)
    assert out.shape == (2, 2, 3) and np.allclose(out[..., 1], m)
    assert np.allclose(combine(m, a[..., 0], b[..., 0]), m)


# ------------------------------------------------------------------------------------------- training
def test_conditional_gradient_penalty_is_on_the_map_only() -> None:
    torch.manual_seed(0)
    disc = MFIFGANDiscriminator()
    real = torch.randn(2, 3, 32, 32)
    fake = torch.cat([real[:, :2], torch.rand(2, 1, 32, 32)], dim=1)
    torch.manual_seed(1)
    loss, terms = ConditionalWGANGP(weight=10.0).discriminator_loss(disc, real, fake)
    torch.manual_seed(1)
    alpha = torch.rand(2, 1, 1, 1)
    x_hat = (alpha * real[:, 2:] + (1 - alpha) * fake[:, 2:]).requires_grad_(True)
    out = disc(torch.cat([real[:, :2], x_hat], 1))
    (grad,) = torch.autograd.grad(out, x_hat, torch.ones_like(out))
    expected = ((grad.view(2, -1).norm(dim=1) - 1) ** 2).mean()
    assert torch.allclose(terms["penalty"], expected)
    assert torch.allclose(loss, terms["fake"] - terms["real"] + 10 * expected)


def test_learning_rate_schedule_follows_the_official_loop() -> None:
    trainer = MFIFGANTrainer("cpu", steps=5000, lr_decay_iters=2500, lr_update_step=1000, seed=0)
    lr, expected = 1e-4, []
    for i in range(5000):  # solver.py: the decay happens at the end of iteration i
        expected.append(lr)
        if (i + 1) % 1000 == 0 and (i + 1) > 5000 - 2500:
            lr -= 1e-4 / 2500
    got = [trainer.lr_at(i)[0] for i in range(5000)]
    assert np.allclose(got, expected, rtol=0, atol=1e-15)
    assert MFIFGANTrainer("cpu", seed=0).lr_at(10**6) == (1e-4, 1e-4)  # no steps given: constant
    # the optimisers carry the rate of the coming step (set after each step, hence checkpointed with them)
    short = MFIFGANTrainer("cpu", steps=8, lr_decay_iters=4, lr_update_step=2, g_lr=1.0, d_lr=2.0, seed=0)
    for step in range(8):
        g, d = short.g_optimizer.param_groups[0]["lr"], short.d_optimizers["map"].param_groups[0]["lr"]
        assert (g, d) == short.lr_at(step) == ((1.0, 2.0) if step < 6 else (0.75, 1.5))  # decay at i + 1 = 6
        short.after_step(step)


def make_trainer(**options: Any) -> MFIFGANTrainer:
    trainer = create("mfifgan").trainer(  # type: ignore[attr-defined]
        "cpu", seed=4, steps=8, n_critic=2, g_lr=1e-3, d_lr=1e-3, synthetic_blur=[1.0, 2.0], **options
    )
    assert isinstance(trainer, MFIFGANTrainer)
    return trainer


def test_smoke_training_both_players_learn(sharp: np.ndarray) -> None:
    torch.manual_seed(0)
    trainer = make_trainer()
    g0 = {k: v.clone() for k, v in trainer.generator.state_dict().items()}
    d0 = {k: v.clone() for k, v in trainer.discriminators["map"].state_dict().items()}
    batch = as_batch(sharp[:2])
    logs = [trainer.train_step(batch, step) for step in range(8)]
    assert set(logs[0]) == {"loss", "adversarial", "reconstruction", "d_map"}
    assert np.isnan(logs[0]["loss"]) and np.isfinite(logs[1]["loss"])  # G updates at steps 1, 3, 5, 7
    assert logs[2]["loss"] == logs[1]["loss"]  # repeated between generator updates
    g_logs = [logs[i] for i in (1, 3, 5, 7)]
    assert all(np.isfinite(list(row.values())).all() for row in g_logs)
    assert g_logs[-1]["reconstruction"] < g_logs[0]["reconstruction"]
    with torch.no_grad():  # any patch size: the map is center-cropped to the patch
        assert trainer.generate(trainer.prepare_batch(batch[:1, :, :30, :26])).shape == (2, 1, 30, 26)
    assert any(not torch.equal(v, g0[k]) for k, v in trainer.generator.state_dict().items())
    assert any(not torch.equal(v, d0[k]) for k, v in trainer.discriminators["map"].state_dict().items())
    unit = make_trainer(map_range="unit").prepare_batch(batch)
    assert set(unit[:, 2].unique().tolist()) <= {0.0, 1.0}
    official = trainer.prepare_batch(batch)
    assert set(official[:, 2].unique().tolist()) <= {-1.0, 1.0}


def test_resume_is_bitwise_identical_and_model_fuses(sharp: np.ndarray, tmp_path: Path) -> None:
    reference, _ = check_resume(
        make_trainer, sharp, tmp_path, steps=5, checkpoint_every=2, crash_at=3, batch_size=1, seed=1
    )

    method = create("mfifgan", task="mff")
    method.load(reference / FINAL)  # type: ignore[attr-defined]
    a, b = sharp[0, 0, :, :30] / np.float32(255), sharp[0, 1, :, :30] / np.float32(255)
    m = method.decision_map(a, b)  # type: ignore[attr-defined]
    assert m.shape == a.shape and set(np.unique(m)) <= {0.0, 1.0}
    fused = method.fuse(a, b)
    assert fused.shape == a.shape and np.allclose(fused, combine(m, a, b))
    raw = create("mfifgan", postprocess=False)
    raw.load(reference / FINAL)  # type: ignore[attr-defined]
    soft = raw.decision_map(a, b)  # type: ignore[attr-defined]
    assert 0 <= soft.min() and soft.max() <= 1 and len(np.unique(soft)) > 2
