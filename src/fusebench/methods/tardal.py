"""TarDAL (J. Liu, X. Fan, Z. Huang, G. Wu, R. Liu, W. Zhong, Z. Luo, "Target-aware Dual Adversarial Learning
and a Multi-scenario Multi-modality Benchmark to Fuse Infrared and Visible for Object Detection", CVPR 2022).

The **v0** code line of ``JinyuanLiu-CV/TarDAL`` (history commit 8ef276f, the code the first public weights
``tardal.pt``, ``tardal+.pt``, ``tardal++.pt`` were released with). Module names mirror it, so its state
dicts (46 entries) load as they are.

Generator (``dim=32, depth=3``, 296,577 parameters), all convolutions 3x3, stride 1, zero padding 1, bias:

* ``encoder``: Conv(2->32), BN, ReLU on ``cat([ir, vi])`` (channel 0 infrared, channel 1 visible);
* ``dense``: three blocks Conv(32(i+1)->32), BN, ReLU; each output is concatenated to the running input
  (32 -> 64 -> 96 -> 128 channels);
* ``fuse``: Conv(128->128), ReLU (no BN); Conv(128->64), BN, ReLU; Conv(64->32), BN, ReLU; Conv(32->1), tanh.

Inputs are in [0, 1]; the tanh output is clipped to [0, 1] (the official test script clips, then truncates to
8 bits; :meth:`TarDAL.fuse` returns the clipped float and leaves quantisation to the caller).

BatchNorm mode (the ``variant`` option; see the official-outputs README): the authors run ``tardal.pt`` with
BatchNorm in **train** mode (statistics of the image being fused) and ``tardal+.pt`` / ``tardal++.pt`` in
**eval** mode (stored running statistics). :meth:`TarDAL.fuse` uses train-mode BatchNorm without touching the
stored running statistics (they are restored after each call). ``tardal+`` / ``tardal++`` carry many subnormal
float32 weights; by default (``flush_denormal=True``) they are set to zero on loading, which is what
``torch.set_flush_denormal(True)`` does to them in arithmetic (the authors' outputs are identical either way)
without changing a process-wide flag, and it avoids the slow subnormal arithmetic on some CPUs.

Training (:class:`TarDALTrainer`, after ``pipeline/train.py`` of v0 and the paper):

* generator loss ``l_src + b3 * (c1 * l_target + c2 * l_detail)`` with ``(b1, b2, b3) = (1, 20, 0.1)`` and
  ``(c1, c2) = (1, 1)``: ``l_src = mean(w1 * l_ir + w2 * l_vi)``, ``l_x = b1 * (1 - SSIM(f, x)) / 2 +
  b2 * |f - x|`` per pixel, with saliency weights ``w1 = 0.5 + 0.5 (s1 - s2)``, ``w2 = 1 - w1`` from the
  visual saliency maps ``s1`` (infrared) and ``s2`` (visible);
* target discriminator: ``ir * m`` (real) vs ``f * m`` (fake); detail discriminator: gradient magnitudes
  ``|grad(vi * (1 - m))|`` vs ``|grad(f * (1 - m))|``; both WGAN-div (``k = 2, p = 6``), 3 stride-2 convs with
  ReLU and a linear layer;
* RMSprop, lr 1e-4 for all three networks; per step: one generator update, then one update of each
  discriminator (on fakes from the generator in eval mode, as the code does); batch 8, 224x224.

Deviations, all documented in docs/methods/tardal.md: the saliency **mask** ``m`` comes from a U^2-Net in the
original (its weights are not available here); fusebench substitutes a deterministic IR contrast mask
(:func:`ir_saliency_mask`). The visual saliency maps are computed per patch (:func:`visual_saliency`).
The v0 code evaluates the adversarial terms under ``torch.no_grad()`` (so they never reach the generator) and
feeds the detail discriminator ``grad(grad(vi) * m)`` as "real"; both are available as options
(``adversarial_grad=False``, ``detail_real="v0"``) but the defaults follow the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .. import official
from ..losses import gradient_magnitude, ssim_map
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .gan import AdversarialTrainer, WGANDiv, check_options, forward_with_bn_mode, parameter_count, seeded

VARIANTS = ("tardal", "tardal+", "tardal++")
#: BatchNorm mode the authors use with each official weight file
VARIANT_BN = {"tardal": "train", "tardal+": "eval", "tardal++": "eval"}
BN_MODES = ("train", "eval")
DETAIL_REAL = ("paper", "v0")
OFFICIAL_KEYS = 46

__all__ = [
    "TarDAL",
    "TarDALDiscriminator",
    "TarDALGenerator",
    "TarDALTrainer",
    "ir_saliency_mask",
    "parameter_count",
    "spatial_gradient",
    "visual_saliency",
]


# --------------------------------------------------------------------------------------------- networks
def _conv(cin: int, cout: int, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, 1, 1)]
    if bn:
        layers.append(nn.BatchNorm2d(cout))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class TarDALGenerator(nn.Module):
    """The v0 generator (module names as in ``modules/generator.py``); input Bx2xHxW (ir, vi) in [0, 1]."""

    def __init__(self, dim: int = 32, depth: int = 3) -> None:
        super().__init__()
        self.depth = depth
        self.encoder = _conv(2, dim)
        self.dense = nn.ModuleList([_conv(dim * (i + 1), dim) for i in range(depth)])
        self.fuse = nn.Sequential(
            _conv(dim * (depth + 1), dim * 4, bn=False),
            _conv(dim * 4, dim * 2),
            _conv(dim * 2, dim),
            nn.Sequential(nn.Conv2d(dim, 1, 3, 1, 1), nn.Tanh()),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.encoder(x)
        for block in self.dense:
            x = torch.cat([x, block(x)], dim=1)
        return self.fuse(x)


class TarDALDiscriminator(nn.Module):
    """Three stride-2 3x3 convs (1->32->64->128, padding 1) with ReLU, then a linear layer to one score.

    The official linear layer has ``(size // 8)^2 * 128`` inputs for a square ``size`` (224 -> 28); here the
    conv output size is computed exactly (``ceil`` three times), which is the same for multiples of 8.
    """

    def __init__(self, dim: int = 32, size: int = 224) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Sequential(nn.Conv2d(1, dim, 3, 2, 1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(dim, dim * 2, 3, 2, 1), nn.ReLU()),
            nn.Sequential(nn.Conv2d(dim * 2, dim * 4, 3, 2, 1), nn.ReLU()),
        )
        side = int(size)
        for _ in range(3):
            side = (side + 1) // 2
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(side * side * dim * 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(self.conv(x)))


# -------------------------------------------------------------------------------------------- helpers
def spatial_gradient(x: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude ``sqrt(gx^2 + gy^2)`` from :func:`fusebench.losses.sobel` divided by 8.

    The v0 code uses kornia's ``SpatialGradient('diff')`` (central differences ``[-0.5, 0, 0.5]``, replicate
    padding); Sobel / 8 is the same central difference smoothed by ``[1, 2, 1] / 4`` across it (reflect
    padding), on the same scale.
    """
    return gradient_magnitude(x, norm="l2") / 8.0


def ir_saliency_mask(ir: torch.Tensor, spread: float = 2.0) -> torch.Tensor:
    """Deterministic stand-in for the U^2-Net target mask: ``clip((ir - mean) / (spread * std), 0, 1)``.

    Per image (statistics over H, W): pixels at or below the image's mean intensity get 0, pixels
    ``spread`` standard deviations above it get 1 -- thermal targets are the warm (bright) regions of an
    infrared image. A flat image gets an all-zero mask.
    """
    mean = ir.mean(dim=(-2, -1), keepdim=True)
    std = ir.std(dim=(-2, -1), keepdim=True, unbiased=False)
    mask = ((ir - mean) / (spread * std).clamp_min(1e-6)).clamp(0.0, 1.0)
    return torch.where(std > 1e-4, mask, torch.zeros_like(mask))


def visual_saliency(x: torch.Tensor) -> torch.Tensor:
    """Histogram-contrast visual saliency map (Ma et al. 2017), min-max normalised to [0, 1] per image.

    ``S(p) = sum_j h(j) |I(p) - j|`` over the 256 grey levels ``j`` of the 8-bit image, ``h`` its histogram.
    The v0 code reads precomputed maps (``vsm/s1``, ``vsm/s2``); here they are computed on the fly.
    """
    b = x.shape[0]
    levels = (x.detach().clamp(0, 1) * 255).round().long().reshape(b, -1)  # B x HW
    hist = torch.zeros(b, 256, dtype=torch.float64, device=x.device)
    hist.scatter_add_(1, levels, torch.ones_like(levels, dtype=torch.float64))
    grey = torch.arange(256, dtype=torch.float64, device=x.device)
    table = hist @ (grey[:, None] - grey[None, :]).abs()  # B x 256: S for each grey level
    sal = torch.gather(table, 1, levels)
    lo, hi = sal.min(dim=1, keepdim=True).values, sal.max(dim=1, keepdim=True).values
    sal = torch.where(hi > lo, (sal - lo) / (hi - lo).clamp_min(1e-12), torch.zeros_like(sal))
    return sal.reshape(x.shape).to(x.dtype)


def flush_subnormals(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], int]:
    """Zero the subnormal entries of the floating-point tensors; returns the new state and how many."""
    out, count = {}, 0
    for k, v in state.items():
        if v.is_floating_point():
            tiny = (v != 0) & (v.abs() < torch.finfo(v.dtype).tiny)
            count += int(tiny.sum())
            v = torch.where(tiny, torch.zeros_like(v), v)
        out[k] = v
    return out, count


# ---------------------------------------------------------------------------------------------- method
@METHODS.register("tardal")
class TarDAL(LearnedMethod):
    """Options:

    * ``variant`` ("tardal" | "tardal+" | "tardal++", default "tardal"): which official weight file a weights
      folder resolves to (``<variant>.pt``) and the BatchNorm mode (train for tardal, eval for +/++);
    * ``bn_mode`` ("train" | "eval"): overrides the variant's BatchNorm mode;
    * ``flush_denormal`` (default true): zero subnormal weights on loading.
    """

    name: ClassVar[str] = "tardal"
    network: ClassVar[type[nn.Module]] = TarDALGenerator
    network_kind: ClassVar[str] = "a TarDAL v0 generator"
    net: TarDALGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.variant = choice(self.name, "variant", self.options.get("variant", "tardal"), VARIANTS)
        self.bn_mode = choice(self.name, "bn_mode", self.options.get("bn_mode", VARIANT_BN[self.variant]), BN_MODES)
        self.flush_denormal = bool(self.options.get("flush_denormal", True))

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> TarDALTrainer:
        return TarDALTrainer(device, **train_options)

    def official_file(self, path: Path) -> Path:
        """``path`` itself, or ``path/<variant>.pt`` when ``path`` is a folder."""
        path = Path(path)
        return path / f"{self.variant}.pt" if path.is_dir() else path

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`TarDALTrainer` (the v0 state-dict layout)."""
        self._set_net(load_state(checkpoint, device, self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load ``tardal.pt`` / ``tardal+.pt`` / ``tardal++.pt`` (a file, or their folder: ``variant``
        picks the file)."""
        path = self.official_file(weights)
        state = load_state(path, device, self.name)
        if len(state) != OFFICIAL_KEYS:
            raise ValueError(f"tardal: {path} has {len(state)} entries, the v0 files have {OFFICIAL_KEYS}")
        self._set_net(state, device, path)

    def _set_net(self, state: Mapping[str, Any], device: str, source: Path) -> None:
        if self.flush_denormal:
            state, _ = flush_subnormals(dict(state))
        super()._set_net(state, device, source)

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a`` infrared, ``b`` visible (gray, [0, 1]) -> the clipped fused image in [0, 1]."""
        return np.clip(self.fuse_raw(a, b), 0.0, 1.0)

    def fuse_raw(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The network's tanh output (HxW float32 in [-1, 1]) before clipping."""
        net = self._require(self.net)
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"tardal: expected two HxW images of the same size, got {a.shape} and {b.shape}")
        with torch.inference_mode():
            out = forward_with_bn_mode(net, self.to_tensor(a, b), self.bn_mode)
        return to_image(out)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The v0 ``fuse.py --color`` end to end (``a`` infrared, ``b`` visible): infrared read as grey, the
        visible image's grey from OpenCV's 15-bit ``BGR2GRAY`` of its colour decode, both ``u8 / 255``; the
        variant's BatchNorm mode; output clipped to [0, 1] and **truncated** to uint8; colour from the visible
        image's OpenCV 8-bit YCrCb (Cr, Cb kept, Y replaced, back to RGB). Always HxWx3, as the script writes.

        ``cv2.imread(ir, IMREAD_GRAYSCALE)`` is taken as one channel of a grey-coded infrared file and as
        OpenCV's ``BGR2GRAY`` of a colour one (libpng/libjpeg's own grey conversion can differ by a level)."""
        ir_rgb, vi_rgb = official.pil_rgb(path_a), official.pil_rgb(path_b)
        ir = ir_rgb[..., 0] if official.is_gray_rgb(ir_rgb) else official.opencv_gray(ir_rgb)
        vi = official.opencv_gray(vi_rgb)
        # u8 / 255.0 in float64, then float32 (the script's kornia image_to_tensor of cv2's array / 255.)
        f = np.clip(self.fuse_raw((ir / 255.0).astype(np.float32), (vi / 255.0).astype(np.float32)), 0.0, 1.0)
        y8 = (f * np.float32(255.0)).astype(np.float32).astype(np.uint8)
        return official.opencv_ycrcb_to_rgb(y8, *official.opencv_crcb(vi_rgb))


# --------------------------------------------------------------------------------------------- trainer
class TarDALTrainer(AdversarialTrainer):
    """The v0 training step (see the module docstring); discriminators are named ``target`` and ``detail``."""

    method: ClassVar[str] = "tardal"

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        weight: tuple[float, float, float] | list[float] = (1.0, 20.0, 0.1),
        adv_weight: tuple[float, float] | list[float] = (1.0, 1.0),
        div_k: float = 2.0,
        div_p: float = 6.0,
        mask_spread: float = 2.0,
        adversarial_grad: bool = True,
        detail_real: str = "paper",
        patch_size: int = 224,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        check_options("tardal", other)
        self.b1, self.b2, self.b3 = (float(w) for w in weight)
        self.c1, self.c2 = (float(w) for w in adv_weight)
        self.mask_spread = float(mask_spread)
        self.adversarial_grad = bool(adversarial_grad)
        self.detail_real = choice("tardal", "detail_real", detail_real, DETAIL_REAL)
        size = int(patch_size)
        generator = seeded(seed, TarDALGenerator)
        target = seeded(None if seed is None else seed + 1, lambda: TarDALDiscriminator(32, size))
        detail = seeded(None if seed is None else seed + 2, lambda: TarDALDiscriminator(32, size))
        lr = float(lr)
        super().__init__(
            device,
            generator=generator,
            discriminators={"target": target, "detail": detail},
            g_optimizer=torch.optim.RMSprop(generator.parameters(), lr=lr),
            d_optimizers={
                "target": torch.optim.RMSprop(target.parameters(), lr=lr),
                "detail": torch.optim.RMSprop(detail.parameters(), lr=lr),
            },
            objectives=WGANDiv(k=float(div_k), p=float(div_p), points="interpolate"),
            d_steps=1,
            d_first=False,
            d_generator_mode="eval",
        )
        self._cache: dict[str, torch.Tensor] = {}

    def prepare_batch(self, batch: torch.Tensor) -> torch.Tensor:
        batch = super().prepare_batch(batch)
        self._cache = {"mask": ir_saliency_mask(batch[:, :1], self.mask_spread)}
        return batch

    def mask(self, batch: torch.Tensor) -> torch.Tensor:
        if "mask" not in self._cache:
            self._cache["mask"] = ir_saliency_mask(batch[:, :1], self.mask_spread)
        return self._cache["mask"]

    def discriminator_inputs(
        self, name: str, batch: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ir, vi, m = batch[:, :1], batch[:, 1:], self.mask(batch)
        if name == "target":
            return ir * m, fused * m
        real = (
            spatial_gradient(spatial_gradient(vi) * m) if self.detail_real == "v0" else spatial_gradient(vi * (1 - m))
        )
        return real, spatial_gradient(fused * (1 - m))

    def source_loss(self, batch: torch.Tensor, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        """``mean(w1 l_ir + w2 l_vi)`` with per-pixel SSIM (valid windows: weights cropped to match), L1."""
        ir, vi = batch[:, :1], batch[:, 1:]
        s1, s2 = visual_saliency(ir), visual_saliency(vi)
        w1, w2 = 0.5 + 0.5 * (s1 - s2), 0.5 + 0.5 * (s2 - s1)
        s_ir, _ = ssim_map(fused, ir)
        s_vi, _ = ssim_map(fused, vi)
        cut = (fused.shape[-1] - s_ir.shape[-1]) // 2
        crop = (slice(None), slice(None), slice(cut, cut + s_ir.shape[-2]), slice(cut, cut + s_ir.shape[-1]))
        d_ir, d_vi = (1 - s_ir) / 2, (1 - s_vi) / 2
        l1_ir, l1_vi = (fused - ir).abs(), (fused - vi).abs()
        ssim_term = (w1[crop] * d_ir + w2[crop] * d_vi).mean()
        l1_term = (w1 * l1_ir + w2 * l1_vi).mean()
        return {
            "src": self.b1 * ssim_term + self.b2 * l1_term,
            "src_ir": self.b1 * d_ir.mean() + self.b2 * l1_ir.mean(),
            "src_vi": self.b1 * d_vi.mean() + self.b2 * l1_vi.mean(),
        }

    def generator_loss(self, batch: torch.Tensor, fused: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        terms = self.source_loss(batch, fused)
        m = self.mask(batch)
        with torch.set_grad_enabled(self.adversarial_grad and torch.is_grad_enabled()):
            l_target = self.adversarial("target", fused * m)
            l_detail = self.adversarial("detail", spatial_gradient(fused * (1 - m)))
        loss = terms["src"] + self.b3 * (self.c1 * l_target + self.c2 * l_detail)
        return {"loss": loss, **terms, "adv_target": l_target, "adv_detail": l_detail}
