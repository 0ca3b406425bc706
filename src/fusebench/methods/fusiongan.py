"""FusionGAN (J. Ma, W. Yu, P. Liang, C. Li, J. Jiang, "FusionGAN: A generative adversarial network for
infrared and visible image fusion", Information Fusion 48, 2019; TF1 code ``jiayi-ma/FusionGAN``).

Generator (925,633 parameters): five **VALID** convolutions on ``cat([ir, vi])`` scaled to [-1, 1]:

* ``layer1`` 5x5, 2->256; ``layer2`` 5x5, 256->128; ``layer3`` 3x3, 128->64; ``layer4`` 3x3, 64->32 -- each
  conv + bias, BatchNorm (``scale=True``, eps 1e-5, decay 0.9 = torch momentum 0.1), leaky ReLU (0.2);
* ``layer5`` 1x1, 32->1, conv + bias, tanh.

The network shrinks its input by 12 pixels per side pair (4 + 4 + 2 + 2): training feeds 132x132 patches and
compares the 120x120 output with the patches' central 120x120 crops ("labels"); the official test script
pads each source by 6 pixels (``np.pad(..., 'edge')``) so the output has the input's size, and -- since TF1's
``batch_norm`` defaults to ``is_training=True`` and the test graph never changes it -- runs BatchNorm with the
statistics of the image being fused. It writes ``out * 127.5 + 127.5`` with ``scipy.misc.imsave``, which
min-max stretches float arrays to 0..255 (``normalize="minmax"``, the default here).

Discriminator: four stride-2 VALID 3x3 convs (1->32->64->128->256) with leaky ReLU (BatchNorm on the last
three), flattened, and a linear layer to one score (6 x 6 x 256 inputs for 120x120 labels).

Training (paper + code): LSGAN with soft labels -- discriminator ``E(D(vi) - a)^2 + E(D(F) - b)^2`` with
``a ~ U[0.7, 1.2]``, ``b ~ U[0, 0.3]`` drawn per sample; generator ``E(D(F) - c)^2 + lambda L_content``
with ``c ~ U[0.7, 1.2]`` and ``L_content = mean((F - ir)^2) + xi mean((lap F - lap vi)^2)``; lambda = 100,
xi = 8 (paper; the released code uses 5: option ``xi``); Adam lr 1e-4 for both networks, batch 32, two
discriminator updates per generator update, 10 epochs.

Official weights: the authors' TF1 checkpoint ``CGAN_120/CGAN.model-3`` (pinned in weights.yaml as
``fusiongan``; not in the data bundle). :func:`from_tf_variables` converts its ``fusion_model/...`` variables
(HWIO -> OIHW) and :meth:`FusionGAN.load_official` reads the checkpoint with :mod:`fusebench.tfcheckpoint`,
resetting BatchNorm gamma/beta to 1/0 as the official test graph does (it builds fresh BatchNorm layers);
:meth:`FusionGAN.fuse_official` runs ``test_one_image.py`` end to end. Tested on synthetic TF-layout variables
and files against an independent NHWC NumPy forward pass, not on the real file. See docs/methods/fusiongan.md.
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
from ..losses import laplacian
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .gan import LSGAN, CentreCropTrainer, check_options, forward_with_bn_mode, parameter_count, seeded

#: (kernel, in, out) of the five generator layers
GENERATOR_LAYERS = ((5, 2, 256), (5, 256, 128), (3, 128, 64), (3, 64, 32), (1, 32, 1))
SHRINK = sum(k - 1 for k, _, _ in GENERATOR_LAYERS)  # 12
PAD = SHRINK // 2  # the official test-time edge padding, 6
NORMALIZE = ("minmax", "none")
BN_MODES = ("train", "eval")
LEAK = 0.2
#: FusionGAN's soft labels
REAL_LABEL, FAKE_LABEL = (0.7, 1.2), (0.0, 0.3)

__all__ = [
    "FusionGAN",
    "FusionGANDiscriminator",
    "FusionGANGenerator",
    "FusionGANTrainer",
    "discriminator_from_tf_variables",
    "from_tf_variables",
    "parameter_count",
]


# --------------------------------------------------------------------------------------------- networks
class ConvBlock(nn.Module):
    """VALID conv + bias, optional BatchNorm, then leaky ReLU (or tanh for the last generator layer)."""

    def __init__(self, k: int, cin: int, cout: int, stride: int = 1, bn: bool = True, act: str = "lrelu") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride)
        self.bn = nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1) if bn else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return torch.tanh(x) if self.act == "tanh" else F.leaky_relu(x, LEAK)


def _tf_init(module: nn.Module) -> None:
    """The official initialisers: truncated normal (stddev 1e-3) weights, zero biases, BN gamma 1 / beta 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=1e-3, a=-2e-3, b=2e-3)
            nn.init.zeros_(m.bias)


class FusionGANGenerator(nn.Module):
    """Input Bx2xHxW (ir, vi) in [-1, 1]; output Bx1x(H-12)x(W-12) in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        for i, (k, cin, cout) in enumerate(GENERATOR_LAYERS, start=1):
            last = i == len(GENERATOR_LAYERS)
            self.add_module(f"layer{i}", ConvBlock(k, cin, cout, bn=not last, act="tanh" if last else "lrelu"))
        _tf_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, len(GENERATOR_LAYERS) + 1):
            x = getattr(self, f"layer{i}")(x)
        return x


def discriminator_side(size: int) -> int:
    """Spatial size after the discriminator's four stride-2 VALID 3x3 convs (120 -> 6)."""
    for _ in range(4):
        size = (size - 3) // 2 + 1
    if size < 1:
        raise ValueError("fusiongan: discriminator input too small (labels must be at least 31x31)")
    return size


class FusionGANDiscriminator(nn.Module):
    """Four stride-2 VALID 3x3 convs + linear; ``size`` is the (square) label size it judges."""

    def __init__(self, size: int = 120) -> None:
        super().__init__()
        self.layer_1 = ConvBlock(3, 1, 32, stride=2, bn=False)
        self.layer_2 = ConvBlock(3, 32, 64, stride=2)
        self.layer_3 = ConvBlock(3, 64, 128, stride=2)
        self.layer_4 = ConvBlock(3, 128, 256, stride=2)
        self.side = discriminator_side(int(size))
        self.line_5 = nn.Linear(self.side * self.side * 256, 1)
        _tf_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer_4(self.layer_3(self.layer_2(self.layer_1(x))))
        return self.line_5(x.flatten(1))


# ------------------------------------------------------------------------------------ TF1 conversion
def _bn_from_tf(prefix: str, variables: Mapping[str, np.ndarray], out: str, state: dict[str, torch.Tensor]) -> None:
    for tf_name, ours in (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean")):
        state[f"{out}.{ours}"] = torch.from_numpy(np.array(variables[f"{prefix}/BatchNorm/{tf_name}"], np.float32))
    state[f"{out}.running_var"] = torch.from_numpy(
        np.array(variables[f"{prefix}/BatchNorm/moving_variance"], np.float32)
    )
    state[f"{out}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def _conv_from_tf(w: np.ndarray) -> torch.Tensor:
    """HWIO (TF) -> OIHW (torch)."""
    return torch.from_numpy(np.ascontiguousarray(np.asarray(w, np.float32).transpose(3, 2, 0, 1)))


def from_tf_variables(variables: Mapping[str, np.ndarray], scope: str = "fusion_model") -> dict[str, torch.Tensor]:
    """The generator's state dict from the official TF1 variables (``fusion_model/layer1/w1``, ``.../b1``,
    ``.../BatchNorm/{gamma,beta,moving_mean,moving_variance}``, ...)."""
    state: dict[str, torch.Tensor] = {}
    for i, (k, cin, cout) in enumerate(GENERATOR_LAYERS, start=1):
        prefix = f"{scope}/layer{i}"
        w = variables.get(f"{prefix}/w{i}")
        if w is None:
            raise KeyError(f"fusiongan: TF variable {prefix}/w{i} not found")
        if tuple(np.shape(w)) != (k, k, cin, cout):
            raise ValueError(f"fusiongan: {prefix}/w{i} has shape {np.shape(w)}, expected {(k, k, cin, cout)}")
        state[f"layer{i}.conv.weight"] = _conv_from_tf(w)
        state[f"layer{i}.conv.bias"] = torch.from_numpy(np.array(variables[f"{prefix}/b{i}"], np.float32))
        if i < len(GENERATOR_LAYERS):
            _bn_from_tf(prefix, variables, f"layer{i}.bn", state)
    return state


def discriminator_from_tf_variables(
    variables: Mapping[str, np.ndarray], scope: str = "discriminator"
) -> dict[str, torch.Tensor]:
    """The discriminator's state dict from TF1 variables (``discriminator/layer_1/w_1`` ... ``line_5/w_5``).

    TF flattens NHWC feature maps (H, W, C order) before ``line_5``; torch flattens NCHW (C, H, W), so the
    linear weights are reordered."""
    state: dict[str, torch.Tensor] = {}
    for i in range(1, 5):
        prefix = f"{scope}/layer_{i}"
        state[f"layer_{i}.conv.weight"] = _conv_from_tf(variables[f"{prefix}/w_{i}"])
        state[f"layer_{i}.conv.bias"] = torch.from_numpy(np.array(variables[f"{prefix}/b_{i}"], np.float32))
        if i > 1:
            _bn_from_tf(prefix, variables, f"layer_{i}.bn", state)
    w = np.asarray(variables[f"{scope}/line_5/w_5"], np.float32)  # (side * side * 256, 1)
    side = int(round((w.shape[0] / 256) ** 0.5))
    if side * side * 256 != w.shape[0]:
        raise ValueError(f"fusiongan: line_5/w_5 has {w.shape[0]} inputs, not a square map of 256 channels")
    w_chw = w[:, 0].reshape(side, side, 256).transpose(2, 0, 1).reshape(1, -1)
    state["line_5.weight"] = torch.from_numpy(np.ascontiguousarray(w_chw))
    state["line_5.bias"] = torch.from_numpy(np.array(variables[f"{scope}/line_5/b_5"], np.float32))
    return state


# ---------------------------------------------------------------------------------------------- method
@METHODS.register("fusiongan")
class FusionGAN(LearnedMethod):
    """Options:

    * ``normalize`` ("minmax" = the official save, default | "none" = ``out / 2 + 0.5`` clipped);
    * ``bn_mode`` ("train" = per-image statistics as the official test graph, default | "eval").
    """

    name: ClassVar[str] = "fusiongan"
    network: ClassVar[type[nn.Module]] = FusionGANGenerator
    network_kind: ClassVar[str] = "a FusionGAN generator"
    net: FusionGANGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.normalize = choice(self.name, "normalize", self.options.get("normalize", "minmax"), NORMALIZE)
        self.bn_mode = choice(self.name, "bn_mode", self.options.get("bn_mode", "train"), BN_MODES)

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> FusionGANTrainer:
        return FusionGANTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`FusionGANTrainer`."""
        self._set_net(load_state(checkpoint, device, self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the authors' TF1 checkpoint (prefix, or one of its files; needs ``.index`` and ``.data``).

        Only the convolution kernels and biases are taken from the file. The official ``test_one_image.py``
        builds its graph with the checkpoint's ``w``/``b`` as constants and *fresh* ``batch_norm`` layers
        (``tf.global_variables_initializer``: gamma 1, beta 0) that normalise with the statistics of the image
        being fused, so the trained gamma/beta are never used: they are reset here to 1 and 0. (The stored
        moving statistics are kept; the official procedure never reads them either.)"""
        from ..tfcheckpoint import load_checkpoint

        prefix = str(weights)
        for suffix in (".index", ".data-00000-of-00001", ".meta"):
            prefix = prefix.removesuffix(suffix)
        state = from_tf_variables(load_checkpoint(prefix, scope="fusion_model/"))
        for key in [k for k in state if k.endswith(".bn.weight")]:
            state[key] = torch.ones_like(state[key])
            state[key.removesuffix("weight") + "bias"] = torch.zeros_like(state[key])
        self._set_net(state, device, Path(prefix))

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a`` infrared, ``b`` visible (gray, [0, 1]) -> fused image in [0, 1]."""
        raw = self.fuse_raw(a, b)
        if self.normalize == "none":
            return np.clip(raw * np.float32(0.5) + np.float32(0.5), 0.0, 1.0).astype(np.float32)
        lo, hi = float(raw.min()), float(raw.max())
        if hi <= lo:
            return np.full_like(raw, 0.5)
        return ((raw - lo) / (hi - lo)).astype(np.float32)

    def fuse_raw(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The tanh output (HxW, [-1, 1]) for [0, 1] inputs, with the official 6-pixel edge padding."""
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"fusiongan: expected two HxW images of the same size, got {a.shape} and {b.shape}")
        return self._forward(np.stack([a, b]) * np.float32(2.0) - np.float32(1.0), self.bn_mode)

    def _forward(self, x: np.ndarray, bn_mode: str) -> np.ndarray:
        """The generator on a 2xHxW (ir, vi) array in [-1, 1], edge-padded by 6 so the output is HxW."""
        net = self._require(self.net)
        x = np.pad(np.asarray(x, dtype=np.float32), ((0, 0), (PAD, PAD), (PAD, PAD)), mode="edge")
        with torch.inference_mode():
            out = forward_with_bn_mode(net, self.to_tensor(*x), bn_mode)
        return to_image(out)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The authors' ``test_one_image.py`` end to end (``a`` infrared, ``b`` visible): each source read with
        ``scipy.misc.imread(flatten=True, mode="YCbCr")`` (the luma of Pillow's RGB->YCbCr->RGB round trip,
        chroma dropped), ``(x - 127.5) / 127.5`` in float64, edge padding 6, BatchNorm on the image's own
        statistics (always, whatever ``bn_mode`` says), ``out * 127.5 + 127.5`` saved by ``scipy.misc.imsave``
        (per-image min-max stretch, round half up). Grey output, as the script writes (BMP there)."""
        x = (np.stack([official.scipy_luma(path_a), official.scipy_luma(path_b)]).astype(np.float64) - 127.5) / 127.5
        raw = self._forward(x.astype(np.float32), "train")
        return official.scipy_bytescale(raw * np.float32(127.5) + np.float32(127.5))


# --------------------------------------------------------------------------------------------- trainer
class FusionGANTrainer(CentreCropTrainer):
    """Batches of ``patch_size`` pairs (ir, vi) in [0, 1] -> [-1, 1]; labels are the central
    ``patch_size - 12`` crops; one discriminator ``vi``."""

    method: ClassVar[str] = "fusiongan"
    crop: ClassVar[int] = PAD
    min_patch: ClassVar[int] = SHRINK + 31  # the discriminator's four stride-2 3x3 convs need 31x31 labels

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        lam: float = 100.0,
        xi: float = 8.0,
        d_steps: int = 2,
        patch_size: int = 132,
        real_label: tuple[float, float] | list[float] | float = REAL_LABEL,
        fake_label: tuple[float, float] | list[float] | float = FAKE_LABEL,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        check_options("fusiongan", other)
        label = int(patch_size) - SHRINK
        generator = seeded(seed, FusionGANGenerator)
        disc = seeded(None if seed is None else seed + 1, lambda: FusionGANDiscriminator(label))
        real = tuple(real_label) if isinstance(real_label, list | tuple) else float(real_label)
        fake = tuple(fake_label) if isinstance(fake_label, list | tuple) else float(fake_label)
        super().__init__(
            device,
            generator=generator,
            discriminator=disc,
            lr=lr,
            lam=lam,
            xi=xi,
            objective=LSGAN(real_label=real, fake_label=fake, generator_label=real),
            d_steps=int(d_steps),
        )

    def content_terms(
        self, fused: torch.Tensor, ir: torch.Tensor, vi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean squared intensity and (reflect-padded) Laplacian differences."""
        return ((fused - ir) ** 2).mean(), ((laplacian(fused) - laplacian(vi)) ** 2).mean()
