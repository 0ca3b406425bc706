"""SwinFusion (J. Ma, L. Tang, F. Fan, J. Huang, X. Mei, Y. Ma, "SwinFusion: Cross-domain long-range learning for
general image fusion via Swin Transformer", IEEE/CAA Journal of Automatica Sinica 9(7), 2022).

Reference code: ``Linfeng-Tang/SwinFusion`` @ ``ceeec3fe9356`` (``models/network_swinfusion1.py``, the network
``test_swinfusion.py`` imports; ``test_swinfusion.py``; ``models/loss_vif.py``; ``Model/<task>/.../options/*.json``).
Weights: ``Model/<task>/.../models/10000_{E,G}.pth`` (pinned by git blob id in ``weights.yaml``; not in the data
bundle). The official test loads **``10000_E.pth``** (the EMA of G, decay 0.999), not ``10000_G.pth``.
See docs/methods/swinfusion.md.

Network (:class:`SwinFusionNet`, 973,681 parameters; module names and buffers as upstream, so its state dicts
load strictly). ``test_swinfusion.py`` passes ``depths``/``num_heads`` keyword arguments that the constructor
ignores, so the published models use the constructor defaults: one Swin stage of 4 blocks per extractor and in
the reconstruction, two cross stages of 2 blocks in the fusion; embed dim 60, 6 heads, window 8, MLP ratio 2,
built for 128x128 (the shifted-window masks for 128x128 are buffers of the state dict; other sizes compute
their own).

* extraction, per source: LeakyReLU(0.2) after 3x3 convs 1 -> 30 -> 60 (both sources use ``conv_first*_A``;
  ``conv_first*_B`` exist in the state dict but are unused upstream), tokens (``patch_embed``: flatten and the
  shared LayerNorm), a Swin stage (``layers_Ex_A`` / ``layers_Ex_B``, **no** residual around the stage), LayerNorm;
* fusion: both token maps through ``patch_embed`` again, two cross stages (each: a Swin stage per source, then
  cross-attention blocks whose queries come from one source and keys/values from the other), LayerNorms,
  concatenation and a 3x3 conv 120 -> 60 + LeakyReLU;
* reconstruction: ``patch_embed``, a Swin stage, LayerNorm, 3x3 convs 60 -> 30 -> 15 (LeakyReLU) -> 1.

Swin blocks are the standard ones (pre-norm window attention with a relative position bias, shifted by 4 in
every second block, GELU MLP, stochastic depth 0 ... 0.1 in training).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..losses import ssim
from ..training import Trainer, check_options, seeded
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .ifcnn import cv_rgb2gray

__all__ = ["LOSSES", "PARAMETERS", "SwinFusion", "SwinFusionNet", "SwinFusionTrainer", "pad_to_window"]

PARAMETERS = 973_681
EMBED, HEADS, WINDOW, MLP_RATIO, IMG_SIZE = 60, 6, 8, 2.0, 128
EX_DEPTH, FUSION_DEPTHS, RE_DEPTH = 4, (2, 2), 4
DROP_PATH = 0.1


# ------------------------------------------------------------------------------------------ swin pieces
def _windows(x: torch.Tensor, ws: int) -> torch.Tensor:
    """B x H x W x C -> (B * windows) x ws^2 x C, windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def _unwindows(x: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    b = x.shape[0] // ((h // ws) * (w // ws))
    x = x.view(b, h // ws, w // ws, ws, ws, -1).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, -1)


def relative_position_index(ws: int) -> torch.Tensor:
    """ws^2 x ws^2 index into the (2 ws - 1)^2 bias table: ``(dy + ws - 1) (2 ws - 1) + dx + ws - 1``."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    y, x = ys.flatten(), xs.flatten()
    return (y[:, None] - y[None, :] + ws - 1) * (2 * ws - 1) + (x[:, None] - x[None, :] + ws - 1)


def shift_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """windows x ws^2 x ws^2: -100 between positions that the cyclic shift brought from different regions."""
    regions = torch.zeros(1, h, w, 1)
    cuts = (slice(0, -ws), slice(-ws, -shift), slice(-shift, None))
    for i, (hs, wsl) in enumerate((a, b) for a in cuts for b in cuts):
        regions[:, hs, wsl, :] = i
    ids = _windows(regions, ws)[..., 0]
    diff = ids[:, None, :] - ids[:, :, None]
    return torch.where(diff != 0, torch.tensor(-100.0), torch.tensor(0.0))


class DropPath(nn.Module):
    """Stochastic depth per sample (timm's ``DropPath``): identity in eval mode."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.floor(keep + torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device))
        return x / keep * mask


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class WindowAttention(nn.Module):
    """Multi-head attention inside windows with a learned relative position bias. ``cross``: queries from
    one input (``q``), keys and values from the other (``kv``); else one ``qkv`` projection."""

    def __init__(self, dim: int, ws: int, heads: int, cross: bool = False) -> None:
        super().__init__()
        self.heads, self.scale, self.cross = heads, (dim // heads) ** -0.5, cross
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * ws - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(ws))
        if cross:
            self.q, self.kv = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim)
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        if self.cross:
            q = self.q(x).reshape(b, n, self.heads, c // self.heads).transpose(1, 2)
            k, v = self.kv(y).reshape(b, n, 2, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        else:
            q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1)
        attn = attn + bias.permute(2, 0, 1)[None]
        if mask is not None:
            windows = mask.shape[0]
            attn = (attn.view(b // windows, windows, self.heads, n, n) + mask[None, :, None]).view(-1, self.heads, n, n)
        return self.proj((attn.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))


class _ShiftedWindows(nn.Module):
    """What self- and cross-attention blocks share: the shift and its mask (a buffer for the built size)."""

    def __init__(self, shift: int) -> None:
        super().__init__()
        self.shift = shift
        self.register_buffer("attn_mask", shift_mask(IMG_SIZE, IMG_SIZE, WINDOW, shift) if shift else None)

    def _mask(self, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        if not self.shift:
            return None
        if (h, w) == (IMG_SIZE, IMG_SIZE):
            return self.attn_mask
        return shift_mask(h, w, WINDOW, self.shift).to(device)

    def _to_windows(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        t = t.view(t.shape[0], h, w, -1)
        if self.shift:
            t = torch.roll(t, (-self.shift, -self.shift), (1, 2))
        return _windows(t, WINDOW)

    def _from_windows(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        t = _unwindows(t, WINDOW, h, w)
        if self.shift:
            t = torch.roll(t, (self.shift, self.shift), (1, 2))
        return t.reshape(t.shape[0], h * w, -1)


class SwinBlock(_ShiftedWindows):
    def __init__(self, shift: int, drop_path: float) -> None:
        super().__init__(shift)
        self.norm1, self.norm2 = nn.LayerNorm(EMBED), nn.LayerNorm(EMBED)
        self.attn = WindowAttention(EMBED, WINDOW, HEADS)
        self.mlp = Mlp(EMBED, int(EMBED * MLP_RATIO))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        h, w = size
        a = self.attn(self._to_windows(self.norm1(x), h, w), mask=self._mask(h, w, x.device))
        x = x + self.drop_path(self._from_windows(a, h, w))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class CrossSwinBlock(_ShiftedWindows):
    """Two cross-attention blocks in one: A attends to B (``*_A``) and B to A (``*_B``)."""

    def __init__(self, shift: int, drop_path: float) -> None:
        super().__init__(shift)
        for s in ("A", "B"):
            self.add_module(f"norm1_{s}", nn.LayerNorm(EMBED))
            self.add_module(f"attn_{s}", WindowAttention(EMBED, WINDOW, HEADS, cross=True))
            self.add_module(f"norm2_{s}", nn.LayerNorm(EMBED))
            self.add_module(f"mlp_{s}", Mlp(EMBED, int(EMBED * MLP_RATIO)))
            self.add_module(f"drop_path_{s}", DropPath(drop_path))

    def forward(self, x: torch.Tensor, y: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = size
        mask = self._mask(h, w, x.device)
        xw, yw = self._to_windows(self.norm1_A(x), h, w), self._to_windows(self.norm1_B(y), h, w)
        out = []
        for s, z, q, kv in (("A", x, xw, yw), ("B", y, yw, xw)):
            drop, attn = getattr(self, f"drop_path_{s}"), getattr(self, f"attn_{s}")
            z = z + drop(self._from_windows(attn(q, kv, mask=mask), h, w))
            out.append(z + drop(getattr(self, f"mlp_{s}")(getattr(self, f"norm2_{s}")(z))))
        return out[0], out[1]


class _Blocks(nn.Module):
    """A stage's blocks; shift 0 in even blocks, half a window in odd ones."""

    def __init__(self, block: type[SwinBlock] | type[CrossSwinBlock], drop_paths: Sequence[float]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(block(0 if i % 2 == 0 else WINDOW // 2, p) for i, p in enumerate(drop_paths))

    def forward(self, *args: Any) -> Any:
        *xs, size = args
        for blk in self.blocks:
            out = blk(*xs, size)
            xs = list(out) if isinstance(out, tuple) else [out]
        return xs[0] if len(xs) == 1 else tuple(xs)


class Stage(nn.Module):
    """Upstream ``RSTB`` as ``network_swinfusion1`` has it: its blocks only (no conv, no residual)."""

    def __init__(self, drop_paths: Sequence[float]) -> None:
        super().__init__()
        self.residual_group = _Blocks(SwinBlock, drop_paths)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.residual_group(x, size)


class CrossStage(nn.Module):
    """Upstream ``CRSTB``: a self-attention stage per source, then the cross-attention blocks."""

    def __init__(self, drop_paths: Sequence[float]) -> None:
        super().__init__()
        self.residual_group = _Blocks(CrossSwinBlock, drop_paths)
        self.residual_group_A = _Blocks(SwinBlock, drop_paths)
        self.residual_group_B = _Blocks(SwinBlock, drop_paths)

    def forward(self, x: torch.Tensor, y: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.residual_group(self.residual_group_A(x, size), self.residual_group_B(y, size), size)


class PatchEmbed(nn.Module):
    """N x C x H x W -> N x HW x C, then LayerNorm (the one norm every stage's entry shares)."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(EMBED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.flatten(2).transpose(1, 2))


def _unembed(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *size)


def _linspace(n: int) -> list[float]:
    return [float(v) for v in torch.linspace(0, DROP_PATH, n)]


class SwinFusionNet(nn.Module):
    """The published SwinFusion (module docstring); gray N x 1 x H x W in [0, 1] in and out (not clamped)."""

    def __init__(self) -> None:
        super().__init__()
        half = EMBED // 2
        self.conv_first1_A, self.conv_first1_B = nn.Conv2d(1, half, 3, 1, 1), nn.Conv2d(1, half, 3, 1, 1)
        self.conv_first2_A, self.conv_first2_B = nn.Conv2d(half, EMBED, 3, 1, 1), nn.Conv2d(half, half, 3, 1, 1)
        self.patch_embed = PatchEmbed()
        ex, fusion, re = _linspace(EX_DEPTH), _linspace(sum(FUSION_DEPTHS)), _linspace(RE_DEPTH)
        self.layers_Ex_A = nn.ModuleList([Stage(ex)])
        self.norm_Ex_A = nn.LayerNorm(EMBED)
        self.layers_Ex_B = nn.ModuleList([Stage(ex)])
        self.norm_Ex_B = nn.LayerNorm(EMBED)
        starts = np.cumsum((0, *FUSION_DEPTHS))
        self.layers_Fusion = nn.ModuleList(
            CrossStage(fusion[s:e]) for s, e in zip(starts[:-1], starts[1:], strict=True)
        )
        self.norm_Fusion_A, self.norm_Fusion_B = nn.LayerNorm(EMBED), nn.LayerNorm(EMBED)
        self.layers_Re = nn.ModuleList([Stage(re)])
        self.norm_Re = nn.LayerNorm(EMBED)
        self.conv_after_body_Fusion = nn.Conv2d(2 * EMBED, EMBED, 3, 1, 1)
        self.conv_last1 = nn.Conv2d(EMBED, half, 3, 1, 1)
        self.conv_last2 = nn.Conv2d(half, half // 2, 3, 1, 1)
        self.conv_last3 = nn.Conv2d(half // 2, 1, 3, 1, 1)
        for m in self.modules():  # upstream _init_weights (convs keep torch's default init)
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _extract(self, x: torch.Tensor, stages: nn.ModuleList, norm: nn.LayerNorm) -> torch.Tensor:
        x = F.leaky_relu(self.conv_first2_A(F.leaky_relu(self.conv_first1_A(x), 0.2)), 0.2)
        size = (x.shape[2], x.shape[3])
        t = self.patch_embed(x)
        for stage in stages:
            t = stage(t, size)
        return _unembed(norm(t), size)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        h, w = a.shape[-2:]
        pad = (0, -w % WINDOW, 0, -h % WINDOW)  # upstream check_image_size (reflect)
        a, b = F.pad(a, pad, mode="reflect"), F.pad(b, pad, mode="reflect")
        x, y = self._extract(a, self.layers_Ex_A, self.norm_Ex_A), self._extract(b, self.layers_Ex_B, self.norm_Ex_B)
        size = (x.shape[2], x.shape[3])
        tx, ty = self.patch_embed(x), self.patch_embed(y)
        for stage in self.layers_Fusion:
            tx, ty = stage(tx, ty, size)
        fused = torch.cat([_unembed(self.norm_Fusion_A(tx), size), _unembed(self.norm_Fusion_B(ty), size)], 1)
        fused = F.leaky_relu(self.conv_after_body_Fusion(fused), 0.2)
        t = self.patch_embed(fused)
        for stage in self.layers_Re:
            t = stage(t, size)
        out = _unembed(self.norm_Re(t), size)
        out = F.leaky_relu(self.conv_last2(F.leaky_relu(self.conv_last1(out), 0.2)), 0.2)
        return self.conv_last3(out)[..., :h, :w]


def pad_to_window(x: torch.Tensor, ws: int = WINDOW) -> torch.Tensor:
    """``test_swinfusion.py``'s padding: append the flipped image below and to the right and keep
    ``(n // ws + 1) ws`` rows and columns (always at least one more, a whole window when already a multiple)."""
    h, w = x.shape[-2:]
    x = torch.cat([x, torch.flip(x, [2])], 2)[..., : (h // ws + 1) * ws, :]
    return torch.cat([x, torch.flip(x, [3])], 3)[..., : (w // ws + 1) * ws]


def read_official_gray(path: Path) -> np.ndarray:
    """``cv2.imread(path, IMREAD_GRAYSCALE)`` for gray and lossless colour files: the stored gray, or OpenCV's
    integer luma of the colour image (uint8 HxW). (OpenCV decodes JPEG straight to gray in libjpeg; not
    replicated, see the docs page.)"""
    with Image.open(path) as img:
        if img.mode in ("L", "I;16", "I"):
            return np.asarray(img.convert("L"))
        return cv_rgb2gray(np.asarray(img.convert("RGB")))


# ----------------------------------------------------------------------------------------------- method
@METHODS.register("swinfusion")
class SwinFusion(LearnedMethod):
    """No options. One model per task (``10000_E.pth`` of the task's folder upstream); sources in fusebench's
    order are the official (A, B) order for every task (ir/vi, MRI/CT-or-PET, under/over, A/B)."""

    network: ClassVar[type[nn.Module]] = SwinFusionNet
    network_kind: ClassVar[str] = "a SwinFusion state dict (upstream network_swinfusion1 layout)"
    net: SwinFusionNet | None

    def trainer(self, device: str, **train_options: Any) -> SwinFusionTrainer:
        train_options.setdefault("task", self.task or "ivif")
        return SwinFusionTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`SwinFusionTrainer` (the EMA network, upstream key names)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load an upstream ``10000_E.pth`` (what the official test uses) or ``10000_G.pth``; a ``params``
        wrapper is unwrapped, as the official loader does."""
        state = load_state(weights, "cpu", self.name)
        if "params" in state and isinstance(state["params"], Mapping):
            state = dict(state["params"])
        self._set_net(state, device, Path(weights))

    def _run(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        net = self._require(self.net)
        with torch.inference_mode():
            return net(a.to(self.device), b.to(self.device)).cpu()

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"swinfusion: expected two HxW images of one size, got {a.shape} and {b.shape}")
        h, w = a.shape
        out = self._run(*(pad_to_window(torch.from_numpy(x)[None, None]) for x in (a, b)))
        return np.clip(to_image(out[..., :h, :w]), 0.0, 1.0).astype(np.float32)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """``test_swinfusion.py``: gray read, ``float32(u8 / 255.)``, flip padding, the network, crop,
        ``uint8(round(clamp(x, 0, 1) * 255))``. Gray uint8 HxW (no colour restoration upstream)."""
        a, b = (np.float32(read_official_gray(p) / 255.0) for p in (path_a, path_b))
        h, w = a.shape
        out = self._run(*(pad_to_window(torch.from_numpy(x)[None, None]) for x in (a, b)))
        return np.round(out[0, 0, :h, :w].clamp(0, 1).numpy() * np.float32(255.0)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- trainer
def sobel_magnitude(x: torch.Tensor) -> torch.Tensor:
    """Upstream ``Sobelxy``: ``|sobel_x| + |sobel_y|`` with zero padding."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=x.dtype, device=x.device)
    ky = torch.tensor([[1.0, 2.0, 1.0], [0.0, 0.0, 0.0], [-1.0, -2.0, -1.0]], dtype=x.dtype, device=x.device)
    return F.conv2d(x, kx[None, None], padding=1).abs() + F.conv2d(x, ky[None, None], padding=1).abs()


#: per task, upstream's loss (``models/loss_{vif,med,mef,mff}.py``): weights of the intensity, gradient and SSIM
#: terms, the intensity target ("max" = ``max(A, B)``; "mean" = upstream's ``mean(cat([A, B]), dim=0)``, the mean
#: over every image of the batch) and the SSIM weights ("gradient" = the sources' mean Sobel magnitudes, normalised;
#: "equal" = 1/2 each)
LOSSES: dict[str, tuple[tuple[float, float, float], str, str]] = {
    "ivif": ((20.0, 20.0, 10.0), "max", "gradient"),
    "mif": ((20.0, 100.0, 50.0), "max", "equal"),
    "mef": ((20.0, 20.0, 10.0), "mean", "equal"),
    "mff": ((20.0, 20.0, 10.0), "mean", "gradient"),
}


class SwinFusionTrainer(Trainer):
    """Upstream's training (``models/loss_*.py``, ``model_plain.py``) for the method's task (:data:`LOSSES`):
    ``L = w_int |F - target|_1 + w_grad |sobel F - max(sobel A, sobel B)|_1 + w_ssim (1 - (w_A SSIM(A, F) +
    w_B SSIM(B, F)))``; Adam(``lr``); the exported network is the EMA of the trained one (``ema_decay``,
    upstream ``E_decay``), as the official test uses ``_E.pth``. SSIM is :func:`fusebench.losses.ssim` (valid
    windows; upstream pads with zeros). ``loss_weights`` overrides the task's three weights.
    """

    def __init__(
        self,
        device: str,
        task: str = "ivif",
        lr: float = 2e-5,
        ema_decay: float = 0.999,
        loss_weights: tuple[float, float, float] | list[float] | None = None,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("swinfusion", other)
        weights, self.target, self.ssim_weights = LOSSES[choice("swinfusion", "task", task, tuple(LOSSES))]
        self.weights = weights if loss_weights is None else tuple(float(w) for w in loss_weights)
        if len(self.weights) != 3:
            raise ValueError("swinfusion trainer: loss_weights are 3 numbers (intensity, gradient, ssim)")
        self.ema_decay = float(ema_decay)
        self.net = seeded(seed, SwinFusionNet).to(self.device).train()
        self.ema = SwinFusionNet().to(self.device).eval()
        self.ema.load_state_dict(self.net.state_dict())
        self.ema.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(lr), weight_decay=0.0)

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "ema": self.ema.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])

    def losses(self, a: torch.Tensor, b: torch.Tensor, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        ga, gb, gf = sobel_magnitude(a), sobel_magnitude(b), sobel_magnitude(fused)
        target = torch.maximum(a, b) if self.target == "max" else torch.cat([a, b]).mean(0)
        intensity = F.l1_loss(fused, target.expand_as(fused))
        gradient = F.l1_loss(gf, torch.maximum(ga, gb))
        wa = ga.mean() / (ga.mean() + gb.mean()) if self.ssim_weights == "gradient" else torch.tensor(0.5)
        similarity = wa * ssim(a, fused) + (1 - wa) * ssim(b, fused)
        wi, wg, ws = self.weights
        total = wi * intensity + wg * gradient + ws * (1 - similarity)
        return {"loss": total, "intensity": intensity, "gradient": gradient, "ssim": similarity}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"swinfusion trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        batch = batch.to(self.device, torch.float32)
        a, b = batch[:, :1], batch[:, 1:]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(a, b, self.net(a, b))
        terms["loss"].backward()
        self.optimizer.step()
        with torch.no_grad():  # upstream update_E: E = decay E + (1 - decay) G, parameters only
            for e, g in zip(self.ema.parameters(), self.net.parameters(), strict=True):
                e.mul_(self.ema_decay).add_(g, alpha=1 - self.ema_decay)
        return {k: float(v.detach()) for k, v in terms.items()}

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.ema.state_dict().items()}
