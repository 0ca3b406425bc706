"""ReFusion: official-weight parity on the real reference pairs, key mapping, and the meta-learned training.

The parity test re-implements the authors' test script step by step (see the README beside the reference
outputs): Pillow decode to RGB float32 0..255, OpenCV's float RGB->YCrCb formulas (chroma offset 0.5 on
0..255 data) in NumPy, Y/255 to the network, per-image min-max normalisation, imageio's float->uint8 rescale
and rounding, and OpenCV's float YCrCb->RGB for the colour image.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import check_resume, check_untrained_errors, real_patches, torch_threads

from fusebench import official
from fusebench.color import luminance
from fusebench.imageio import read_image
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.refusion import (
    OFFICIAL_KEYS,
    LossProposalNet,
    ReFusion,
    ReFusionNet,
    ReFusionTrainer,
    from_official_state_dict,
    fusion_loss,
    minmax,
    official_chroma,
    parameter_count,
    reconstruction_loss,
    sobel_gradient,
    to_official_state_dict,
)
from fusebench.training import FINAL

OFFICIAL = Path("reference") / "official-outputs" / "refusion"
WEIGHTS = Path("weights") / "official" / "refusion"
TASK_OF = {
    "ReFusion_IVIF.pth": "ivif",
    "ReFusion_MIF.pth": "mif",
    "ReFusion_MFIF.pth": "mff",
    "ReFusion_MEIF.pth": "mef",
}
#: pairs run by default (one or more per task, small images); the others are marked slow (`pytest -m slow`)
FAST_PAIRS = {"05", "16009", "16010", "25015", "25022", "FLIR_00018", "lytro_01", "507"}
ALL_PAIRS = [("TNO", p) for p in ("01", "02", "03", "04", "05")] + [
    ("MSRS", "00004N"),
    ("MSRS", "00055D"),
    ("RoadScene", "FLIR_00006"),
    ("RoadScene", "FLIR_00018"),
    ("Harvard-MRI-CT", "16009"),
    ("Harvard-MRI-CT", "16010"),
    ("Harvard-MRI-PET", "25015"),
    ("Harvard-MRI-PET", "25022"),
    ("MFIFB", "lytro_01"),
    ("MFIFB", "lytro_02"),
    ("MFIFB", "lytro_03"),
    ("MEFB", "507"),
    ("MEFB", "AirBellowsGap"),
]
F32 = np.float32


#: one intra-op thread: on a shared, loaded CPU, OpenMP's thread barriers make these small-tensor workloads (and
#: the double backward of the meta step) several times slower with two threads than one
one_thread = torch_threads(1)


# ------------------------------------------- the official procedure (its pieces: fusebench.official)
def official_inputs(path1: Path, path2: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(Y1 / 255, Y2 / 255, chroma for the output or None) as the authors' test.py computes them."""
    img1, img2 = official.pil_rgb(path1).astype(np.float32), official.pil_rgb(path2).astype(np.float32)
    ycc1, ycc2 = official.opencv_float_ycrcb(img1), official.opencv_float_ycrcb(img2)
    if official.is_gray_rgb(img1):
        crcb = None if official.is_gray_rgb(img2) else ycc2[..., 1:]
    else:
        crcb = ycc1[..., 1:] if official.is_gray_rgb(img2) else official_chroma(ycc1[..., 1:], ycc2[..., 1:])
    return ycc1[..., 0] / 255, ycc2[..., 0] / 255, crcb  # float32 / int stays float32


def official_output(raw: np.ndarray, crcb: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """(grey PNG pixels, RGB PNG pixels or None) from the raw network output, as test.py + imsave do."""
    fused = minmax(raw) * F32(255)  # min-max in float32 torch, then * 255
    gray = official.imageio_as_uint8(fused)
    if crcb is None:
        return gray, None
    rgb = np.clip(official.opencv_float_ycrcb_to_rgb(np.concatenate([fused[..., None], crcb], axis=-1)), 0, 255)
    return gray, official.imageio_as_uint8(rgb)


def max_diff(ours: np.ndarray, ref: np.ndarray) -> tuple[int, float]:
    """(max abs difference in grey levels, fraction of values that differ)."""
    d = np.abs(ours.astype(np.int16) - ref.astype(np.int16))
    return int(d.max()), float((d > 0).mean())


# -------------------------------------------------------------------------------------- fixtures
def reference_rows(shared: Path) -> dict[tuple[str, str], dict[str, dict[str, str]]]:
    """(dataset, pair) -> {"gray": row, "rgb": row (colour pairs only)} from outputs.csv."""
    out: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    with (shared / OFFICIAL / "outputs.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            kind = "rgb" if row["channels"] == "3" else "gray"
            out.setdefault((row["dataset"], row["pair"]), {})[kind] = row
    return out


_LOADED: dict[str, ReFusion] = {}


def official_method(shared: Path, task: str, input_order: str = "ab") -> ReFusion:
    key = f"{task}-{input_order}"
    if key not in _LOADED:
        method = create("refusion", task=task, input_order=input_order)
        assert isinstance(method, ReFusion)
        method.load_official(shared / WEIGHTS, "cpu")
        _LOADED[key] = method
    return _LOADED[key]


# ------------------------------------------------------------------------------------------- tests
def test_registered() -> None:
    cls = METHODS.get("refusion")
    assert issubclass(cls, LearnedMethod)
    assert set(cls.tasks) == {"ivif", "mif", "mff", "mef"}


def test_parameter_count() -> None:
    assert parameter_count(ReFusionNet()) == 59_856


def test_official_state_dicts_map_to_ours(shared: Path) -> None:
    ours = set(ReFusionNet().state_dict())
    for name in TASK_OF:
        state = torch.load(shared / WEIGHTS / name, map_location="cpu", weights_only=True)
        assert len(state) == OFFICIAL_KEYS
        twins = [k for k in state if k.endswith(".conv.weight")]
        assert len(twins) == 54 and not any(k.endswith(".bias") for k in state if ".conv" in k)
        for key in twins:  # the duplicated MetaConv2d names hold bit-identical tensors
            assert torch.equal(state[key], state[key.replace(".conv.weight", ".weight")])
        mapped = from_official_state_dict(state)
        assert set(mapped) == ours and len(mapped) == 86
        back = to_official_state_dict(mapped)
        assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)
        ReFusionNet().load_state_dict(mapped, strict=True)
    assert from_official_state_dict(mapped) == mapped  # our layout passes through unchanged


@pytest.mark.parametrize(
    ("dataset", "pair"),
    [pytest.param(d, p, marks=() if p in FAST_PAIRS else pytest.mark.slow, id=f"{d}/{p}") for d, p in ALL_PAIRS],
)
def test_parity_with_official_outputs(shared: Path, dataset: str, pair: str) -> None:
    rows = reference_rows(shared)[(dataset, pair)]
    gray_row = rows["gray"]
    method = official_method(shared, TASK_OF[gray_row["weights"]])  # input 1 = source_a, as in the script
    mirror = shared / "datasets"
    y1, y2, crcb = official_inputs(mirror / gray_row["source_a"], mirror / gray_row["source_b"])
    raw = method.fuse_raw(y1, y2)
    gray, rgb = official_output(raw, crcb)
    ref_gray = np.asarray(Image.open(shared / OFFICIAL / gray_row["output"]))
    assert gray.shape == ref_gray.shape == (int(gray_row["height"]), int(gray_row["width"]))
    d_gray = max_diff(gray, ref_gray)
    d_rgb = None
    if "rgb" in rows:
        assert rgb is not None
        ref_rgb = np.asarray(Image.open(shared / OFFICIAL / rows["rgb"]["output"]))
        assert rgb.shape == ref_rgb.shape
        d_rgb = max_diff(rgb, ref_rgb)
    else:
        assert rgb is None  # two grey sources: the script writes no colour image
    npy = next((r["raw_npy"] for r in rows.values() if r["raw_npy"]), "")
    d_npy = None
    if npy:
        reference_raw = np.load(shared / OFFICIAL / npy)
        d_npy = float(np.abs(raw - reference_raw).max())
        # the post-processing alone, fed the official raw output: grey exact, colour within 1 level
        gray_from_npy, rgb_from_npy = official_output(reference_raw, crcb)
        assert np.array_equal(gray_from_npy, ref_gray)
        if d_rgb is not None:
            assert max_diff(rgb_from_npy, ref_rgb)[0] <= 1  # type: ignore[arg-type]
    print(f"\n{dataset}/{pair}: grey {d_gray}, rgb {d_rgb} (max, share differing); raw-npy {d_npy}")
    assert d_gray[0] <= 1, f"grey PNG differs by {d_gray[0]} levels"
    assert d_rgb is None or d_rgb[0] <= 1, f"RGB PNG differs by {d_rgb[0]} levels"
    assert d_npy is None or d_npy <= 1e-5, f"raw output differs from the .npy by {d_npy}"


def test_fuse_api_matches_official_luminance(shared: Path) -> None:
    """What the benchmark calls: fuse(Y_a, Y_b) in [0, 1] with fusebench's own reading, source order
    (mri first for MIF) and default options reproduces the official grey output."""
    mirror = shared / "datasets"
    for task, folder, first, second, pair, ref in (
        ("ivif", "TNO/test", "ir", "vi", "05", "IVIF/TNO/05.png"),
        ("mif", "Harvard-MRI-PET/test", "mri", "pet", "25015", "MIF/Harvard-MRI-PET/25015_gray.png"),
    ):
        method = create("refusion", task=task)
        assert isinstance(method, ReFusion)
        method.load_official(shared / WEIGHTS)
        a = luminance(read_image(mirror / folder / first / f"{pair}.png"))
        b = luminance(read_image(mirror / folder / second / f"{pair}.png"))
        fused = method.fuse(a, b)
        assert fused.dtype == np.float32 and fused.shape == a.shape
        assert fused.min() == 0.0 and fused.max() == 1.0  # the official min-max normalisation
        expected = np.asarray(Image.open(shared / OFFICIAL / ref)).astype(np.int16)
        assert np.abs(np.rint(fused * 255).astype(np.int16) - expected).max() <= 1
    # normalize="none" gives the raw sigmoid output, "minmax" stretches exactly that
    raw = create("refusion", task=task, normalize="none")
    assert isinstance(raw, ReFusion)
    raw.net, raw.device = method.net, method.device
    a, b = a[64:128, 64:128], b[64:128, 64:128]
    out = raw.fuse(a, b)
    assert 0 < out.min() < out.max() < 1
    np.testing.assert_array_equal(method.fuse(a, b), minmax(out))


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="task"):
        ReFusion(task="segmentation")
    with pytest.raises(ValueError, match="normalize"):
        ReFusion(normalize="clip")
    assert ReFusion(task="mif").input_order == "ba" and ReFusion(task="MFIF").task == "mff"
    check_untrained_errors(ReFusion, tmp_path, learning_rate=1e-3)


# ------------------------------------------------------------------------------------------ training
def as_batch(patches: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(patches.astype(np.float32) / 255)


def test_loss_proposal_weights_sum_to_one(mirror: Path) -> None:
    torch.manual_seed(0)
    x = as_batch(real_patches(mirror, 32)[:2])
    w, v = LossProposalNet()(x)
    assert w.shape == v.shape == (2, 2, 32, 32)
    for weights in (w, v):
        assert torch.all(weights > 0)
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(2, 32, 32), rtol=0, atol=1e-6)


def test_loss_terms() -> None:
    torch.manual_seed(0)
    src = torch.rand(2, 2, 16, 16)
    a = src[:, :1]
    only_a = torch.cat([torch.ones_like(a), torch.zeros_like(a)], dim=1)
    # fused = A with all weight on A: both terms vanish; with all weight on B they do not
    assert float(fusion_loss(a, src, only_a, only_a)["total"]) == 0.0
    assert float(fusion_loss(a, src, only_a.flip(1), only_a.flip(1))["total"]) > 0.0
    # Sobel with zero padding: a constant image has gradient only at its border
    g = sobel_gradient(torch.full((1, 1, 8, 8), 0.5))
    assert float(g[..., 1:-1, 1:-1].abs().max()) == 0.0 and float(g[..., 0, 0]) > 0
    perfect = reconstruction_loss(src, src)
    assert float(perfect["total"]) == 0.0
    noisy = src + 0.1 * torch.randn_like(src)
    worse = reconstruction_loss(noisy, src, "max")
    both = reconstruction_loss(noisy, src, "sum")
    assert 0 < float(worse["int"]) <= float(both["int"])  # max(e_a, e_b)^2 <= e_a^2 + e_b^2


def snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_meta_step_updates_only_p_through_the_inner_step(mirror: Path) -> None:
    batch = as_batch(real_patches(mirror, 32)[:4])
    trainer = ReFusion().trainer("cpu", seed=0, meta_steps=1, fusion_steps=1)
    assert isinstance(trainer, ReFusionTrainer) and trainer.is_meta_step(0) and not trainer.is_meta_step(1)
    f0, p0, r0 = snapshot(trainer.fusion), snapshot(trainer.proposal), snapshot(trainer.recon)
    logged = trainer.train_step(batch, 0)
    assert logged["meta"] == 1.0 and np.isfinite(list(logged.values())).all()
    assert changed(p0, trainer.proposal)
    assert not changed(f0, trainer.fusion) and not changed(r0, trainer.recon)  # F', R' were look-aheads
    # the largest P entry moved by exactly the (normalised) outer step, lr = 1e-4
    moved = max(float((trainer.proposal.state_dict()[k] - p0[k]).abs().max()) for k in p0)
    assert moved == pytest.approx(1e-4, rel=1e-3)
    # P's only path to the outer loss is the inner step of F: without it, P gets no gradient at all
    frozen = ReFusion().trainer("cpu", seed=0, meta_steps=1, fusion_steps=1, inner_lr=0.0)
    p0 = snapshot(frozen.proposal)
    frozen.train_step(batch, 0)
    assert not changed(p0, frozen.proposal)
    # a fusion step updates F and R, not P
    p1 = snapshot(trainer.proposal)
    f1, r1 = snapshot(trainer.fusion), snapshot(trainer.recon)
    assert trainer.train_step(batch, 1)["meta"] == 0.0
    assert changed(f1, trainer.fusion) and changed(r1, trainer.recon) and not changed(p1, trainer.proposal)


def test_training_lowers_the_losses_on_real_patches(mirror: Path) -> None:
    patches = real_patches(mirror, 64)
    trainer = ReFusion().trainer("cpu", seed=0, lr=1e-3, meta_steps=1, fusion_steps=9)
    assert isinstance(trainer, ReFusionTrainer)
    probe = as_batch(patches[[0, 3, 5, 6]])
    before = trainer.evaluate(probe)
    rng = np.random.default_rng(0)
    logged = [trainer.train_step(as_batch(patches[rng.choice(len(patches), 2, replace=False)]), s) for s in range(20)]
    after = trainer.evaluate(probe)
    assert [e["meta"] for e in logged].count(1.0) == 2 and logged[10]["meta"] == 1.0
    assert all(np.isfinite(list(e.values())).all() for e in logged)
    assert after["fusion"] < 0.8 * before["fusion"], (before, after)
    assert after["recon"] < 0.8 * before["recon"], (before, after)
    state = trainer.export()  # F only, our key layout; the authors' class would take to_official_state_dict
    assert all(v.device.type == "cpu" for v in state.values()) and len(to_official_state_dict(state)) == 140
    ReFusionNet().load_state_dict(state, strict=True)


def test_resume_through_the_shared_loop(mirror: Path, tmp_path: Path) -> None:
    patches = real_patches(mirror, 32)
    options = {"seed": 5, "meta_steps": 1, "fusion_steps": 2}  # steps: meta, F, F, meta, F, F
    # crash right after the step-3 checkpoint; F, P, R and both optimisers' moments must resume bitwise
    _, resumed = check_resume(
        lambda: ReFusion().trainer("cpu", **options), patches, tmp_path, steps=6, checkpoint_every=3, crash_at=3, seed=5
    )
    method = ReFusion()
    method.load(resumed / FINAL)  # model.pt is what ReFusion.load reads
    out = method.fuse(patches[0, 0].astype(np.float32) / 255, patches[0, 1].astype(np.float32) / 255)
    assert out.shape == (32, 32) and out.min() == 0.0 and out.max() == 1.0
