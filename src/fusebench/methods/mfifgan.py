"""MFIF-GAN (Y. Wang, S. Xu, J. Liu, Z. Zhao, C. Zhang, J. Zhang, "MFIF-GAN: A new generative adversarial
network for multi-focus image fusion", Signal Processing: Image Communication 96, 2021; arXiv 2009.09718).

Reference code: ``ycwang-libra/MFIF-GAN`` @ ``69f0feb48a3c`` (PyTorch: ``model.py``, ``solver.py``,
``main.py``, ``data_loader.py``, ``CNN_post_process.py``, ``to_same_size.py``) and its data preparation
``data_preparation/data_generation.m`` @ ``1c96df4ba2a9``. See docs/methods/mfifgan.md (recipe, deviations)
and docs/data/multifocus-synthetic.md (the training data).

This module also holds what the multi-focus *decision-map* methods share (MFIF-GAN, FuseGAN):

* :class:`SyntheticFocus`: multi-focus training triplets (A, B, focus map) synthesised on the fly from any
  sharp images, with complementary blur and (optionally) alpha-matte boundaries;
* :func:`remove_small_regions` / :func:`postprocess_map`: the official threshold + small-object removal;
* MFIF-GAN is a :class:`~fusebench.methods.base.DecisionMapMethod`: ``F = A m + B (1 - m)``, with the map
  exposed so that colour images are combined with the same map.

Generator (:class:`MFIFGANGenerator`, 13,700,928 parameters; module names mirror the official ones, so the
official ``*-G.ckpt`` state dict loads as it is): one shared encoder ``line1`` (7x7 conv 1 -> 64, two stride-2
3x3 convs to 256 channels, nine SE residual blocks; every conv without bias and followed by BatchNorm + ReLU)
applied to each source separately, the two 256-channel maps concatenated, and a decoder of two 4x4 stride-2
transposed convs (512 -> 256 -> 128, BN, ReLU) and a 7x7 conv to one channel with a sigmoid: the focus map
``m`` (weight of source A). Sources are on [-1, 1]. The official generator takes RGB and averages the
encoder features of the three colour channels; :meth:`MFIFGAN.decision_map` works on gray (Y) images, which is
the same computation on a gray image stored as RGB only; :meth:`MFIFGAN.fuse_official` (``protocol: official``)
runs the official per-channel encoding and test script.

Discriminator (:class:`MFIFGANDiscriminator`): the official 6-layer conv net on the concatenation
``[A, B, m]`` (3 channels here, 7 with RGB in the original), ending in a sigmoid, trained with WGAN-GP.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import nn

from .. import official
from .base import METHODS, DecisionMapMethod, choice, load_state, to_image
from .gan import ConditionalMapTrainer, Objective, check_options, seeded

__all__ = [
    "GENERATOR_PARAMETERS",
    "SYNTHESIS_KEYS",
    "ConditionalWGANGP",
    "MFIFGAN",
    "MFIFGANDiscriminator",
    "MFIFGANGenerator",
    "MFIFGANTrainer",
    "SyntheticFocus",
    "blur",
    "center_crop",
    "disk_kernel",
    "gaussian_kernel",
    "postprocess_map",
    "random_masks",
    "remove_small_regions",
]

GENERATOR_PARAMETERS = 13_700_928
MAP_RANGES = ("official", "unit")


# ===================================================================================== synthetic data
def gaussian_kernel(sigma: float) -> np.ndarray:
    """MATLAB ``imgaussfilt`` kernel: size ``2 ceil(2 sigma) + 1``, normalised (float64)."""
    radius = max(1, math.ceil(2.0 * float(sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(x**2) / (2.0 * float(sigma) ** 2))
    k = np.outer(g, g)
    return k / k.sum()


def disk_kernel(radius: float, supersample: int = 8) -> np.ndarray:
    """Normalised disk (pillbox) PSF of ``radius`` pixels; border pixels weighted by the fraction of their
    area inside the disk (``supersample`` x ``supersample`` sub-pixels), approximating MATLAB's
    ``fspecial('disk')``."""
    radius = float(radius)
    half = max(1, math.ceil(radius - 0.5))
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    grid = np.arange(-half, half + 1, dtype=np.float64)
    ys = (grid[:, None] + offsets[None, :]).reshape(-1)
    inside = (ys[:, None] ** 2 + ys[None, :] ** 2) <= radius**2
    k = inside.reshape(2 * half + 1, supersample, 2 * half + 1, supersample).mean(axis=(1, 3))
    return k / k.sum()


def blur(x: torch.Tensor, kernel: np.ndarray) -> torch.Tensor:
    """Convolve N x 1 x H x W with one 2-D kernel, replicate padding (MATLAB ``imgaussfilt``'s default)."""
    r = kernel.shape[0] // 2
    k = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)[None, None]
    return F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), k)


def random_masks(
    n: int,
    height: int,
    width: int,
    cells: tuple[int, int] = (2, 6),
    coverage: tuple[float, float] = (0.3, 0.7),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``n`` random binary focus masks (N x 1 x H x W float {0, 1}): smooth random blobs.

    For each mask, Gaussian noise on a ``c x c`` grid (``c`` uniform in ``cells``) is upsampled
    bicubically to H x W and thresholded at its ``1 - f`` quantile, ``f`` uniform in ``coverage`` (the
    foreground fraction).
    These stand in for the object masks (Pascal VOC segmentations) of the original datasets; see
    docs/data/multifocus-synthetic.md.
    """
    masks = []
    for _ in range(n):
        c = int(torch.randint(int(cells[0]), int(cells[1]) + 1, (1,), generator=generator))
        frac = float(torch.rand((), generator=generator)) * (coverage[1] - coverage[0]) + coverage[0]
        noise = torch.randn(1, 1, c, c, generator=generator, dtype=torch.float64)
        field = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False)
        threshold = torch.quantile(field.flatten(), 1.0 - frac)
        masks.append((field > threshold).to(torch.float32))
    return torch.cat(masks) if masks else torch.zeros(0, 1, height, width)


#: trainer options that configure :class:`SyntheticFocus` (``synthetic_<field>``)
SYNTHESIS_KEYS: frozenset[str] = frozenset(
    {"synthetic_psf", "synthetic_blur", "synthetic_matte", "synthetic_sources", "synthetic_cells",
     "synthetic_coverage", "synthetic_swap"}
)  # fmt: skip


@dataclass(frozen=True)
class SyntheticFocus:
    """Multi-focus triplets (A, B, m) from sharp images, on the fly (see docs/data/multifocus-synthetic.md).

    For each sharp image ``S`` (the batch's sources: ``sources="both"`` uses a and b as two images, ``"a"`` /
    ``"b"`` one of them) a random focus mask ``M`` (:func:`random_masks`) and a blurred copy ``S_b`` (``psf``:
    ``"gaussian"`` with sigma, or ``"disk"`` with radius, drawn uniformly from ``blur``) give

    * ``matte="alpha"`` (MFIF-GAN's alpha-matte model, ``data_generation.m``): ``A = S M + S_b (1 - M)`` and
      ``B = S_b M_b + S (1 - M_b)`` with ``M_b`` the mask blurred by the same PSF, so the defocused
      foreground of B spreads over the boundary (the defocus spread effect);
    * ``matte="hard"``: ``A = S M + S_b (1 - M)``, ``B = S_b M + S (1 - M)`` (complementary blur, sharp
      boundaries);

    and the ground-truth map ``M`` (1 where A is in focus). With probability ``swap`` a triplet becomes
    ``(B, A, 1 - M)``. Random draws come from torch's global CPU RNG (which the shared training loop
    checkpoints, so a resumed run synthesises the same data) or from ``generator``.
    """

    psf: str = "gaussian"
    blur: tuple[float, float] = (1.0, 1.0)
    matte: str = "alpha"
    sources: str = "both"
    cells: tuple[int, int] = (2, 6)
    coverage: tuple[float, float] = (0.3, 0.7)
    swap: float = 0.0

    def __post_init__(self) -> None:
        choice("synthesis", "psf", self.psf, ("gaussian", "disk"))
        choice("synthesis", "matte", self.matte, ("alpha", "hard"))
        choice("synthesis", "sources", self.sources, ("both", "a", "b"))
        for name in ("blur", "cells", "coverage"):
            value = getattr(self, name)
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise ValueError(f"synthesis: {name} must be a (low, high) range with 0 < low <= high")
        if self.coverage[1] >= 1.0:
            raise ValueError("synthesis: coverage must lie in (0, 1)")
        if not 0.0 <= self.swap <= 1.0:
            raise ValueError("synthesis: swap is a probability in [0, 1]")

    @classmethod
    def from_options(cls, options: Mapping[str, Any], **defaults: Any) -> SyntheticFocus:
        """From trainer options ``synthetic_<field>`` (ranges as 2-element lists), over ``defaults``."""
        names = {f.name for f in fields(cls)}
        values = dict(defaults)
        for key, value in options.items():
            name = key.removeprefix("synthetic_")
            if not key.startswith("synthetic_") or name not in names:
                raise TypeError(f"unknown synthesis option {key!r}")
            values[name] = value
        for name in ("blur", "coverage"):
            if name in values:
                values[name] = tuple(float(v) for v in values[name])
        if "cells" in values:
            values["cells"] = tuple(int(v) for v in values["cells"])
        for name in ("swap",):
            if name in values:
                values[name] = float(values[name])
        return cls(**values)

    def kernel(self, size: float) -> np.ndarray:
        return gaussian_kernel(size) if self.psf == "gaussian" else disk_kernel(size)

    def sharp(self, batch: torch.Tensor) -> torch.Tensor:
        """The sharp images S of a Bx2xHxW batch, N x 1 x H x W in the order of the triplets (the ground
        truth of supervised fusion: swapping A and B does not change S)."""
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"synthesis: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        if self.sources == "both":
            return batch.reshape(-1, 1, *batch.shape[-2:])
        return batch[:, (0 if self.sources == "a" else 1)][:, None]

    def __call__(
        self, batch: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Bx2xHxW sharp sources in [0, 1] -> (A, B, M), each N x 1 x H x W (N = 2B for "both")."""
        sharp = self.sharp(batch)
        n, _, h, w = sharp.shape
        masks = random_masks(n, h, w, self.cells, self.coverage, generator).to(sharp.device, sharp.dtype)
        sizes = torch.rand(n, generator=generator, dtype=torch.float64) * (self.blur[1] - self.blur[0])
        swaps = torch.rand(n, generator=generator) < self.swap
        a_list, b_list, m_list = [], [], []
        for i in range(n):
            kernel = self.kernel(self.blur[0] + float(sizes[i]))
            s, m = sharp[i : i + 1], masks[i : i + 1]
            s_b = blur(s, kernel)
            a = s * m + s_b * (1 - m)
            if self.matte == "alpha":
                m_b = blur(m, kernel)
                b = s_b * m_b + s * (1 - m_b)
            else:
                b = s_b * m + s * (1 - m)
            if bool(swaps[i]):
                a, b, m = b, a, 1 - m
            a_list.append(a)
            b_list.append(b)
            m_list.append(m)
        return torch.cat(a_list), torch.cat(b_list), torch.cat(m_list)


# ============================================================================== decision-map helpers
def remove_small_regions(mask: np.ndarray, min_size: float) -> np.ndarray:
    """Drop 4-connected ``True`` regions with fewer than ``min_size`` pixels (skimage's
    ``remove_small_objects(mask, min_size)`` with connectivity 1, as the official post-processing
    calls it)."""
    mask = np.asarray(mask, dtype=bool)
    labels, count = ndimage.label(mask)  # default structure: 4-connectivity in 2-D
    if count == 0:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    keep = sizes >= min_size
    keep[0] = False
    return keep[labels]


def postprocess_map(m: np.ndarray, min_fraction: float = 0.001, threshold: float = 0.5) -> np.ndarray:
    """The official post-processing (``CNN_post_process.py``): ``m > threshold``, then remove foreground and
    background regions smaller than ``min_fraction * H * W`` pixels. Returns a float32 {0, 1} map."""
    m = np.asarray(m)
    size = min_fraction * m.shape[0] * m.shape[1]
    fg = remove_small_regions(m > threshold, size)
    bg = remove_small_regions(~fg, size)
    return (~bg).astype(np.float32)


def center_crop(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """torchvision ``CenterCrop`` offsets (``int(round(diff / 2))``, Python rounding), on N x C x H x W."""
    top = int(round((t.shape[-2] - height) / 2.0))
    left = int(round((t.shape[-1] - width) / 2.0))
    return t[..., top : top + height, left : left + width]


# ============================================================================================ networks
def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class SELayer(nn.Module):
    """Squeeze-and-excitation: global average, FC C -> C/r, ReLU, FC -> C, sigmoid, channel scaling."""

    def __init__(self, channel: int, reduction: int = 16) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, channel // reduction, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channel // reduction, channel, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        return x * self.fc(self.avgpool(x).view(b, c)).view(b, c, 1, 1)


class SEBasicBlock(nn.Module):
    """ResNet basic block, SE before the residual addition: ``relu(x + SE(BN(conv(relu(BN(conv x))))))``."""

    def __init__(self, planes: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv1 = conv3x3(planes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = SELayer(planes, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return self.relu(out + x)


class Line(nn.Module):
    """The encoder: 7x7 conv 1 -> 64, two 3x3 stride-2 convs (128, 256), ``blocks`` SE residual blocks."""

    def __init__(self, conv_dim: int = 64, blocks: int = 9, down: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, conv_dim, kernel_size=7, stride=1, padding=3, bias=False),
            nn.BatchNorm2d(conv_dim, eps=1e-5, momentum=0.1),
            nn.ReLU(inplace=True),
        ]
        dim = conv_dim
        for _ in range(down):
            layers += [
                nn.Conv2d(dim, dim * 2, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(dim * 2, eps=1e-5, momentum=0.1),
                nn.ReLU(inplace=True),
            ]
            dim *= 2
        layers += [SEBasicBlock(dim) for _ in range(blocks)]
        self.line = nn.Sequential(*layers)
        self.out_channels = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.line(x)


class MFIFGANGenerator(nn.Module):
    """Shared encoder on each source, concatenation, decoder to a sigmoid focus map (module docstring).

    Output size is ``4 ceil(H / 4) x 4 ceil(W / 4)``; :meth:`MFIFGAN.decision_map` center-crops it, as the
    official ``to_same_size`` does.
    """

    def __init__(self, conv_dim: int = 64, blocks: int = 9, down: int = 2, up: int = 2) -> None:
        super().__init__()
        encoder = Line(conv_dim, blocks, down)
        self.line1 = nn.Sequential(encoder)
        dim = encoder.out_channels * 2
        layers: list[nn.Module] = []
        for _ in range(up):
            layers += [
                nn.ConvTranspose2d(dim, dim // 2, kernel_size=4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(dim // 2, eps=1e-5, momentum=0.1),
                nn.ReLU(inplace=True),
            ]
            dim //= 2
        layers += [nn.Conv2d(dim, 1, kernel_size=7, stride=1, padding=3, bias=False), nn.Sigmoid()]
        self.decode = nn.Sequential(*layers)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        # Each source goes through the encoder on its own (own BatchNorm batch statistics in training), as
        # the official forward does for each colour channel of each source.
        return self.decode(torch.cat([self.line1(a), self.line1(b)], dim=1))


class MFIFGANDiscriminator(nn.Module):
    """The official discriminator on ``[A, B, m]``: 4x4 convs, stride 2: ``in -> 64`` (padding 2, bias,
    LeakyReLU 0.01), ``-> 128 -> 256`` (padding 1, bias, BN, LeakyReLU 0.01), three ``256 -> 256`` (padding 2,
    no bias, BN, ReLU), then a 4x4 stride-1 conv to one channel and a sigmoid (a grid of scores)."""

    def __init__(self, in_channels: int = 3, conv_dim: int = 64, repeat_num: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, conv_dim, kernel_size=4, stride=2, padding=2),
            nn.LeakyReLU(0.01),
        ]
        dim = conv_dim
        for _ in range(1, repeat_num):
            layers += [
                nn.Conv2d(dim, dim * 2, kernel_size=4, stride=2, padding=1),
                nn.BatchNorm2d(dim * 2, eps=1e-5, momentum=0.1),
                nn.LeakyReLU(0.01),
            ]
            dim *= 2
        for _ in range(repeat_num):
            layers += [
                nn.Conv2d(dim, dim, kernel_size=4, stride=2, padding=2, bias=False),
                nn.BatchNorm2d(dim, eps=1e-5, momentum=0.1),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.Conv2d(dim, 1, kernel_size=4, stride=1, padding=2), nn.Sigmoid()]
        self.main = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x)


# ============================================================================================== method
@METHODS.register("mfifgan")
class MFIFGAN(DecisionMapMethod):
    """Options:

    * ``postprocess`` (True: threshold 0.5 + small-region removal, the official test | False: the raw
      sigmoid map); ``min_fraction`` (0.001: regions below this fraction of the image are removed).
    """

    name: ClassVar[str] = "mfifgan"
    network: ClassVar[type[nn.Module]] = MFIFGANGenerator
    network_kind: ClassVar[str] = "an MFIF-GAN generator"
    net_entries: ClassVar[tuple[str, ...]] = ("line1", "decode")  # the official procedure calls them itself
    net: MFIFGANGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.postprocess = bool(self.options.get("postprocess", True))
        self.min_fraction = float(self.options.get("min_fraction", 0.001))

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> MFIFGANTrainer:
        return MFIFGANTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`MFIFGANTrainer` (the generator's state dict)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the official generator ``110000-G.ckpt`` (a PyTorch state dict with our key layout; pinned in
        weights.yaml as ``mfif-gan``)."""
        self._set_net(load_state(weights, "cpu", self.name), device, Path(weights))

    def _set_net(self, state: Mapping[str, Any], device: str, source: Path) -> None:
        state = dict(state)
        for key in [k for k in state if k.endswith(".running_var")]:  # BatchNorm layers of PyTorch < 0.4.1 files
            state.setdefault(key.removesuffix("running_var") + "num_batches_tracked", torch.tensor(0, dtype=torch.long))
        super()._set_net(state, device, source)

    # -- fusion
    def raw_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The generator's sigmoid map (HxW float32), center-cropped to the input size."""
        net = self._require(self.net)
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"mfifgan: expected two HxW images of one size, got {a.shape} and {b.shape}")

        def prep(x: np.ndarray) -> torch.Tensor:  # ToTensor + Normalize(0.5, 0.5)
            return self.to_tensor((x - 0.5) / 0.5)

        with torch.inference_mode():
            m = center_crop(net(prep(a), prep(b)), *a.shape)
        return to_image(m)

    def decision_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = self.raw_map(a, b)
        return postprocess_map(m, self.min_fraction) if self.postprocess else m

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The authors' ``Solver.test`` end to end (``a`` is the script's A, weight ``m``), in torch float32 as
        the script computes it:

        1. each source decoded to RGB (a grey source replicated to three channels, as the script's
           ``grayscale_jpg`` loader does), ``ToTensor`` + ``Normalize(0.5, 0.5)``;
        2. the encoder on the R, G and B channels **separately**, the three encodings averaged per source, the
           decoder's sigmoid map (generator in eval mode);
        3. a map larger than the image (sides not multiples of 4) goes through ``to_same_size``: 8-bit PIL image
           (``mul(255).byte()``, truncation), centre crop, back to [0, 1];
        4. ``m > 0.5`` and removal of regions below ``0.001 H W`` pixels (foreground, then background), always;
        5. ``F = A m + B (1 - m)`` on [-1, 1], back to [0, 1]; colour pairs are saved by torchvision's
           ``save_image`` (``x 255 + 0.5``, truncated; HxWx3), pairs of two grey sources by the ``grayscale_jpg``
           branch (first channel, ``x 255`` truncated; HxW). fusebench writes PNG (the script writes JPEG).
        """
        net = self._require(self.net)
        rgb_a, rgb_b = official.pil_rgb(path_a), official.pil_rgb(path_b)
        if rgb_a.shape != rgb_b.shape:
            raise ValueError(f"mfifgan: {path_a} is {rgb_a.shape[:2]} but {path_b} is {rgb_b.shape[:2]}")
        grey = official.is_gray_rgb(rgb_a) and official.is_gray_rgb(rgb_b)

        def prep(rgb: np.ndarray) -> torch.Tensor:  # ToTensor + Normalize(0.5, 0.5)
            t = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float().div(255)
            return ((t - 0.5) / 0.5)[None].to(self.device)

        def encode(x: torch.Tensor) -> torch.Tensor:  # the official forward: one encoding per colour channel
            return (net.line1(x[:, 0:1]) + net.line1(x[:, 1:2]) + net.line1(x[:, 2:3])) / 3

        height, width = rgb_a.shape[:2]
        with torch.inference_mode():
            a, b = prep(rgb_a), prep(rgb_b)
            m = net.decode(torch.cat([encode(a), encode(b)], dim=1))
            if m.shape[-2:] != (height, width):  # to_same_size: through an 8-bit PIL image
                m = center_crop(m.mul(255).byte(), height, width).float().div(255)
            m = torch.from_numpy(postprocess_map(to_image(m), 0.001)).to(self.device)
            fused = ((a * m + b * (1 - m)) + 1) / 2
            fused = fused.clamp(0, 1)[0]
            if grey:
                return (fused[0] * 255).cpu().numpy().astype(np.uint8)
            return fused.mul(255).add(0.5).clamp(0, 255).permute(1, 2, 0).to(torch.uint8).cpu().numpy()


# ============================================================================================= trainer
@dataclass(frozen=True)
class ConditionalWGANGP(Objective):
    """WGAN-GP for a conditional discriminator on ``[condition, x]``: the first ``condition`` channels are
    the same in real and fake inputs (the sources); interpolates and the gradient penalty concern the
    remaining channels only (the map), as in the official ``gradient_penalty(D(A, B, x_hat), x_hat)``."""

    weight: float = 10.0
    condition: int = 2

    name: ClassVar[str] = "wgan-gp-conditional"

    def discriminator_loss(
        self, disc: nn.Module, real: torch.Tensor, fake: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        d_real, d_fake = disc(real).mean(), disc(fake).mean()
        c = self.condition
        alpha = torch.rand(real.shape[0], 1, 1, 1, dtype=real.dtype, device=real.device)
        x_hat = (alpha * real[:, c:] + (1 - alpha) * fake[:, c:]).detach().requires_grad_(True)
        out = disc(torch.cat([real[:, :c].detach(), x_hat], dim=1))
        (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
        penalty = ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()
        loss = d_fake - d_real + self.weight * penalty
        return loss, {"real": d_real.detach(), "fake": d_fake.detach(), "penalty": penalty.detach()}

    def generator_loss(self, d_fake: torch.Tensor) -> torch.Tensor:
        return -d_fake.mean()


class MFIFGANTrainer(ConditionalMapTrainer):
    """The official ``Solver.train`` on the shared adversarial trainer; one loop step = one iteration.

    Every step: synthesise triplets (A, B, M) from the batch (:class:`SyntheticFocus`; sources and targets
    on [-1, 1] with ``map_range="official"``, see below), one discriminator update with the conditional
    WGAN-GP loss ``D(A, B, G) - D(A, B, M) + lambda_gp GP``; every ``n_critic``-th step (``(step + 1) %
    n_critic == 0``, the shared trainer's ``g_every``) also one generator update with
    ``-D(A, B, G) + lambda_rec |M - G|_1``. Between generator updates the log repeats the last generator
    values (NaN before the first).

    Learning rates follow the official code: from the first ``lr_update_step`` multiple after
    ``steps - lr_decay_iters``, every ``lr_update_step`` steps both rates drop by ``lr / lr_decay_iters``
    (so the official 120,000-iteration run ends at 0.999 lr: the code's "linear decay" is nearly none).

    ``map_range="official"``: the released data loader normalises the ground-truth focus maps like the
    images, ``(M - 0.5) / 0.5``, so the targets (L1 and the discriminator's real input) are -1/+1 while the
    generator's sigmoid output lies in (0, 1). ``"unit"`` uses ``M`` in {0, 1}, the generator's range.
    """

    method: ClassVar[str] = "mfifgan"
    map_term: ClassVar[str] = "reconstruction"
    G_TERMS: ClassVar[tuple[str, ...]] = ("loss", "adversarial", map_term)

    def __init__(
        self,
        device: str,
        g_lr: float = 1e-4,
        d_lr: float = 1e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        n_critic: int = 5,
        lambda_rec: float = 10.0,
        lambda_gp: float = 10.0,
        lr_decay_iters: int = 10_000,
        lr_update_step: int = 1000,
        map_range: str = "official",
        steps: int | None = None,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        synthetic = {k: other.pop(k) for k in list(other) if k in SYNTHESIS_KEYS}
        check_options(self.method, other)
        self.map_range = choice("mfifgan trainer", "map_range", map_range, MAP_RANGES)
        self.n_critic = int(n_critic)
        if self.n_critic < 1:
            raise ValueError("mfifgan trainer: n_critic must be >= 1")
        self.base_lr = (float(g_lr), float(d_lr))
        self.total_steps = None if steps is None else int(steps)
        self.lr_decay_iters, self.lr_update_step = int(lr_decay_iters), int(lr_update_step)
        generator = seeded(seed, MFIFGANGenerator)
        disc = seeded(None if seed is None else int(seed) + 1, MFIFGANDiscriminator)
        super().__init__(
            device,
            synthesis=SyntheticFocus.from_options(synthetic),
            name="map",
            generator=generator,
            discriminator=disc,
            g_lr=g_lr,
            d_lr=d_lr,
            betas=(float(beta1), float(beta2)),
            objective=ConditionalWGANGP(weight=float(lambda_gp), condition=2),
            map_weight=lambda_rec,
            g_every=self.n_critic,
        )
        self.last_g: dict[str, float] = {k: float("nan") for k in self.G_TERMS}
        self.set_lr(0)

    # -- data
    def map_target(self, m: torch.Tensor) -> torch.Tensor:
        return m * 2 - 1 if self.map_range == "official" else m

    def generate(self, batch: torch.Tensor) -> torch.Tensor:
        """The map, center-cropped to the patch (the generator gives ``4 ceil(H / 4)`` rows)."""
        return center_crop(self.generator(batch[:, 0:1], batch[:, 1:2]), *batch.shape[-2:])

    # -- schedule
    def lr_at(self, step: int) -> tuple[float, float]:
        """Learning rates in force for step ``step`` (0-based), after the official decay updates so far."""
        if self.total_steps is None:
            return self.base_lr
        start = self.total_steps - self.lr_decay_iters  # updates at i+1 = k * lr_update_step > start
        first = (max(start, 0) // self.lr_update_step + 1) * self.lr_update_step
        updates = 0 if step < first else (step - first) // self.lr_update_step + 1
        return tuple(lr - updates * lr / self.lr_decay_iters for lr in self.base_lr)  # type: ignore[return-value]

    def set_lr(self, step: int) -> None:
        g_lr, d_lr = self.lr_at(step)
        for group in self.g_optimizer.param_groups:
            group["lr"] = g_lr
        for group in self.d_optimizers["map"].param_groups:
            group["lr"] = d_lr

    def after_step(self, step: int) -> None:
        super().after_step(step)
        self.set_lr(step + 1)  # the rates of the next step (optimiser states, hence checkpoints, keep them)

    def generator_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        self.last_g = super().generator_step(batch, step)
        return dict(self.last_g)

    def generator_terms(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """Steps without a generator update log the last update's values: a log-only generator forward
        would cost a pass of the 13.7M-parameter network and, in train mode, move its BatchNorm running
        statistics, which the official iteration does not do."""
        return dict(self.last_g)

    def extra_state(self) -> dict[str, Any]:
        return {"last_g": dict(self.last_g)}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.last_g = {k: float(v) for k, v in state.get("last_g", self.last_g).items()}
