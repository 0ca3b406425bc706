"""MFF-GAN (H. Zhang, Z. Le, Z. Shao, H. Xu, J. Ma, "MFF-GAN: An unsupervised generative adversarial network
with adaptive and gradient joint constraints for multi-focus image fusion", Information Fusion 66, 2021).

Reference code: ``HaoZhang1018/MFF-GAN`` @ ``2f674c8aa006`` (TensorFlow 1: ``model.py``, ``utils.py``,
``main.py``, ``test.py``) and its two checkpoints ``checkpoint/{Lytro,MFI-WHU}_model/CGAN.model-19``.
See docs/methods/mffgan.md for the recipe, the sources of every number and the deviations.

Generator (:class:`MFFGANGenerator`, 40,033 parameters): two branches, "near" (source a) and "far"
(source b), every convolution stride 1 with zero ("SAME") padding and a bias, LeakyReLU(0.2) =
``max(x, 0.2 x)`` after each, no normalisation:

* ``c1 = conv5x5(1 -> 16)`` and ``c2 = conv3x3(c1; 16 -> 16)`` per branch;
* cross link 1: ``m2 = [c2_near, c2_far]``, one 1x1 conv 32 -> 16 per branch on ``m2``;
* ``c3 = conv3x3([c1, c2, c23]; 48 -> 16)`` per branch (dense);
* cross link 2: ``m3 = [c3_near, c3_far]``, 1x1 32 -> 16 per branch;
* ``c4 = conv3x3([c1, c2, c3, c34]; 64 -> 16)`` per branch;
* output ``tanh(conv1x1([c1n, c1f, c2n, c2f, c3n, c3f, c4n, c4f]; 128 -> 1))``.

Module names are the TF variable scopes (``layer1``, ``layer1_far``, ``layer2_3``, ...), so
:func:`from_tf_checkpoint` only transposes HWIO kernels to OIHW.

Images are on [-1, 1] inside the network (``(x - 127.5) / 127.5`` of 0..255 data). At test time the official
script computes ``r = out * 127.5 + 127.5`` and saves it with ``scipy.misc.imsave``, which min-max stretches
each image to 0..255 (option ``output="stretch"``, the default); ``output="clip"`` returns ``clip(r/255)``.

Training (:class:`MFFGANTrainer`, on the shared :class:`~fusebench.methods.gan.AdversarialTrainer`):
focus score of each source ``w = |I - G(G(I))|`` (G: the official 3x3 blur, applied twice), a binary choice
``s_far = [w_far > w_near]``, ``s_near = 1 - s_far``; content loss
``L_int + 5 L_grad`` with ``L_int = mean(s_far (F - far)^2) + mean(s_near (F - near)^2)`` and ``L_grad`` the
same on Laplacians; adversarial LSGAN with soft labels on gradient maps: the discriminator sees
``max(|lap far|, |lap near|)`` as real and ``|lap F|`` as fake. ``L_G = L_adv + 10 (L_int + 5 L_grad)``;
two discriminator steps per generator step, Adam(1e-4) for both.
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
from ..losses import conv3x3, laplacian
from ..official import scipy_bytescale as bytescale  # the official save; re-exported
from ..tfcheckpoint import TFCheckpoint
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .gan import LSGAN, AdversarialTrainer, check_options, seeded
from .mfifgan import SYNTHESIS_KEYS, SyntheticFocus

__all__ = [
    "BLUR_3X3",
    "GENERATOR_PARAMETERS",
    "MFFGAN",
    "MFFGANDiscriminator",
    "MFFGANGenerator",
    "MFFGANTrainer",
    "bytescale",
    "focus_scores",
    "from_tf_checkpoint",
    "laplacian_same",
    "load_tf_generator",
    "repeated_blur_difference",
    "to_tf_names",
]

GENERATOR_PARAMETERS = 40_033
#: the official ``blur_2th`` kernel (utils.py), applied twice with zero padding
BLUR_3X3 = ((0.0947, 0.1183, 0.0947), (0.1183, 0.1478, 0.1183), (0.0947, 0.1183, 0.0947))
OUTPUTS = ("stretch", "clip")
DATA = ("pairs", "synthetic")

#: (our module name, TF scope, kernel size, in, out); the TF variables are <scope>/w<n> and <scope>/b<n>
GENERATOR_LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("layer1", 5, 1, 16),
    ("layer1_far", 5, 1, 16),
    ("layer2", 3, 16, 16),
    ("layer2_far", 3, 16, 16),
    ("layer2_3", 1, 32, 16),
    ("layer2_3_far", 1, 32, 16),
    ("layer3", 3, 48, 16),
    ("layer3_far", 3, 48, 16),
    ("layer3_4", 1, 32, 16),
    ("layer3_4_far", 1, 32, 16),
    ("layer4", 3, 64, 16),
    ("layer4_far", 3, 64, 16),
    ("layer5", 1, 128, 1),
)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    """The official ``lrelu``: ``max(x, 0.2 x)`` (identical to LeakyReLU(0.2))."""
    return F.leaky_relu(x, 0.2)


def _tf_init(module: nn.Module) -> None:
    """The official initialisers: truncated normal (std 1e-3, cut at 2 std) weights, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.trunc_normal_(m.weight, std=1e-3, a=-2e-3, b=2e-3)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------- networks
class MFFGANGenerator(nn.Module):
    """The two-branch dense generator with cross links (module docstring); inputs and output on [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        for name, k, cin, cout in GENERATOR_LAYERS:
            self.add_module(name, nn.Conv2d(cin, cout, k, padding=k // 2))
        _tf_init(self)

    def _c(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return _lrelu(getattr(self, name)(x))

    def forward(self, near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
        c1n, c1f = self._c("layer1", near), self._c("layer1_far", far)
        c2n, c2f = self._c("layer2", c1n), self._c("layer2_far", c1f)
        m2 = torch.cat([c2n, c2f], 1)
        c23n, c23f = self._c("layer2_3", m2), self._c("layer2_3_far", m2)
        c3n = self._c("layer3", torch.cat([c1n, c2n, c23n], 1))
        c3f = self._c("layer3_far", torch.cat([c1f, c2f, c23f], 1))
        m3 = torch.cat([c3n, c3f], 1)
        c34n, c34f = self._c("layer3_4", m3), self._c("layer3_4_far", m3)
        c4n = self._c("layer4", torch.cat([c1n, c2n, c3n, c34n], 1))
        c4f = self._c("layer4_far", torch.cat([c1f, c2f, c3f, c34f], 1))
        out = self.layer5(torch.cat([c1n, c1f, c2n, c2f, c3n, c3f, c4n, c4f], 1))
        return torch.tanh(out)


class MFFGANDiscriminator(nn.Module):
    """The official discriminator on 1-channel gradient maps.

    ``conv3x3/2 (VALID) 1 -> 32`` + LeakyReLU(0.2), then three ``conv3x3/2 (VALID)`` (64, 128, 256) each with
    BatchNorm (train-mode statistics, eps 1e-5, momentum 0.1 = TF decay 0.9) and LeakyReLU, flattened in TF's
    NHWC order, one linear unit. On the official 60x60 patches the last map is 2x2x256 = 1024 features. For
    other patch sizes the map is average-pooled to that 2x2 grid first (identity at 60x60; the official
    graph only accepts its training size), so the discriminator works with any patch of at least 31 pixels.
    """

    GRID = 2

    def __init__(self) -> None:
        super().__init__()
        self.layer_1 = nn.Conv2d(1, 32, 3, stride=2)
        self.layer_2 = nn.Conv2d(32, 64, 3, stride=2)
        self.bn_2 = nn.BatchNorm2d(64, eps=1e-5, momentum=0.1)
        self.layer_3 = nn.Conv2d(64, 128, 3, stride=2)
        self.bn_3 = nn.BatchNorm2d(128, eps=1e-5, momentum=0.1)
        self.layer_4 = nn.Conv2d(128, 256, 3, stride=2)
        self.bn_4 = nn.BatchNorm2d(256, eps=1e-5, momentum=0.1)
        self.line_5 = nn.Linear(self.GRID * self.GRID * 256, 1)
        _tf_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _lrelu(self.layer_1(x))
        x = _lrelu(self.bn_2(self.layer_2(x)))
        x = _lrelu(self.bn_3(self.layer_3(x)))
        x = _lrelu(self.bn_4(self.layer_4(x)))
        if x.shape[-2:] != (self.GRID, self.GRID):
            x = F.adaptive_avg_pool2d(x, self.GRID)
        return self.line_5(x.permute(0, 2, 3, 1).flatten(1))


# -------------------------------------------------------------------------------------- official weights
def _tf_names(name: str) -> tuple[str, str]:
    """TF variable names (kernel, bias) of our generator layer ``name``: ``layer2_3_far`` ->
    ``fusion_model/layer2_3_far/w2_3_far``."""
    suffix = name.removeprefix("layer")
    return f"fusion_model/{name}/w{suffix}", f"fusion_model/{name}/b{suffix}"


def from_tf_checkpoint(
    tensors: Mapping[str, np.ndarray],
    layers: tuple[tuple[str, int, int, int], ...] = GENERATOR_LAYERS,
    method: str = "mffgan",
) -> dict[str, torch.Tensor]:
    """Our generator state dict from the official TF variables (HWIO kernels -> OIHW). ``layers``: (module name =
    TF scope under ``fusion_model/``, kernel size, in, out) -- the naming of the Zhang/Ma TF1 family (MFF-GAN,
    SDNet, PMGI), whose variables are ``fusion_model/<scope>/w<suffix>`` and ``.../b<suffix>``."""
    state = {}
    for name, k, cin, cout in layers:
        w_name, b_name = _tf_names(name)
        if w_name not in tensors or b_name not in tensors:
            raise KeyError(f"{method}: the checkpoint has no {w_name} / {b_name}")
        w = np.asarray(tensors[w_name], dtype=np.float32)
        if w.shape != (k, k, cin, cout):
            raise ValueError(f"{method}: {w_name} has shape {w.shape}, expected {(k, k, cin, cout)}")
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
        state[f"{name}.bias"] = torch.from_numpy(np.asarray(tensors[b_name], dtype=np.float32).copy())
    return state


def to_tf_names(
    state: Mapping[str, torch.Tensor], layers: tuple[tuple[str, int, int, int], ...] = GENERATOR_LAYERS
) -> dict[str, np.ndarray]:
    """Inverse of :func:`from_tf_checkpoint` (for tests and export): TF names, HWIO kernels."""
    out = {}
    for name, *_ in layers:
        w_name, b_name = _tf_names(name)
        out[w_name] = state[f"{name}.weight"].detach().cpu().numpy().transpose(2, 3, 1, 0)
        out[b_name] = state[f"{name}.bias"].detach().cpu().numpy()
    return out


def load_tf_generator(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator of an official checkpoint (prefix, .index, .data-* file or its folder)."""
    return from_tf_checkpoint(TFCheckpoint(path).read_all("fusion_model/"))


# ---------------------------------------------------------------------------------- loss building blocks
def laplacian_same(x: torch.Tensor) -> torch.Tensor:
    """The official ``gradient``: 4-neighbour Laplacian with zero ("SAME") padding."""
    return laplacian(x, padding="zeros")


def repeated_blur_difference(x: torch.Tensor) -> torch.Tensor:
    """The official ``blur_2th`` focus measure ``|x - G(G(x))|`` (3x3 :data:`BLUR_3X3`, zero padding)."""
    return (x - conv3x3(conv3x3(x, BLUR_3X3, "zeros"), BLUR_3X3, "zeros")).abs()


def focus_scores(near: torch.Tensor, far: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_near, s_far): ``s_far = sign(w_far - min(w_far, w_near))`` = 1 where far is strictly sharper,
    else 0, and ``s_near = 1 - s_far`` (ties go to near), as the official graph computes them."""
    w_near, w_far = repeated_blur_difference(near), repeated_blur_difference(far)
    s_far = torch.sign(w_far - torch.minimum(w_far, w_near))
    return 1.0 - s_far, s_far


# ----------------------------------------------------------------------------------------------- method
@METHODS.register("mffgan")
class MFFGAN(LearnedMethod):
    """Options:

    * ``output`` ("stretch", default = the official save: per-image min-max stretch | "clip");
    * ``input_order`` ("ab" default | "ba"): which source feeds the "near" branch (the official outputs
      were made with a = near).
    """

    name: ClassVar[str] = "mffgan"
    network: ClassVar[type[nn.Module]] = MFFGANGenerator
    network_kind: ClassVar[str] = "an MFF-GAN generator"
    net: MFFGANGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.output = choice(self.name, "output", self.options.get("output", "stretch"), OUTPUTS)
        self.input_order = choice(self.name, "input_order", self.options.get("input_order", "ab"), ("ab", "ba"))

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> MFFGANTrainer:
        return MFFGANTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`MFFGANTrainer` (the generator's state dict)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load an official TF1 checkpoint (Lytro_model or MFI-WHU_model) with the pure-Python reader: its
        prefix (``.../CGAN.model-19``), its ``.index`` or ``.data-*`` file, or its folder."""
        self._set_net(load_tf_generator(weights), device, Path(weights))

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r = self.fuse_raw(np.asarray(a, np.float32) * np.float32(255), np.asarray(b, np.float32) * 255)
        if self.output == "stretch":
            return (bytescale(r).astype(np.float32) / np.float32(255)).astype(np.float32)
        return np.clip(r / np.float32(255), 0.0, 1.0).astype(np.float32)

    def fuse_raw(self, a255: np.ndarray, b255: np.ndarray) -> np.ndarray:
        """``out * 127.5 + 127.5`` for two HxW images on the 0..255 scale (what the official script hands to
        its save function; the official ``<pair>.npy``)."""
        net = self._require(self.net)
        a255, b255 = np.asarray(a255, np.float32), np.asarray(b255, np.float32)
        if a255.shape != b255.shape or a255.ndim != 2:
            raise ValueError(f"mffgan: expected two HxW images of one size, got {a255.shape}, {b255.shape}")
        near, far = (a255, b255) if self.input_order == "ab" else (b255, a255)

        def prep(x: np.ndarray) -> torch.Tensor:
            return self.to_tensor((x - np.float32(127.5)) / np.float32(127.5))

        with torch.inference_mode():
            out = net(prep(near), prep(far))
        return to_image(out) * np.float32(127.5) + np.float32(127.5)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The authors' ``test.py`` end to end: each source read with ``scipy.misc.imread(flatten=True,
        mode="YCbCr")`` (the luma of Pillow's RGB->YCbCr->RGB round trip; chroma dropped), scaled to [-1, 1],
        ``a`` to the near branch (``input_order``), ``out * 127.5 + 127.5`` saved by ``scipy.misc.imsave``
        (per-image min-max stretch, round half up). The script writes a **grey** image; the authors restore
        colour offline in MATLAB, which is not part of the published test script."""
        return bytescale(self.fuse_raw(official.scipy_luma(path_a), official.scipy_luma(path_b)))


# ---------------------------------------------------------------------------------------------- trainer
class MFFGANTrainer(AdversarialTrainer):
    """The official training step on the shared adversarial trainer (see the module docstring).

    Options: ``lr`` (1e-4, both Adam optimisers, TF defaults betas (0.9, 0.999), eps 1e-8), ``d_steps`` (2),
    ``adv_weight`` (1), ``content_weight`` (10), ``grad_weight`` (5), ``soft_labels`` (True: real and
    generator labels ~ U[0.7, 1.2], fake ~ U[0, 0.3], one per sample, as the official graph draws them),
    ``data`` ("pairs": the batch holds real multi-focus pairs (near, far) | "synthetic": multi-focus pairs
    are synthesised from the batch's images, see :class:`~fusebench.methods.mfifgan.SyntheticFocus`; the
    ``synthetic_*`` options configure it), ``seed`` (initial weights; None = global RNG).
    """

    method: ClassVar[str] = "mffgan"

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        d_steps: int = 2,
        adv_weight: float = 1.0,
        content_weight: float = 10.0,
        grad_weight: float = 5.0,
        soft_labels: bool = True,
        data: str = "pairs",
        seed: int | None = None,
        **other: Any,
    ) -> None:
        synthetic = {k: other.pop(k) for k in list(other) if k in SYNTHESIS_KEYS}
        check_options(self.method, other)
        self.data = choice("mffgan", "data", data, DATA)
        self.synthesis = SyntheticFocus.from_options(synthetic) if self.data == "synthetic" else None
        if synthetic and self.synthesis is None:
            raise TypeError("mffgan trainer: synthetic_* options need data='synthetic'")
        self.adv_weight, self.content_weight = float(adv_weight), float(content_weight)
        self.grad_weight = float(grad_weight)
        generator = seeded(seed, MFFGANGenerator)
        disc = seeded(None if seed is None else int(seed) + 1, MFFGANDiscriminator)
        objective = (
            LSGAN(real_label=(0.7, 1.2), fake_label=(0.0, 0.3), generator_label=(0.7, 1.2)) if soft_labels else LSGAN()
        )
        super().__init__(
            device,
            generator=generator,
            discriminators={"grad": disc},
            g_optimizer=torch.optim.Adam(generator.parameters(), lr=float(lr), eps=1e-8),
            d_optimizers={"grad": torch.optim.Adam(disc.parameters(), lr=float(lr), eps=1e-8)},
            objectives=objective,
            d_steps=int(d_steps),
        )

    def prepare_batch(self, batch: torch.Tensor) -> torch.Tensor:
        """Bx2xHxW [0, 1] -> (near, far) on [-1, 1] (synthesised from the batch when ``data="synthetic"``)."""
        batch = super().prepare_batch(batch)
        if self.synthesis is not None:
            a, b, _ = self.synthesis(batch)
            batch = torch.cat([a, b], dim=1)
        return batch * 2.0 - 1.0

    def generate(self, batch: torch.Tensor) -> torch.Tensor:
        return self.generator(batch[:, 0:1], batch[:, 1:2])

    def discriminator_inputs(
        self, name: str, batch: torch.Tensor, fused: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        near, far = batch[:, 0:1], batch[:, 1:2]
        real = torch.maximum(laplacian_same(far).abs(), laplacian_same(near).abs())
        return real, laplacian_same(fused).abs()

    def content_losses(self, batch: torch.Tensor, fused: torch.Tensor) -> dict[str, torch.Tensor]:
        near, far = batch[:, 0:1], batch[:, 1:2]
        s_near, s_far = focus_scores(near, far)
        intensity = (s_far * (fused - far) ** 2).mean() + (s_near * (fused - near) ** 2).mean()
        g_fused = laplacian_same(fused)
        gradient = (s_far * (g_fused - laplacian_same(far)) ** 2).mean() + (
            s_near * (g_fused - laplacian_same(near)) ** 2
        ).mean()
        return {
            "intensity": intensity,
            "gradient": gradient,
            "content": intensity + self.grad_weight * gradient,
        }

    def generator_loss(self, batch: torch.Tensor, fused: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        terms = self.content_losses(batch, fused)
        adversarial = self.adversarial("grad", laplacian_same(fused).abs())
        total = self.adv_weight * adversarial + self.content_weight * terms["content"]
        return {"loss": total, "adversarial": adversarial, **terms}
