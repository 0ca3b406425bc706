"""UFGAN: FusionGAN-style adversarial infrared-visible fusion with a U-Net generator
(``drowning-in-codes/UFGAN``, "GAN for Image Fusion which is inspired by FusionGAN and U-net"; the example
GAN method of the survey). There is no paper: this follows the repository's ``model.py`` (``U_GAN``,
``Discriminator``), ``main.py`` (training) and ``test.py`` (inference); module names mirror ``U_GAN`` so its
state dicts load as they are. No weights are published.

Generator (``U_GAN``, input ``cat([ir, vi])`` in [-1, 1]):

* encoder: double-conv blocks ``conv_bn_relu_1..5`` (each: 3x3 VALID conv, BN, LeakyReLU(0.01), twice) with
  64, 128, 256, 512, 1024 channels, separated by ``MaxPool2d(2, stride 2, padding 1)``; dropout 0.2 after
  block 3 and after the last pooling;
* decoder: ``upsampling_1..4`` (``ConvTranspose2d(c, c/2, 2, stride 2, padding 1)``, BN, LeakyReLU), zero
  padding (or cropping) to the skip's size, concatenation ``[up, skip]``, double-conv blocks
  ``conv_bn_relu_6..9`` (block 9 with tanh activations), then a 1x1 conv 64->1 and tanh.

The output is 8 pixels smaller than the input in each dimension (160 -> 152); inputs must be at least
126x126 (the bottleneck must give the first up-convolution a 2x2 map). Kaiming-normal conv weights,
BN weight 1 / bias 0.

Discriminator: four stride-2 VALID 3x3 convs (1->32->64->128->256) with BN and LeakyReLU, global max pooling
and a 1x1 conv to one score (any input size).

Training (``main.py``): 160x160 patches with the central 152x152 crops as labels (stride 60), inputs and
labels normalised to [-1, 1]; LSGAN with FusionGAN's soft labels (discriminator: ``D(vi)`` -> U[0.7, 1.2],
``D(F)`` -> U[0, 0.3]; generator: ``D(F)`` -> U[0.7, 1.2]); generator loss ``adv + 100 * content`` with
``content = (||F - ir||_2 + 5 ||lap F - lap vi||_2) / N`` -- Frobenius norms (not squared) divided by the
number of output pixels ``N``, Laplacian with zero padding; Adam (torch defaults, lr 1e-3) for both networks;
the discriminator is updated on every batch and the generator on every second batch
(``generator_interval=2``); batch 32, 30 epochs.

Inference (``test.py``): sources padded by 4 pixels per side (value 0 after normalisation), the network in
eval mode, output ``out * 127.5 + 127.5``. Deviations (docs/methods/ufgan.md): dropout is active only in
training (the original creates ``nn.Dropout`` inside ``forward``, so it also drops at test time); inputs are
normalised to [-1, 1] at test time as in training (``test.py``'s ``norm_-1`` switch never fires, so it feeds
[0, 1]); the output is clipped before quantisation (the original's ``astype(uint8)`` wraps negatives);
soft labels are drawn per sample (the original broadcasts a Bx1 label against a Bx1x1x1 output).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import laplacian
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .gan import LSGAN, CentreCropTrainer, check_options, forward_with_bn_mode, parameter_count, seeded

SHRINK = 8  # output = input - 8
PAD = SHRINK // 2
MIN_SIZE = 126
CONTENT = ("norm", "mse")

__all__ = [
    "UFGAN",
    "UFGANDiscriminator",
    "UFGANGenerator",
    "UFGANTrainer",
    "min_input_size",
    "parameter_count",
]


def _double_conv(cin: int, cout: int, last: bool = False) -> nn.Sequential:
    act: type[nn.Module] = nn.Tanh if last else nn.LeakyReLU
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 0),
        nn.BatchNorm2d(cout),
        act(),
        nn.Conv2d(cout, cout, 3, 1, 0),
        nn.BatchNorm2d(cout),
        act(),
    )


def _up(channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(channels, channels // 2, 2, stride=2, padding=1),
        nn.BatchNorm2d(channels // 2),
        nn.LeakyReLU(),
    )


def _init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.kaiming_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _match(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
    """Zero-pad (or crop, for negative differences) ``x`` to ``skip``'s size, split as the original does."""
    dh, dw = skip.shape[-2] - x.shape[-2], skip.shape[-1] - x.shape[-1]
    return F.pad(x, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2], "constant", 0.0)


class UFGANGenerator(nn.Module):
    """The repository's ``U_GAN``; input Bx2xHxW in [-1, 1], output Bx1x(H-8)x(W-8) in [-1, 1]."""

    def __init__(self, dropout: float = 0.2) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.conv_bn_relu_1 = _double_conv(2, 64)
        self.downsampling = nn.Sequential(nn.MaxPool2d(2, stride=2, padding=1))
        self.conv_bn_relu_2 = _double_conv(64, 128)
        self.conv_bn_relu_3 = _double_conv(128, 256)
        self.conv_bn_relu_4 = _double_conv(256, 512)
        self.conv_bn_relu_5 = _double_conv(512, 1024)
        self.upsampling_1 = _up(1024)
        self.conv_bn_relu_6 = _double_conv(1024, 512)
        self.upsampling_2 = _up(512)
        self.conv_bn_relu_7 = _double_conv(512, 256)
        self.upsampling_3 = _up(256)
        self.conv_bn_relu_8 = _double_conv(256, 128)
        self.upsampling_4 = _up(128)
        self.conv_bn_relu_9 = _double_conv(128, 64, last=True)
        self.conv = nn.Conv2d(64, 1, 1, 1, 0)
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"ufgan: inputs must be at least {MIN_SIZE}x{MIN_SIZE}, got {tuple(x.shape[-2:])}")
        drop = self.dropout if self.training else 0.0
        skip1 = self.conv_bn_relu_1(x)
        skip2 = self.conv_bn_relu_2(self.downsampling(skip1))
        skip3 = F.dropout(self.conv_bn_relu_3(self.downsampling(skip2)), drop, self.training)
        skip4 = self.conv_bn_relu_4(self.downsampling(skip3))
        out = self.conv_bn_relu_5(F.dropout(self.downsampling(skip4), drop, self.training))
        out = self.conv_bn_relu_6(torch.cat([_match(self.upsampling_1(out), skip4), skip4], dim=1))
        out = self.conv_bn_relu_7(torch.cat([_match(self.upsampling_2(out), skip3), skip3], dim=1))
        out = self.conv_bn_relu_8(torch.cat([_match(self.upsampling_3(out), skip2), skip2], dim=1))
        out = self.conv_bn_relu_9(torch.cat([_match(self.upsampling_4(out), skip1), skip1], dim=1))
        return torch.tanh(self.conv(out))


def min_input_size() -> int:
    """Smallest input side the U-Net accepts: 126 (126 -> 122 -> pool 62 -> 58 -> 30 -> 26 -> 14 -> 10 ->
    6 -> 2, and the first transposed convolution turns 2 into 2; one pixel less and it gets a 1x1 map,
    which it turns into 0x0)."""
    return MIN_SIZE


class UFGANDiscriminator(nn.Module):
    """The repository's ``Discriminator``: four stride-2 VALID convs, global max pooling, 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        for i, (cin, cout) in enumerate(((1, 32), (32, 64), (64, 128), (128, 256)), start=1):
            self.add_module(
                f"conv_bn_lr_{i}",
                nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 0), nn.BatchNorm2d(cout), nn.LeakyReLU()),
            )
        self.gfcn = nn.Sequential(nn.AdaptiveMaxPool2d((1, 1)), nn.Conv2d(256, 1, 1, 1, 0))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, 5):
            x = getattr(self, f"conv_bn_lr_{i}")(x)
        return self.gfcn(x).flatten(1)  # B x 1


def laplacian_zero(x: torch.Tensor) -> torch.Tensor:
    """The repository's gradient: 4-neighbour Laplacian with zero padding 1."""
    return laplacian(x, padding="zeros")


# ---------------------------------------------------------------------------------------------- method
@METHODS.register("ufgan")
class UFGAN(LearnedMethod):
    """Options: ``bn_mode`` ("eval" = the repository's ``model.eval()``, default | "train")."""

    name: ClassVar[str] = "ufgan"
    network: ClassVar[type[nn.Module]] = UFGANGenerator
    network_kind: ClassVar[str] = "a U_GAN state dict"
    net: UFGANGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.bn_mode = choice(self.name, "bn_mode", self.options.get("bn_mode", "eval"), ("train", "eval"))

    def trainer(self, device: str, **train_options: Any) -> UFGANTrainer:
        return UFGANTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`UFGANTrainer` (or a ``G_<epoch>.pth`` of the repository).
        No official weights are published (:meth:`load_official` raises)."""
        self._set_net(load_state(checkpoint, device, self.name), device, Path(checkpoint))

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a`` infrared, ``b`` visible (gray, [0, 1]) -> ``out / 2 + 0.5`` clipped to [0, 1]."""
        return np.clip(self.fuse_raw(a, b) * np.float32(0.5) + np.float32(0.5), 0.0, 1.0).astype(np.float32)

    def fuse_raw(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The tanh output (HxW, [-1, 1]); sources normalised to [-1, 1] and padded by 4 pixels (value 0)."""
        net = self._require(self.net)
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"ufgan: expected two HxW images of the same size, got {a.shape} and {b.shape}")
        if min(a.shape) + SHRINK < MIN_SIZE:
            raise ValueError(f"ufgan: images must be at least {MIN_SIZE - SHRINK}x{MIN_SIZE - SHRINK}, got {a.shape}")
        x = np.stack([a, b]) * np.float32(2.0) - np.float32(1.0)
        x = np.pad(x, ((0, 0), (PAD, PAD), (PAD, PAD)), mode="constant", constant_values=0.0)
        with torch.inference_mode():
            out = forward_with_bn_mode(net, self.to_tensor(*x), self.bn_mode)
        return to_image(out)


# --------------------------------------------------------------------------------------------- trainer
class UFGANTrainer(CentreCropTrainer):
    """One discriminator ``vi``; D every step, G every ``g_every`` steps; labels = central crops."""

    method: ClassVar[str] = "ufgan"
    crop: ClassVar[int] = PAD
    min_patch: ClassVar[int] = MIN_SIZE

    def __init__(
        self,
        device: str,
        lr: float = 1e-3,
        lam: float = 100.0,
        xi: float = 5.0,
        g_every: int = 2,
        content: str = "norm",
        seed: int | None = None,
        **other: Any,
    ) -> None:
        check_options("ufgan", other)
        self.content = choice("ufgan", "content", content, CONTENT)
        generator = seeded(seed, UFGANGenerator)
        disc = seeded(None if seed is None else seed + 1, UFGANDiscriminator)
        super().__init__(
            device,
            generator=generator,
            discriminator=disc,
            lr=lr,
            lam=lam,
            xi=xi,
            objective=LSGAN(real_label=(0.7, 1.2), fake_label=(0.0, 0.3), generator_label=(0.7, 1.2)),
            d_steps=1,
            g_every=int(g_every),
        )

    def content_terms(
        self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Frobenius norms over the pixel count (``content="norm"``) or mean squares of the intensity and
        zero-padded Laplacian differences."""
        d_int, d_grad = fused - ir, laplacian_zero(fused) - laplacian_zero(vi)
        if self.content == "norm":
            n = fused.numel()
            return d_int.pow(2).sum().sqrt() / n, d_grad.pow(2).sum().sqrt() / n
        return d_int.pow(2).mean(), d_grad.pow(2).mean()
