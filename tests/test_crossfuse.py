"""CrossFuse: architecture and official state-dict layout, CAM pieces, losses, two-stage training, resume,
official-weight loading and the test-time procedure. Real data comes from the bundle's MSRS train split."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from training_helpers import check_resume, crop_patches, log_rows, recipe, torch_threads

from fusebench.color import luminance
from fusebench.fuse import fuse_images
from fusebench.imageio import read_image
from fusebench.methods import METHODS, create
from fusebench.methods.crossfuse import OFFICIAL_FILES, CrossFuseTrainer, official_paths
from fusebench.methods.crossfuse import losses as cl
from fusebench.methods.crossfuse import network as cn
from fusebench.methods.crossfuse.method import stage1_subset
from fusebench.training import FINAL

MSRS_PAIRS = ("00556D", "00881N")


_two_threads = torch_threads(2, scope="function")


@pytest.fixture(scope="module")
def msrs(shared: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """Two real MSRS train pairs as gray float32 [0, 1] images (infrared, visible luma)."""
    root = shared / "datasets" / "MSRS" / "train"
    out = []
    for name in MSRS_PAIRS:
        ir, vi = (read_image(root / modality / f"{name}.png") for modality in ("ir", "vi"))
        out.append((np.asarray(luminance(ir), np.float32), np.asarray(luminance(vi), np.float32)))
    return out


def patches(pairs: list[tuple[np.ndarray, np.ndarray]], size: int, corners: int = 1) -> np.ndarray:
    """size x size patches (uint8, Nx2xSxS) of the pairs at the first ``corners`` fixed, textured positions."""
    return crop_patches(pairs, size, [(180, 200), (240, 330), (120, 420), (300, 120)][:corners])


def as_batch(p: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(p.astype(np.float32) / 255.0)


# ------------------------------------------------------------------------------ the official layout
def conv_keys(prefix: str, cin: int, cout: int, k: int = 3, bn: bool = False) -> dict[str, tuple[int, ...]]:
    keys = {f"{prefix}.conv2d.0.weight": (cout, cin, k, k), f"{prefix}.conv2d.0.bias": (cout,)}
    if bn:
        for name in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{prefix}.conv2d.1.{name}"] = (cout,)
        keys[f"{prefix}.conv2d.1.num_batches_tracked"] = ()
    return keys


def official_auto_encoder_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``Auto_Encoder_single(1, 1, 32, 64, 3, 128, 128)``, from the release's code."""
    keys = conv_keys("fea_encoder1.conv1", 1, 32)
    for index, cin in ((0, 32), (2, 128)):
        block = f"fea_encoder1.dense_blocks.{index}"
        for i in range(3):
            keys |= conv_keys(f"{block}.dense_conv{i}", cin + 64 * i, 64)
        keys |= conv_keys(f"{block}.adjust_conv", cin + 192, 128)
    keys |= conv_keys("recon_decoder1.conv1", 128, 64)
    keys |= conv_keys("recon_decoder1.conv_block.0", 64, 64)
    keys |= conv_keys("recon_decoder1.conv_block.2", 64, 32)
    keys |= conv_keys("recon_decoder1.conv_last", 32, 1, k=1)
    return keys


def block_keys(prefix: str, cross: bool, dim: int = 512) -> dict[str, tuple[int, ...]]:
    keys: dict[str, tuple[int, ...]] = {}

    def linear(name: str, cin: int, cout: int) -> None:
        keys[f"{prefix}.{name}.weight"] = (cout, cin)
        keys[f"{prefix}.{name}.bias"] = (cout,)

    keys[f"{prefix}.norm1.weight"] = keys[f"{prefix}.norm1.bias"] = (dim,)
    linear("attn.qkv", dim, 3 * dim)
    if cross:
        for name in ("q_linear", "k_linear", "v_linear"):
            linear(f"attn.{name}", dim, dim)
    linear("attn.proj", dim, dim)
    keys[f"{prefix}.norm2.weight"] = keys[f"{prefix}.norm2.bias"] = (dim,)
    linear("mlp.fc1", dim, 4 * dim)
    linear("mlp.fc2", 4 * dim, dim)
    return keys


def official_fusion_layout() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``Trans_FuseNet`` (img_size 32, patch 2, part_out 128, depth 1/1, 16 heads)."""
    keys: dict[str, tuple[int, ...]] = {}
    for outer in ("self_atten_block1", "self_atten_block2"):
        for inner in ("self_atten1", "self_atten2"):
            stack = f"cross_atten_block.{outer}.{inner}"
            keys |= block_keys(f"{stack}.blocks.0", cross=False)
            keys[f"{stack}.norm.weight"] = keys[f"{stack}.norm.bias"] = (512,)
    for inner in ("cross_atten1", "cross_atten2"):
        stack = f"cross_atten_block.cross_atten_block.{inner}"
        keys |= block_keys(f"{stack}.blocks.0", cross=True)
        keys[f"{stack}.norm.weight"] = keys[f"{stack}.norm.bias"] = (512,)
    keys["conv_gra.weight"] = (32, 32, 3, 3)
    keys |= conv_keys("decoder_fusion.conv1", 128, 64, bn=True)
    keys |= conv_keys("decoder_fusion.conv_block.0", 64, 64, bn=True)
    keys |= conv_keys("decoder_fusion.conv_block.2", 64, 32, bn=True)
    keys |= conv_keys("decoder_fusion.conv_block.4", 32, 32, bn=True)
    keys |= conv_keys("decoder_fusion.conv_last", 32, 1, k=1, bn=True)
    keys["decoder_fusion.weight.conv_sh.weight"] = (32, 32, 3, 3)
    keys["decoder_fusion.weight.conv_de.weight"] = (128, 128, 3, 3)
    return keys


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_registered_for_ivif() -> None:
    cls = METHODS.get("crossfuse")
    assert cls.learned and cls.tasks == ("ivif",)
    assert recipe("crossfuse")["stage1_fraction"] == 0.5


def test_state_dicts_have_the_official_layout() -> None:
    assert shapes(cn.AutoEncoder()) == official_auto_encoder_layout()
    assert shapes(cn.FusionNet()) == official_fusion_layout()


def test_parameter_counts() -> None:
    counts = cn.parameter_counts(cn.AutoEncoder(), cn.FusionNet())
    print("crossfuse parameter counts:", counts)
    # encoder: conv1 320 + DB1 (18,496 + 55,360 + 92,224 + adjust 258,176) + DB2 (73,792 + 110,656 + 147,520
    # + adjust 368,768) = 1,125,312, the paper's 1.125 M per encoder
    assert counts["encoder"] == 1_125_312
    assert counts["reconstruction_decoder"] == 129_217  # 73,792 + 36,928 + 18,464 + 33
    # CAM: 4 self-attention stacks of (block 3,152,384 + norm 1,024) + 2 cross-attention stacks of
    # (block 3,152,384 + q/k/v 787,968 + norm 1,024) = 20,496,384; the forward never reads the two cross
    # blocks' qkv (787,968 each) nor the four self stacks' final norm (1,024 each): 18,916,352 are used
    assert counts["cam"] == 20_496_384
    assert counts["cam_used"] == 18_916_352
    # decoder: convs + BatchNorm 73,920 + 37,056 + 18,528 + 9,312 + 35 = 138,851 trained, plus the fixed
    # mean filters conv_sh (9,216) and conv_de (147,456)
    assert counts["decoder_trainable"] == 138_851
    assert counts["decoder"] == 295_523
    assert counts["fusion_net"] == 20_496_384 + 295_523 + 9_216  # + the unused Laplacian conv_gra


# ------------------------------------------------------------------------------------------- CAM pieces
def test_re_softmax_by_hand() -> None:
    q = torch.tensor([[[1.0, 0.0]]])  # one query
    k = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # two keys
    scale = 1 / math.sqrt(2)
    # scores q.k / sqrt(2) = [0.70711, 0]; re-softmax of [-0.70711, 0]: e^-0.70711 = 0.49307
    resoft = cn.attention_weights(q, k, scale, reverse=True)
    assert torch.allclose(resoft, torch.tensor([[[0.49307 / 1.49307, 1 / 1.49307]]]), atol=1e-5)
    plain = cn.attention_weights(q, k, scale, reverse=False)  # the usual softmax favours the similar key
    assert torch.allclose(plain, torch.tensor([[[1 / 1.49307, 0.49307 / 1.49307]]]), atol=1e-5)

    # In the module: identity projections, one head of dimension 2 -> output = re-softmax weights @ V
    attn = cn.Attention(2, n_heads=1, cross=True)
    with torch.no_grad():
        for lin in (attn.q_linear, attn.k_linear, attn.v_linear, attn.proj):
            lin.weight.copy_(torch.eye(2))
            lin.bias.zero_()
    attn.keep_weights = True
    v = torch.tensor([[[10.0, 0.0], [0.0, 10.0]]])
    out = attn([q, k, v])
    assert attn.last_weights is not None and attn.last_weights.shape == (1, 1, 1, 2)
    assert torch.allclose(out, torch.tensor([[[3.3024, 6.6976]]]), atol=1e-3)


def test_attention_shapes() -> None:
    torch.manual_seed(0)
    cam = cn.CrossAttentionMechanism(tile=16)
    attns = [m for m in cam.modules() if isinstance(m, cn.Attention)]
    assert len(attns) == 6 and sum(a.cross for a in attns) == 2
    for a in attns:
        a.keep_weights = True
    ir, vi = torch.randn(2, 128, 16, 16), torch.randn(2, 128, 16, 16)
    tokens, geometry = cn.to_tokens(ir, 2)
    assert tokens.shape == (2, 64, 512) and geometry == (16, 16, 8, 8)  # 8x8 patches of 2x2x128
    with torch.no_grad():
        out = cam(ir, vi, shift_flag=True)
    assert out.shape == (2, 128, 16, 16)
    for a in attns:  # batch x 16 heads x 64 query tokens x 64 key tokens, rows summing to 1
        assert a.last_weights is not None and a.last_weights.shape == (2, 16, 64, 64)
        assert torch.allclose(a.last_weights.sum(-1), torch.ones(2, 16, 64), atol=1e-5)
    assert attns[0].head_dim == 32 and attns[0].scale == 32**-0.5


def test_tokens_follow_the_official_patch_order() -> None:
    x = torch.randn(1, 3, 5, 7)  # odd sides: padded by reflection at the bottom / right
    tokens, geometry = cn.to_tokens(x, 2)
    padded = F.pad(x, (0, 1, 0, 1), mode="reflect")
    expected = torch.stack(
        [padded[0, :, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].reshape(-1) for i in range(3) for j in range(4)]
    )
    assert torch.equal(tokens[0], expected)
    assert torch.equal(cn.from_tokens(tokens, 2, geometry), x)


def test_shift_unshift_round_trip() -> None:
    x = torch.randn(2, 4, 32, 32)
    shifted = cn.shift(x, 16)
    assert torch.equal(shifted[:, :, 0, 0], x[:, :, 16, 16])  # moved up-left by half a tile
    assert torch.equal(shifted[:, :, 31, 15], x[:, :, 15, 31])
    assert torch.equal(cn.unshift(shifted, 16), x)
    torch.manual_seed(1)
    cam = cn.CrossAttentionMechanism(tile=16)
    ir, vi = torch.randn(1, 128, 16, 16), torch.randn(1, 128, 16, 16)
    with torch.no_grad():
        assert not torch.allclose(cam(ir, vi, True), cam(ir, vi, False))


def test_tiled_cam_equals_one_tile_at_a_time() -> None:
    torch.manual_seed(2)
    net = cn.FusionNet(tile=8).eval()
    ir, vi = torch.randn(1, 128, 12, 20), torch.randn(1, 128, 12, 20)
    with torch.no_grad():
        batched = net.cam_tiled(ir, vi, shift_flag=True)
        # the release: pad bottom/right by reflection to a multiple of the tile, one tile after the other
        pi, pv = (F.pad(t, (0, 4, 0, 4), mode="reflect") for t in (ir, vi))
        rows = []
        for i in range(2):
            row = [
                net.cross_atten_block(
                    pi[..., 8 * i : 8 * i + 8, 8 * j : 8 * j + 8],
                    pv[..., 8 * i : 8 * i + 8, 8 * j : 8 * j + 8],
                )
                for j in range(3)
            ]
            rows.append(torch.cat(row, dim=3))
        looped = torch.cat(rows, dim=2)[..., :12, :20]
    assert batched.shape == (1, 128, 12, 20)
    assert torch.allclose(batched, looped, atol=1e-5)


def test_reflect_pad_beyond_the_side_follows_numpy() -> None:
    x = torch.arange(5.0)[None, None, None]
    assert torch.equal(cn.reflect_pad(x, 0, 3, 0, 0), F.pad(x, (0, 3, 0, 0), mode="reflect"))
    wide = cn.reflect_pad(x, 0, 24, 0, 0)[0, 0, 0].numpy()  # the release's ReflectionPad2d raises here
    assert np.array_equal(wide, np.pad(np.arange(5.0), (0, 24), mode="reflect"))


# ----------------------------------------------------------------------------------------------- losses
def test_official_ms_ssim_on_constant_images() -> None:
    a, b = torch.full((1, 1, 16, 16), 200.0), torch.full((1, 1, 16, 16), 100.0)
    # zero variance: cs = 1 at every scale; ssim = (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 255)^2
    s = (2 * 200 * 100 + 6.5025) / (200**2 + 100**2 + 6.5025)
    # official: prod_{i<5}(((1 + 1) / 2)^w_i * ((s + 1) / 2)^w_5) -> exponent 4 * 0.1333 on the last SSIM
    assert float(cl.official_ms_ssim(a, b)) == pytest.approx(((s + 1) / 2) ** (4 * 0.1333), rel=1e-5)
    standard = cl.reconstruction_loss(a, b, ssim_weight=1.0, kind="standard")
    assert float(standard["ms_ssim"]) == pytest.approx(((s + 1) / 2) ** 0.1333, rel=1e-5)
    # the range is guessed from the output: max <= 128 -> L = 1, C1 = 1e-4
    small = cl.official_ms_ssim(torch.full((1, 1, 16, 16), 1.0), torch.full((1, 1, 16, 16), 0.5))
    s1 = (2 * 0.5 + 1e-4) / (1 + 0.25 + 1e-4)
    assert float(small) == pytest.approx(((s1 + 1) / 2) ** (4 * 0.1333), rel=1e-5)
    assert cl.guessed_range(torch.tensor([-0.6, 200.0])) == 256.0


def test_reconstruction_loss_values() -> None:
    torch.manual_seed(3)
    x = torch.rand(2, 1, 32, 32) * 255
    same = cl.reconstruction_loss(x, x.clone())
    assert float(same["mse"]) == 0.0
    assert float(same["ms_ssim"]) == pytest.approx(1.0, abs=1e-5)
    assert float(same["loss"]) == pytest.approx(0.0, abs=0.1)  # 1e4 * (1 - MS-SSIM)
    y = x + 10.0
    off = cl.reconstruction_loss(y, x)
    assert float(off["mse"]) == pytest.approx(100.0, rel=1e-5)
    assert float(off["loss"]) == pytest.approx(100.0 + 1e4 * (1 - float(off["ms_ssim"])), rel=1e-6)


def test_intensity_loss_by_hand() -> None:
    ir = torch.zeros(1, 1, 8, 16)
    ir[..., :8] = 200.0  # bright left half
    vi = torch.full((1, 1, 8, 16), 100.0)
    # 11x11 zero-padded means: the infrared mean wins where more than half of the in-image window columns
    # are bright: columns 0..7 exactly, so the target is 200 on the left and 100 on the right
    target = cl.intensity_target(ir, vi)
    assert torch.equal(target[..., :8], ir[..., :8]) and torch.equal(target[..., 8:], vi[..., 8:])
    zero = torch.zeros_like(ir)
    assert float(cl.intensity_loss(zero, ir, vi)) == pytest.approx((200**2 + 100**2) / 2)
    assert float(cl.intensity_loss(zero, vi, vi)) == pytest.approx(100**2)  # ties go to the visible image
    # soft weights: 200 / 300 and 100 / 300 everywhere (the zero padding scales both means alike)
    soft = cl.intensity_loss(zero, torch.full_like(ir, 200.0), vi, mask="soft")
    assert float(soft) == pytest.approx((200 * 2 / 3 + 100 / 3) ** 2, rel=1e-5)


def test_gradient_loss_by_hand() -> None:
    ir, vi, out = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    ir[..., 3, 3] = 10.0
    # Laplacian: -40 at the pixel (clamped to 0), +10 at its 4 neighbours; target = max over the sources
    assert float(cl.gradient_loss(out, ir, vi)) == pytest.approx(4 * 100 / 64)
    assert float(cl.gradient_loss(ir, ir, vi)) == 0.0
    assert float(cl.gradient_loss(-ir, ir, vi)) == pytest.approx((40**2 + 4 * 10**2) / 64)
    corner = torch.zeros(1, 1, 8, 8)
    corner[..., 0, 0] = 10.0  # zero padding: two neighbours inside the image
    assert float(cl.gradient_loss(out, corner, vi)) == pytest.approx(2 * 100 / 64)
    total = cl.fusion_loss(out, ir, vi)
    assert float(total["loss"]) == pytest.approx(float(total["intensity"]) + 10 * 4 * 100 / 64)


# --------------------------------------------------------------------------------------------- training
def test_stage1_steps_reduce_the_reconstruction_loss(msrs) -> None:
    # the stage-1 sub-batch is a pure function of (batch size, count, seed, step): the same after a resume
    picks = [stage1_subset(8, 2, 0, step) for step in (5, 5, 6)]
    assert np.array_equal(picks[0], picks[1]) and len(picks[0]) == 2 and not np.array_equal(picks[0], picks[2])
    assert np.array_equal(stage1_subset(2, 2, 0, 7), [0, 1])
    trainer = CrossFuseTrainer("cpu", stage1_steps=100, ae_batch_size=2, seed=0)
    assert trainer.stage(0) == 1 and trainer.stage(99) == 1 and trainer.stage(100) == 2
    batch = as_batch(patches(msrs, 32))  # two pairs, both used at every step
    logs = [trainer.train_step(batch, step) for step in range(4)]
    assert all(math.isnan(log["intensity"]) for log in logs)
    for key in ("ae_ir", "ae_vi"):
        assert logs[-1][key] < 0.8 * logs[0][key], [log[key] for log in logs]


def test_stage2_steps_reduce_the_fusion_loss_with_frozen_encoders(msrs) -> None:
    batch = as_batch(patches(msrs, 64))
    trainer = CrossFuseTrainer("cpu", steps=4, stage1_fraction=0.0, seed=0)
    encoders = [{k: v.clone() for k, v in ae.state_dict().items()} for ae in (trainer.ae_ir, trainer.ae_vi)]
    logs = [trainer.train_step(batch, step) for step in range(4)]
    assert [log["lr"] for log in logs] == pytest.approx([1e-3, 1e-4, 1e-4, 1e-4])  # x0.1 after 2/32
    assert logs[-1]["loss"] < 0.8 * logs[0]["loss"], [log["loss"] for log in logs]
    for before, ae in zip(encoders, (trainer.ae_ir, trainer.ae_vi), strict=True):
        assert all(torch.equal(before[k], v) for k, v in ae.state_dict().items())


def test_trainer_needs_the_stage_boundary() -> None:
    with pytest.raises(TypeError, match="steps"):
        CrossFuseTrainer("cpu")
    with pytest.raises(TypeError, match="unknown option"):
        CrossFuseTrainer("cpu", steps=10, learning_rate=1.0)
    trainer = CrossFuseTrainer("cpu", steps=160_000)
    assert trainer.stage1_steps == 80_000 and trainer.stage(79_999) == 1 and trainer.stage(80_000) == 2
    assert trainer.learning_rate(39_999) == 1e-4 and trainer.learning_rate(40_000) == pytest.approx(1e-5)
    assert trainer.learning_rate(84_999) == 1e-3 and trainer.learning_rate(85_000) == pytest.approx(1e-4)


def test_resume_through_the_shared_loop_is_bitwise_identical(msrs, tmp_path: Path) -> None:
    data = patches(msrs, 32, corners=2)
    options = {"steps": 4, "stage1_fraction": 0.25, "ae_batch_size": 1, "seed": 0}
    # stage 1 done, one stage-2 step done, checkpoint at step 3, crash
    straight, _ = check_resume(
        lambda: CrossFuseTrainer("cpu", **options), data, tmp_path, steps=4, checkpoint_every=3, crash_at=3, seed=0
    )
    assert {"auto_encoder_ir", "auto_encoder_vi", "fusion"} <= set(torch.load(straight / FINAL, weights_only=True))
    log = log_rows(straight)
    assert len(log) == 5 and log[0][:2] == ["step", "loss"]

    method = create("crossfuse")
    method.load(tmp_path / "resumed" / FINAL)
    ir, vi = msrs[0]
    fused = method.fuse(ir[:40, :48], vi[:40, :48])
    assert fused.shape == (40, 48) and fused.dtype == np.float32


# ------------------------------------------------------------------------------ official weights, fuse
#: where save_official puts its random files: not under the release's names, which must hold the pinned files
RANDOM = {part: f"{'transfuse' if part == 'fusion' else 'autoencoder'}/random_{part}.model" for part in OFFICIAL_FILES}
RANDOM_OPTIONS = {f"official_{part}": path for part, path in RANDOM.items()}


def save_official(folder: Path, seed: int) -> dict[str, dict[str, torch.Tensor]]:
    """Random models saved as the release saves them (``torch.save(model.state_dict())``, its key order)."""
    torch.manual_seed(seed)
    parts = {"ir": cn.AutoEncoder(), "vi": cn.AutoEncoder(), "fusion": cn.FusionNet()}
    layouts = {"ir": official_auto_encoder_layout(), "vi": official_auto_encoder_layout()}
    layouts["fusion"] = official_fusion_layout()
    with torch.no_grad():  # make the BatchNorm statistics non-trivial
        for m in parts["fusion"].modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    saved = {}
    for part, net in parts.items():
        state = net.state_dict()
        saved[part] = OrderedDict((k, state[k].clone()) for k in layouts[part])
        (folder / RANDOM[part]).parent.mkdir(parents=True, exist_ok=True)
        torch.save(saved[part], folder / RANDOM[part])
    return saved


def test_load_official_round_trip_and_fuse(msrs, tmp_path: Path) -> None:
    saved = save_official(tmp_path / "crossfuse", seed=4)
    method = create("crossfuse", **RANDOM_OPTIONS)
    with pytest.raises(RuntimeError, match="no weights"):
        method.fuse(np.zeros((16, 16), np.float32), np.zeros((16, 16), np.float32))
    method.load_official(tmp_path / "crossfuse")
    for part, net in (("ir", method.ae_ir), ("vi", method.ae_vi), ("fusion", method.fusion)):
        state = net.state_dict()
        assert state.keys() == saved[part].keys()
        assert all(torch.equal(state[k], v) for k, v in saved[part].items())

    ir, vi = msrs[1]
    a, b = ir[100:172, 200:296], vi[100:172, 200:296]  # 72x96: deep maps 9x12, padded to one 32x32 tile
    fused = method.fuse(a, b)
    assert fused.shape == a.shape and fused.dtype == np.float32
    assert fused.min() == 0.0 and 0.999 < fused.max() < 1.0  # min-max normalised output
    # sizes that are not multiples of 8 (decoder output padded back) and the 16x16 minimum
    assert method.fuse(a[:45, :61], b[:45, :61]).shape == (45, 61)
    assert method.fuse(a[:16, :16], b[:16, :16]).shape == (16, 16)
    with pytest.raises(ValueError, match="at least 16x16"):
        method.fuse(a[:15, :20], b[:15, :20])
    colour = fuse_images(method, a, np.repeat(b[..., None], 3, axis=2))  # the benchmark's colour path
    assert colour.shape == (*a.shape, 3)
    method.shift = False  # option shift=False: no shifted self-attention at test time
    assert not np.allclose(method.fuse(a, b), fused)


def test_official_paths_find_the_release_layout(tmp_path: Path) -> None:
    expected = {}
    for part, name in OFFICIAL_FILES.items():  # upstream's models/autoencoder/ and models/transfuse/
        expected[part] = tmp_path / "models" / ("transfuse" if part == "fusion" else "autoencoder") / name
        expected[part].parent.mkdir(parents=True, exist_ok=True)
        expected[part].touch()
    assert official_paths(tmp_path) == expected


def test_load_official_from_the_fetched_files(tmp_path: Path) -> None:
    """The workflow passes the first of the three files fetch-weights lays out side by side in
    results/weights/crossfuse/; the others are found beside it."""
    torch.manual_seed(5)
    parts = {"ir": cn.AutoEncoder(), "vi": cn.AutoEncoder(), "fusion": cn.FusionNet()}
    flat = {f"official_{part}": f"random_{part}.model" for part in parts}  # the pinned names are verified
    for part, net in parts.items():
        torch.save(net.state_dict(), tmp_path / flat[f"official_{part}"])
    method = create("crossfuse", **flat)
    method.load_official(tmp_path / flat["official_ir"])
    assert all(torch.equal(method.fusion.state_dict()[k], v) for k, v in parts["fusion"].state_dict().items())


def test_load_official_paths_and_errors(tmp_path: Path) -> None:
    save_official(tmp_path / "w", seed=5)
    with pytest.raises(FileNotFoundError, match="official_ir"):  # no file under the release's names
        create("crossfuse").load_official(tmp_path / "w")
    moved = tmp_path / "elsewhere.model"
    (tmp_path / "w" / RANDOM["fusion"]).rename(moved)
    with pytest.raises(FileNotFoundError, match="random_fusion"):
        create("crossfuse", **RANDOM_OPTIONS).load_official(tmp_path / "w")
    create("crossfuse", **{**RANDOM_OPTIONS, "official_fusion": "../elsewhere.model"}).load_official(tmp_path / "w")

    wrong = torch.load(moved, weights_only=True)
    del wrong["conv_gra.weight"]
    torch.save(wrong, moved)
    with pytest.raises(ValueError, match="fusion network weights do not match"):
        create("crossfuse", **{**RANDOM_OPTIONS, "official_fusion": str(moved)}).load_official(tmp_path / "w")
    with pytest.raises(TypeError, match="unknown option"):
        create("crossfuse", strategy="l1")
