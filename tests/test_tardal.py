"""TarDAL (v0): official-weight parity on the reference pairs, architecture, options, training and resume.

The parity test follows the official-outputs README step by step: infrared = one channel of the 8-bit decode;
visible grey = OpenCV's 15-bit ``BGR2GRAY`` of the colour decode; ``u8 / 255`` to the network; tanh output
clipped to [0, 1] and **truncated** to 8 bits; colour restored with OpenCV's 8-bit YCrCb formulas.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import check_resume, check_untrained_errors, real_patches, recipe, torch_threads

from fusebench import official
from fusebench.methods import METHODS, LearnedMethod, create
from fusebench.methods.tardal import (
    TarDAL,
    TarDALDiscriminator,
    TarDALGenerator,
    TarDALTrainer,
    flush_subnormals,
    ir_saliency_mask,
    parameter_count,
    visual_saliency,
)

OFFICIAL = Path("reference") / "official-outputs" / "tardal"
WEIGHTS = Path("weights") / "official" / "tardal-v0"
FOLDER = {"tardal": "tardal", "tardal+": "tardal-plus", "tardal++": "tardal-plusplus"}
PAIRS = [("TNO", p) for p in ("01", "02", "03", "04", "05")] + [
    ("MSRS", "00004N"),
    ("MSRS", "00055D"),
    ("RoadScene", "FLIR_00006"),
    ("RoadScene", "FLIR_00018"),
]
#: run by default (about 10 s on one thread); the other 19 outputs are marked slow (`pytest -m slow`)
FAST = {
    ("tardal", "05"),
    ("tardal+", "05"),
    ("tardal++", "05"),
    ("tardal", "FLIR_00018"),
    ("tardal", "00004N"),
}


one_thread = torch_threads(1)


# ------------------------------------------------- the official procedure (its pieces: fusebench.official)
def official_inputs(shared: Path, dataset: str, pair: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    folder = shared / "datasets" / dataset / ("all" if dataset == "RoadScene" else "test")
    ir_path = next((folder / "ir").glob(f"{pair}.*"))
    vi_path = next((folder / "vi").glob(f"{pair}.*"))
    ir_rgb, vi_rgb = official.pil_rgb(ir_path), official.pil_rgb(vi_path)
    assert (ir_rgb == ir_rgb[..., :1]).all()  # IR files are grey: cv2 IMREAD_GRAYSCALE = one channel
    return ir_rgb[..., 0], official.opencv_gray(vi_rgb), vi_rgb


def method(shared: Path, variant: str) -> TarDAL:
    m = create("tardal", task="ivif", variant=variant)
    assert isinstance(m, TarDAL)
    m.load_official(shared / WEIGHTS)
    return m


CASES = [
    pytest.param(v, d, p, marks=() if (v, p) in FAST else pytest.mark.slow, id=f"{v}-{d}/{p}")
    for v in FOLDER
    for d, p in PAIRS
]


@pytest.mark.parametrize(("variant", "dataset", "pair"), CASES)
def test_parity_with_official_outputs(shared: Path, variant: str, dataset: str, pair: str) -> None:
    ir8, vi8, vi_rgb = official_inputs(shared, dataset, pair)
    m = method(shared, variant)
    raw = m.fuse_raw(ir8.astype(np.float32) / np.float32(255), vi8.astype(np.float32) / np.float32(255))
    folder = shared / OFFICIAL / FOLDER[variant] / dataset
    npy = folder / f"{pair}.npy"
    if npy.is_file():  # the network itself, before any post-processing
        assert np.abs(raw - np.load(npy)).max() <= 1e-5
    fused = m.fuse(ir8 / np.float32(255), vi8 / np.float32(255))
    assert fused.dtype == np.float32 and fused.min() >= 0 and fused.max() <= 1
    y8 = (fused * np.float32(255.0)).astype(np.uint8)  # the official truncating cast
    expected = official.pil_rgb(folder / f"{pair}.png")
    ours = official.opencv_ycrcb_to_rgb(y8, *official.opencv_crcb(vi_rgb))
    diff = np.abs(ours.astype(np.int16) - expected.astype(np.int16))
    assert diff.max() <= 1, f"max diff {diff.max()} on {(diff > 1).sum()} values"


def test_train_mode_batchnorm_keeps_the_stored_statistics(shared: Path) -> None:
    m = method(shared, "tardal")
    assert m.bn_mode == "train" and method(shared, "tardal+").bn_mode == "eval"
    x = np.random.default_rng(0).random((40, 48), dtype=np.float32)
    m.fuse(x, x[::-1].copy())
    assert m.net is not None
    before = {k: v.clone() for k, v in m.net.state_dict().items()}
    out1 = m.fuse(x, x[::-1].copy())
    out2 = m.fuse(x, x[::-1].copy())
    assert np.array_equal(out1, out2)
    after = m.net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    # eval mode with the stored statistics gives a different image for tardal.pt (why the mode matters)
    ev = create("tardal", variant="tardal", bn_mode="eval")
    ev.load_official(shared / WEIGHTS)  # type: ignore[attr-defined]
    assert not np.allclose(ev.fuse(x, x[::-1].copy()), out1, atol=1e-2)


def test_subnormal_weights_are_flushed(shared: Path) -> None:
    state = torch.load(shared / WEIGHTS / "tardal++.pt", weights_only=True)
    flushed, count = flush_subnormals(state)
    assert count > 100_000  # the README counts 192,923
    assert flush_subnormals(flushed)[1] == 0
    assert flush_subnormals(torch.load(shared / WEIGHTS / "tardal.pt", weights_only=True))[1] == 0


# --------------------------------------------------------------------------------- architecture, options
def test_registered_and_parameter_counts(shared: Path) -> None:
    assert METHODS.get("tardal") is TarDAL and issubclass(TarDAL, LearnedMethod)
    assert TarDAL.tasks == ("ivif",) and recipe("tardal")["batch_size"] == 8
    assert parameter_count(TarDALGenerator()) == 296_577
    # official discriminator: 3 convs + linear over 28 x 28 x 128 for 224 x 224 inputs
    assert parameter_count(TarDALDiscriminator(32, 224)) == 320 + 18_496 + 73_856 + 28 * 28 * 128 + 1
    state = torch.load(shared / WEIGHTS / "tardal.pt", weights_only=True)
    assert len(state) == 46
    TarDALGenerator().load_state_dict(state, strict=True)


def test_options_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="variant"):
        TarDAL(variant="tardal+++")
    with pytest.raises(ValueError, match="bn_mode"):
        TarDAL(bn_mode="frozen")
    with pytest.raises(ValueError, match="detail_real"):
        TarDAL().trainer("cpu", detail_real="both")
    check_untrained_errors(TarDAL, tmp_path, learning_rate=1.0)


def test_saliency_helpers() -> None:
    ir = torch.zeros(1, 1, 8, 8)
    ir[..., 2:4, 2:4] = 1.0
    m = ir_saliency_mask(ir)
    assert m.shape == ir.shape and m.min() == 0 and m[..., 2, 2] == 1 and m[..., 6, 6] == 0
    assert ir_saliency_mask(torch.full((1, 1, 4, 4), 0.3)).abs().max() == 0
    s = visual_saliency(ir)
    # 4 bright pixels among 64: the rare level is the salient one
    assert s[..., 2, 2] == 1 and s[..., 6, 6] == 0


# ------------------------------------------------------------------------------------------ training
def test_training_updates_all_networks_and_lowers_the_source_loss(mirror: Path) -> None:
    patches = torch.from_numpy(real_patches(mirror, 64).astype(np.float32) / 255)
    trainer = TarDAL().trainer("cpu", seed=0, patch_size=64, lr=1e-3)
    assert isinstance(trainer, TarDALTrainer)
    initial = {
        name: [p.detach().clone() for p in net.parameters()]
        for name, net in [("g", trainer.generator), *trainer.discriminators.items()]
    }
    logs = [trainer.train_step(patches[(2 * s) % len(patches) :][:2], s) for s in range(8)]
    assert all(np.isfinite(list(e.values())).all() for e in logs)
    assert {"loss", "src", "adv_target", "adv_detail", "d_target", "d_detail"} <= set(logs[0])
    for name, net in [("g", trainer.generator), *trainer.discriminators.items()]:
        moved = [not torch.equal(p, q) for p, q in zip(net.parameters(), initial[name], strict=True)]
        # a Wasserstein critic's output bias gets no gradient (it cancels in E D(fake) - E D(real))
        assert all(moved) if name == "g" else sum(moved) >= len(moved) - 1, name
    first, last = np.mean([e["src"] for e in logs[:2]]), np.mean([e["src"] for e in logs[-2:]])
    assert last < first, (first, last)
    exported = trainer.export()
    TarDALGenerator().load_state_dict(exported)
    assert len(exported) == 46


def test_adversarial_terms_reach_the_generator_only_when_asked(mirror: Path) -> None:
    batch = torch.from_numpy(real_patches(mirror, 32)[:2].astype(np.float32) / 255)
    grads = {}
    for flag in (True, False):
        t = TarDALTrainer("cpu", seed=1, patch_size=32, adversarial_grad=flag, weight=(0.0, 0.0, 1.0))
        fused = t.generate(batch)
        t.generator_loss(batch, fused, 0)["loss"].backward()
        grads[flag] = t.generator.encoder[0].weight.grad
    assert grads[True] is not None and grads[True].abs().sum() > 0
    assert grads[False] is None or grads[False].abs().sum() == 0  # the v0 code's no_grad


def test_resume_through_the_shared_loop(mirror: Path, tmp_path: Path) -> None:
    patches = real_patches(mirror, 32)
    check_resume(lambda: TarDAL().trainer("cpu", seed=2, patch_size=32), patches, tmp_path)
