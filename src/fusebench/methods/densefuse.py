"""DenseFuse (H. Li, X.-J. Wu, "DenseFuse: A Fusion Approach to Infrared and Visible Images", IEEE TIP 2019).

An auto-encoder trained to reconstruct single images; at test time each source is encoded separately, the two
64-channel feature maps are fused by a fixed rule, and the decoder turns the result into the fused image.

Network (as in the authors' PyTorch release, ``hli1221/densefuse-pytorch``): every layer is reflection
padding 1, a 3x3 convolution with bias and a ReLU -- **including the last decoder layer** (the release
never sets ``is_last``), so outputs are never negative.

* encoder: ``conv1`` 1->16, then the dense block ``DB1`` of three convs 16->16, 32->16, 48->16, each output
  concatenated to its input: 16 + 3*16 = 64 channels;
* decoder: ``conv2`` 64->64, ``conv3`` 64->32, ``conv4`` 32->16, ``conv5`` 16->1.

Module and parameter names mirror the release, so its ``densefuse_gray.model`` state dict loads as it is.

The network works on the 0..255 scale, as the release does for training (images are read as uint8 and
turned into float without division) and for testing. :meth:`DenseFuse.fuse` therefore multiplies its [0, 1]
inputs by 255 and divides the output by 255; the trainer does the same with its [0, 1] batches.

Fusion strategies (option ``strategy``):

* ``"addition"`` (default): element-wise **mean** ``(e1 + e2) / 2`` -- what the PyTorch release computes (its
  ``fusion()`` ignores the strategy argument) and what its weights were published with. Official-parity path.
* ``"sum"``: ``e1 + e2``, the paper's (and the TensorFlow release's) literal addition strategy.
* ``"l1"``: the paper's l1-norm strategy: activity ``C_i = ||e_i(x, y)||_1`` over the 64 channels, averaged
  over a 3x3 block (r = 1), weights ``w_i = C_i / (C_1 + C_2)`` (no softmax), ``f = w_1 e_1 + w_2 e_2``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import official
from ..losses import ms_ssim, ssim
from ..training import NetTrainer, check_options, seeded
from .base import METHODS, LearnedMethod, load_state, to_image

STRATEGIES = ("addition", "sum", "l1")
SSIM_KINDS = ("ssim", "ms_ssim")
SCALE = 255.0  # the network's input/output scale (see module docstring)


# --------------------------------------------------------------------------------------------- network
class ConvLayer(nn.Module):
    """Reflection pad 1, 3x3 conv with bias, ReLU. The attribute name ``conv2d`` matches the release."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place, as the release: no second full-size buffer per layer (the conv's output is not needed by its
        # backward), about 10% of a 640x480 fusion on one CPU thread
        return F.relu(self.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect")), inplace=True)


class DenseLayer(nn.Module):
    """One conv of the dense block; its output is concatenated to its input."""

    def __init__(self, in_channels: int, growth: int) -> None:
        super().__init__()
        self.dense_conv = ConvLayer(in_channels, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.dense_conv(x)], dim=1)


class DenseBlock(nn.Module):
    def __init__(self, in_channels: int = 16, growth: int = 16, layers: int = 3) -> None:
        super().__init__()
        self.denseblock = nn.Sequential(*(DenseLayer(in_channels + i * growth, growth) for i in range(layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.denseblock(x)


class DenseFuseNet(nn.Module):
    """Encoder (conv1 + DB1) and decoder (conv2..conv5); ``channels`` is 1 for the gray model."""

    def __init__(self, channels: int = 1) -> None:
        super().__init__()
        self.conv1 = ConvLayer(channels, 16)
        self.DB1 = DenseBlock(16, 16, 3)
        self.conv2 = ConvLayer(64, 64)
        self.conv3 = ConvLayer(64, 32)
        self.conv4 = ConvLayer(32, 16)
        self.conv5 = ConvLayer(16, channels)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.DB1(self.conv1(x))

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.conv4(self.conv3(self.conv2(f))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (the training path; no fusion layer)."""
        return self.decode(self.encode(x))


def fuse_features(e1: torch.Tensor, e2: torch.Tensor, strategy: str = "addition") -> torch.Tensor:
    """Fuse two encoder outputs (N x 64 x H x W) with one of :data:`STRATEGIES`."""
    if strategy == "addition":
        return (e1 + e2) / 2
    if strategy == "sum":
        return e1 + e2
    if strategy == "l1":
        c1 = _block_mean(e1.abs().sum(dim=1, keepdim=True))
        c2 = _block_mean(e2.abs().sum(dim=1, keepdim=True))
        total = c1 + c2
        # Where both sources have no activity at all (possible after ReLU) the weights are undefined: use 1/2.
        w1 = torch.where(total > 0, c1 / torch.where(total > 0, total, torch.ones_like(total)), 0.5)
        return w1 * e1 + (1 - w1) * e2
    raise ValueError(f"densefuse: unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def _block_mean(c: torch.Tensor, r: int = 1) -> torch.Tensor:
    """Mean over the (2r+1)^2 block around each pixel; at the border, over the pixels inside the image."""
    return F.avg_pool2d(c, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


# ---------------------------------------------------------------------------------------------- method
@METHODS.register("densefuse")
class DenseFuse(LearnedMethod):
    """Options: ``strategy`` ("addition" | "sum" | "l1"). Weights: :meth:`load` (``model.pt``) or
    :meth:`load_official` (the release's ``densefuse_gray.model`` or ``densefuse_rgb.model``)."""

    name: ClassVar[str] = "densefuse"
    network: ClassVar[type[nn.Module]] = DenseFuseNet
    network_kind: ClassVar[str] = "a DenseFuse state dict"
    net_entries: ClassVar[tuple[str, ...]] = ("encode", "decode")
    net: DenseFuseNet | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.strategy = str(self.options.get("strategy", "addition"))  # checked against the catalogue's choices

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> DenseFuseTrainer:
        return DenseFuseTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`DenseFuseTrainer` (a plain state dict, release key names)."""
        self._set_net(load_state(checkpoint, device, self.name), device, source=checkpoint)

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the release's ``densefuse_gray.model`` or its 3-channel ``densefuse_rgb.model`` (the latter runs
        only under the official protocol, :meth:`fuse_official`)."""
        self._set_net(load_state(weights, device, self.name), device, source=weights)

    def _set_net(self, state: Mapping[str, Any], device: str, source: Path) -> None:
        first = state.get("conv1.conv2d.weight")
        if first is None or first.ndim != 4:
            raise ValueError(f"densefuse: {source} is not a DenseFuse state dict (no conv1.conv2d.weight)")
        channels = int(first.shape[1])
        if channels not in (1, 3):
            raise ValueError(f"densefuse: {source} is a {channels}-channel model; DenseFuse models have 1 or 3")
        net = DenseFuseNet(channels)
        try:
            net.load_state_dict(dict(state), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"densefuse: {source} does not hold {self.network_kind}: {exc}") from None
        self.net = self._to_device(net, device)

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if self._require(self.net).conv1.conv2d.in_channels != 1:
            raise ValueError(
                "densefuse: the 3-channel (densefuse_rgb) model fuses RGB images the release's way only: run it "
                "with protocol official (`fusebench fuse --protocol official`), or use densefuse_gray.model"
            )
        raw = self.fuse_raw(
            np.asarray(a, dtype=np.float32) * np.float32(SCALE),
            np.asarray(b, dtype=np.float32) * np.float32(SCALE),
        )
        return np.clip(raw / np.float32(SCALE), 0.0, 1.0).astype(np.float32)

    def fuse_raw(self, a255: np.ndarray, b255: np.ndarray, strategy: str | None = None) -> np.ndarray:
        """The network on the 0..255 scale: HxW (gray model) or HxWx3 (rgb model) float32 in, raw decoder output
        out in the same layout (>= 0, not clamped). ``strategy`` defaults to the configured one."""
        net = self._require(self.net)
        channels = net.conv1.conv2d.in_channels
        shape = a255.shape[:2] if channels == 1 else a255.shape[:2] + (channels,)
        if a255.shape != b255.shape or a255.shape != shape:
            raise ValueError(
                f"densefuse: this {channels}-channel model needs two images of shape HxW"
                f"{'' if channels == 1 else 'x3'} of one size, got {a255.shape} and {b255.shape}"
            )
        if min(a255.shape[:2]) < 2:
            raise ValueError(f"densefuse: images must be at least 2x2 (reflection padding), got {a255.shape}")

        def prep(x: np.ndarray) -> torch.Tensor:
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
            return (t[None, None] if channels == 1 else t.permute(2, 0, 1)[None]).to(self.device)

        with torch.inference_mode():
            # Each source goes through the encoder on its own, as in the release (batch of one).
            out = net.decode(fuse_features(net.encode(prep(a255)), net.encode(prep(b255)), strategy or self.strategy))
        return to_image(out) if channels == 1 else out[0].permute(1, 2, 0).float().cpu().numpy()

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The release's ``test_image.run_demo``: sources read with ``scipy.misc.imread(mode="L")`` (gray model:
        Pillow luma, colour dropped) or ``convert("RGB")`` (rgb model), on 0..255 with no normalisation, the mean
        of the two encodings (the release's ``fusion()`` computes it whatever strategy is asked for, so the
        ``strategy`` option does not apply here), then ``clamp(0, 255)`` and **truncation** to uint8.
        Returns HxW (gray model) or HxWx3 (rgb model)."""
        rgb = self._require(self.net).conv1.conv2d.in_channels == 3
        read = official.pil_rgb if rgb else official.pil_gray
        raw = self.fuse_raw(read(path_a).astype(np.float32), read(path_b).astype(np.float32), "addition")
        return np.clip(raw, 0.0, 255.0).astype(np.uint8)


# --------------------------------------------------------------------------------------------- trainer
class DenseFuseTrainer(NetTrainer):
    """Auto-encoder training: every source of a Bx2xHxW pair batch is one 1-channel training image.

    Loss (paper, Eq. 1-3): ``MSE + ssim_weight * (1 - SSIM)`` between input and reconstruction, both on the
    0..255 scale (as the release trains; SSIM constants use ``L = 255``). ``ssim="ms_ssim"`` uses the
    release's actual choice instead, ``pytorch_msssim.msssim(normalize=True)``.

    Initial weights (torch's default init) come from ``seed`` when it is given, under a forked RNG, so two
    trainers built with the same seed start from the same weights whatever the global RNG state; with
    ``seed=None`` they come from the global torch RNG (seed it, e.g. with
    :func:`fusebench.training.seed_everything`, *before* building the trainer).
    """

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        ssim_weight: float = 100.0,
        ssim: str = "ssim",
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("densefuse", other)
        if ssim not in SSIM_KINDS:
            raise ValueError(f"densefuse trainer: ssim must be one of {', '.join(SSIM_KINDS)}, got {ssim!r}")
        self.ssim_weight = float(ssim_weight)
        self.ssim_kind = ssim
        self.net = seeded(seed, lambda: DenseFuseNet(channels=1)).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(lr))

    def losses(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for N x 1 x H x W images on the 0..255 scale."""
        out = self.net(images)
        mse = F.mse_loss(out, images)
        if self.ssim_kind == "ssim":
            similarity = ssim(out, images, data_range=SCALE)
        else:
            similarity = ms_ssim(out, images, data_range=SCALE, normalize=True)
        return {"loss": mse + self.ssim_weight * (1 - similarity), "mse": mse, "ssim": similarity}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"densefuse trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        images = batch.reshape(-1, 1, *batch.shape[-2:]).to(self.device, torch.float32) * SCALE
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(images)
        terms["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
