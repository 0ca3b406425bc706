"""FuseGAN (X. Guo, R. Nie, J. Cao, D. Zhou, L. Mei, K. He, "FuseGAN: Learning to Fuse Multi-Focus Image via
Conditional Generative Adversarial Network", IEEE Transactions on Multimedia 21(8), 2019,
doi:10.1109/TMM.2019.2895292).

No official code or weights exist. What the paper states (abstract and method overview) and what fusebench
takes from it:

* a conditional GAN doing "images-to-image" translation: the pair of sources is mapped to a *focus
  confidence map*; the generator's encoder is a **Siamese** network (one encoder, shared weights, applied
  to each source) so that two inputs give one output;
* the **least-squares GAN** objective (for training stability);
* the final decision map is the confidence map refined by a **convolutional CRF**, and the fused image
  is ``F = A m + B (1 - m)``;
* training data **synthesised** from natural images (Pascal VOC 2012): foreground and background separated by
  segmentation masks and defocused with a **normalised disk point-spread function**.

Everything else is fusebench's choice, made the way the pix2pix family (which the paper builds on) does it,
and listed in docs/methods/fusegan.md: the ResNet-style generator (7x7 conv 64, two stride-2 convs to 256
per source; concatenation, 3x3 fusion conv 512 -> 256, nine residual blocks; two transposed convs, 7x7 conv,
sigmoid), the 70x70 PatchGAN discriminator on ``[A, B, m]``, the L1 term (weight 100) beside the LSGAN term,
Adam(2e-4, betas 0.5/0.999), the disk radii of the synthetic data and the mean-field CRF parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import METHODS, DecisionMapMethod, choice, load_state, to_image
from .gan import LSGAN, ConditionalMapTrainer, check_options, seeded
from .mfifgan import SYNTHESIS_KEYS, SyntheticFocus

__all__ = [
    "GENERATOR_PARAMETERS",
    "FuseGAN",
    "FuseGANGenerator",
    "FuseGANTrainer",
    "PatchDiscriminator",
    "conv_crf",
    "run_generator",
]

GENERATOR_PARAMETERS = 12_551_041
REFINE = ("crf", "threshold", "none")


# ============================================================================================ networks
def _conv_bn_relu(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    pad: list[nn.Module] = [nn.ReflectionPad2d(k // 2)] if stride == 1 and k > 1 else []
    conv = nn.Conv2d(cin, cout, k, stride=stride, padding=0 if pad or k == 1 else k // 2, bias=False)
    return [*pad, conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ResidualBlock(nn.Module):
    """``x + BN(conv3x3(ReLU(BN(conv3x3(x)))))`` with reflection padding (CycleGAN / pix2pix ResNet block)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=False),
            nn.BatchNorm2d(dim),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class FuseGANGenerator(nn.Module):
    """Siamese encoder (shared weights), concatenation, fusion conv, residual blocks, decoder, sigmoid.

    Sizes must be multiples of 4 (:func:`run_generator` pads by reflection and crops back).
    """

    def __init__(self, width: int = 64, blocks: int = 9) -> None:
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            *_conv_bn_relu(1, w, 7), *_conv_bn_relu(w, 2 * w, 3, 2), *_conv_bn_relu(2 * w, 4 * w, 3, 2)
        )
        self.fusion = nn.Sequential(*_conv_bn_relu(8 * w, 4 * w, 3), *(ResidualBlock(4 * w) for _ in range(blocks)))
        self.decoder = nn.Sequential(
            nn.ConvTranspose2d(4 * w, 2 * w, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(inplace=True),
            nn.ConvTranspose2d(2 * w, w, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(3),
            nn.Conv2d(w, 1, 7),
            nn.Sigmoid(),
        )

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        features = torch.cat([self.encoder(a), self.encoder(b)], dim=1)
        return self.decoder(self.fusion(features))


class PatchDiscriminator(nn.Module):
    """70x70 PatchGAN (pix2pix ``n_layers=3``) on ``[A, B, m]``: 4x4 convs 64 (stride 2, no norm), 128, 256
    (stride 2), 512 (stride 1), each with BatchNorm and LeakyReLU(0.2), then a 4x4 conv to one score per patch
    (no sigmoid: least-squares objective)."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        seq: list[nn.Module] = [
            nn.Conv2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2**n, 8)
            seq += [
                nn.Conv2d(width * prev, width * mult, 4, stride=2 if n < layers else 1, padding=1, bias=False),
                nn.BatchNorm2d(width * mult),
                nn.LeakyReLU(0.2, True),
            ]
        seq += [nn.Conv2d(width * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def run_generator(net: FuseGANGenerator, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``net(a, b)`` for any H x W: sources reflect-padded (bottom, right) to multiples of 4, map cropped."""
    h, w = a.shape[-2:]
    ph, pw = -h % 4, -w % 4
    if ph or pw:
        a, b = (F.pad(x, (0, pw, 0, ph), mode="reflect") for x in (a, b))
    return net(a, b)[..., :h, :w]


def _init_weights(module: nn.Module) -> None:
    """pix2pix's ``init_type="normal"``: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build_generator() -> FuseGANGenerator:
    g = FuseGANGenerator()
    _init_weights(g)
    return g


def build_discriminator() -> PatchDiscriminator:
    d = PatchDiscriminator()
    _init_weights(d)
    return d


# ========================================================================================== refinement
def conv_crf(
    prob: np.ndarray,
    image: np.ndarray,
    window: int = 7,
    iterations: int = 5,
    appearance_weight: float = 1.0,
    smoothness_weight: float = 1.0,
    theta_alpha: float = 3.0,
    theta_beta: float = 0.05,
    theta_gamma: float = 1.0,
) -> np.ndarray:
    """Two-label fully-connected-CRF mean field restricted to a ``window`` x ``window`` neighbourhood (the
    "convolutional CRF" of Teichmann & Cipolla, 2018), with fixed (not learned) Gaussian kernels:

    ``k(i, j) = w_a exp(-|p_i - p_j|^2 / 2 theta_alpha^2 - |I_i - I_j|^2 / 2 theta_beta^2)
    + w_s exp(-|p_i - p_j|^2 / 2 theta_gamma^2)`` (positions in pixels, ``I`` the guide image in [0, 1]),
    Potts compatibility, unaries ``-log p``. Returns the refined probability of label 1 (HxW float32).
    """
    p = np.clip(np.asarray(prob, dtype=np.float32), 1e-6, 1 - 1e-6)
    h, w = p.shape
    r = window // 2
    guide = torch.from_numpy(np.asarray(image, dtype=np.float32))[None, None]
    unary = torch.from_numpy(np.stack([np.log(1 - p), np.log(p)]))[None]  # 1 x 2 x H x W (= -energy)
    # Pairwise kernel per pixel and neighbour: 1 x K x H x W, K = window^2 (centre excluded).
    patches = F.unfold(F.pad(guide, (r, r, r, r), mode="replicate"), window).view(1, window * window, h, w)
    dy, dx = np.meshgrid(np.arange(-r, r + 1), np.arange(-r, r + 1), indexing="ij")
    dist2 = torch.from_numpy((dy**2 + dx**2).astype(np.float32).reshape(1, -1, 1, 1))
    kernel = appearance_weight * torch.exp(
        -dist2 / (2 * theta_alpha**2) - (patches - guide) ** 2 / (2 * theta_beta**2)
    ) + smoothness_weight * torch.exp(-dist2 / (2 * theta_gamma**2))
    kernel[:, (window * window) // 2] = 0.0
    q = torch.softmax(unary, dim=1)
    for _ in range(iterations):
        neighbours = F.unfold(F.pad(q, (r, r, r, r), mode="replicate"), window).view(1, 2, window * window, h, w)
        message = (neighbours * kernel[:, None]).sum(dim=2)  # agreement with each label
        q = torch.softmax(unary + message, dim=1)
    return q[0, 1].numpy().astype(np.float32)


# ============================================================================================== method
@METHODS.register("fusegan")
class FuseGAN(DecisionMapMethod):
    """Options: ``refine`` ("crf" default: convolutional CRF then threshold 0.5 | "threshold": threshold 0.5
    only | "none": the generator's soft confidence map), ``crf`` (a dict of :func:`conv_crf` keyword
    arguments)."""

    name: ClassVar[str] = "fusegan"
    network: ClassVar[type[nn.Module]] = FuseGANGenerator
    network_kind: ClassVar[str] = "a FuseGAN generator"
    net: FuseGANGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.refine = choice(self.name, "refine", self.options.get("refine", "crf"), REFINE)
        self.crf_options = dict(self.options.get("crf", {}))

    def trainer(self, device: str, **train_options: Any) -> FuseGANTrainer:
        return FuseGANTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`FuseGANTrainer` (no official weights exist)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def raw_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The generator's confidence map (HxW float32 in (0, 1)); inputs reflect-padded to multiples of 4."""
        net = self._require(self.net)
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"fusegan: expected two HxW images of one size, got {a.shape} and {b.shape}")
        with torch.inference_mode():
            m = run_generator(net, self.to_tensor(a * 2 - 1), self.to_tensor(b * 2 - 1))
        return to_image(m)

    def decision_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        m = self.raw_map(a, b)
        if self.refine == "none":
            return m
        if self.refine == "crf":
            m = conv_crf(m, (np.asarray(a, np.float32) + np.asarray(b, np.float32)) / 2, **self.crf_options)
        return (m > 0.5).astype(np.float32)


# ============================================================================================= trainer
class FuseGANTrainer(ConditionalMapTrainer):
    """cGAN training on synthetic triplets: per step one PatchGAN update with the LSGAN loss on
    ``[A, B, M]`` (real) vs ``[A, B, G(A, B)]`` (fake), then one generator update with
    ``LSGAN(D(A, B, G)) + l1_weight |G - M|_1``. Sources on [-1, 1], maps in [0, 1]."""

    method: ClassVar[str] = "fusegan"

    def __init__(
        self,
        device: str,
        lr: float = 2e-4,
        beta1: float = 0.5,
        beta2: float = 0.999,
        l1_weight: float = 100.0,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        synthetic = {k: other.pop(k) for k in list(other) if k in SYNTHESIS_KEYS}
        check_options(self.method, other)
        defaults = {"psf": "disk", "blur": (1.5, 4.5), "matte": "hard", "swap": 0.5}
        generator = seeded(seed, build_generator)
        disc = seeded(None if seed is None else int(seed) + 1, build_discriminator)
        super().__init__(
            device,
            synthesis=SyntheticFocus.from_options(synthetic, **defaults),
            name="patch",
            generator=generator,
            discriminator=disc,
            g_lr=lr,
            d_lr=lr,
            betas=(float(beta1), float(beta2)),
            objective=LSGAN(),
            map_weight=l1_weight,
        )

    def generate(self, batch: torch.Tensor) -> torch.Tensor:
        return run_generator(self.generator, batch[:, 0:1], batch[:, 1:2])
