"""PMGI (H. Zhang, H. Xu, Y. Xiao, X. Guo, J. Ma, "Rethinking the image fusion: A fast unified image fusion network
based on proportional maintenance of gradient and intensity", AAAI 2020).

Reference code: ``HaoZhang1018/PMGI_AAAI2020`` @ ``61a85e49a306`` (TensorFlow 1: ``Code_PMGI/<task>/model.py``,
``main.py``, ``utils.py``, ``test_one_image.py``), one checkpoint per task (``IR_VI``, ``Medical``, ``Multi-exp``,
``Multi-focus``), read here by fusebench's pure-Python TF checkpoint reader. See docs/methods/pmgi.md.

Generator (:class:`PMGIGenerator`, 41,633 convolution parameters + 384 BatchNorm gamma/beta): MFF-GAN's two-branch
topology (see :mod:`fusebench.methods.mffgan`), branches "ir" and "vi" (TF scopes ``layerN`` / ``layerN_vi``),
with 3-channel inputs ``concat(ir, ir, vi)`` and ``concat(vi, vi, ir)``, and a BatchNorm (TF contrib
``batch_norm``, ``scale=True``, eps 1e-5 raised to 1.001e-5 by the fused kernel) between every convolution
except the last and its LeakyReLU(0.2); output ``tanh``; images on [-1, 1].

BatchNorm at test time: the official script leaves ``is_training`` at True and never loads the BatchNorm
variables, so each layer normalises with the statistics of the current image and gamma = 1, beta = 0
(``norm="official"``, the default). ``norm="trained"`` uses the checkpoint's moving averages and gamma/beta
instead (eval-mode BatchNorm; not what the authors ran).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..official import scipy_luma
from ..tfcheckpoint import TFCheckpoint
from ..training import NetTrainer, check_options, seeded
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .mffgan import _lrelu, _tf_init, _tf_names, bytescale, laplacian_same

__all__ = [
    "LOSS_WEIGHTS",
    "PMGI",
    "PMGIGenerator",
    "PMGITrainer",
    "from_tf_checkpoint",
    "load_tf_generator",
]

#: the fused kernel's effective epsilon (``tf.nn.fused_batch_norm`` raises 1e-5 to at least 1.001e-5)
EPS = 1.001e-5
NORMS = ("official", "trained")
OUTPUTS = ("stretch", "clip")
#: which source (0 = a, 1 = b in fusebench's modality order) feeds the "ir" branch, per task: the official
#: mapping (reference/official-outputs/pmgi/README.md; medical: CT or PET in the ir slot, MRI in the vi slot)
IR_SOURCE = {"ivif": 0, "mif": 1, "mef": 0, "mff": 0}
#: per task, the official ``g_loss_2`` weights (intensity ir, intensity vi, gradient ir, gradient vi) of
#: ``Code_PMGI/<task>/model.py``; the total loss is 100 x their weighted sum
LOSS_WEIGHTS: dict[str, tuple[float, float, float, float]] = {
    "ivif": (1.0, 0.3, 4.0, 5.0),
    "mif": (1.0, 1.0, 0.0, 300.0),
    "mef": (1.5, 1.5, 16.0, 16.0),
    "mff": (2.0, 2.0, 3.0, 3.0),
}

#: (module = TF scope, kernel size, in, out); every layer but layer5 has a BatchNorm
GENERATOR_LAYERS: tuple[tuple[str, int, int, int], ...] = (
    ("layer1", 5, 3, 16),
    ("layer1_vi", 5, 3, 16),
    ("layer2", 3, 16, 16),
    ("layer2_vi", 3, 16, 16),
    ("layer2_3", 1, 32, 16),
    ("layer2_3_vi", 1, 32, 16),
    ("layer3", 3, 48, 16),
    ("layer3_vi", 3, 48, 16),
    ("layer3_4", 1, 32, 16),
    ("layer3_4_vi", 1, 32, 16),
    ("layer4", 3, 64, 16),
    ("layer4_vi", 3, 64, 16),
    ("layer5", 1, 128, 1),
)


# --------------------------------------------------------------------------------------------- network
class ConvBN(nn.Module):
    """SAME conv with bias, BatchNorm, LeakyReLU(0.2) (``conv`` / ``bn`` = TF ``w``,``b`` / ``BatchNorm/*``)."""

    def __init__(self, k: int, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, padding=k // 2)
        self.bn = nn.BatchNorm2d(cout, eps=EPS, momentum=0.1)  # TF decay 0.9

    def forward(self, x: torch.Tensor, image_stats: bool) -> torch.Tensor:
        x = self.conv(x)
        if image_stats:
            # the official test graph: batch statistics of this batch (one image), gamma 1, beta 0
            x = F.batch_norm(x, None, None, training=True, eps=EPS)
        else:
            x = self.bn(x)
        return _lrelu(x)


class PMGIGenerator(nn.Module):
    """The official ``fusion_model``; inputs are the 1-channel ir and vi images on [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        for name, k, cin, cout in GENERATOR_LAYERS[:-1]:
            self.add_module(name, ConvBN(k, cin, cout))
        self.layer5 = nn.Conv2d(128, 1, 1)
        _tf_init(self)

    def forward(self, ir: torch.Tensor, vi: torch.Tensor, image_stats: bool = False) -> torch.Tensor:
        """``image_stats``: normalise with each batch's own statistics and no affine (the official test);
        otherwise the BatchNorm modules (train mode: batch statistics and gamma/beta, as in training; eval
        mode: moving averages)."""

        def c(name: str, x: torch.Tensor) -> torch.Tensor:
            return getattr(self, name)(x, image_stats)

        x_ir, x_vi = torch.cat([ir, ir, vi], 1), torch.cat([vi, vi, ir], 1)
        c1i, c1v = c("layer1", x_ir), c("layer1_vi", x_vi)
        c2i, c2v = c("layer2", c1i), c("layer2_vi", c1v)
        m2 = torch.cat([c2i, c2v], 1)
        c23i, c23v = c("layer2_3", m2), c("layer2_3_vi", m2)
        c3i, c3v = c("layer3", torch.cat([c1i, c2i, c23i], 1)), c("layer3_vi", torch.cat([c1v, c2v, c23v], 1))
        m3 = torch.cat([c3i, c3v], 1)
        c34i, c34v = c("layer3_4", m3), c("layer3_4_vi", m3)
        c4i = c("layer4", torch.cat([c1i, c2i, c3i, c34i], 1))
        c4v = c("layer4_vi", torch.cat([c1v, c2v, c3v, c34v], 1))
        return torch.tanh(self.layer5(torch.cat([c1i, c1v, c2i, c2v, c3i, c3v, c4i, c4v], 1)))


# -------------------------------------------------------------------------------------- official weights
_BN = {"bn.weight": "gamma", "bn.bias": "beta", "bn.running_mean": "moving_mean", "bn.running_var": "moving_variance"}


def from_tf_checkpoint(tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our generator state dict from the official TF variables (HWIO -> OIHW; BatchNorm variables as well)."""
    state: dict[str, torch.Tensor] = {}

    def get(name: str, shape: tuple[int, ...]) -> torch.Tensor:
        if name not in tensors:
            raise KeyError(f"pmgi: the checkpoint has no {name}")
        value = np.asarray(tensors[name], dtype=np.float32)
        if value.shape != shape:
            raise ValueError(f"pmgi: {name} has shape {value.shape}, expected {shape}")
        return torch.from_numpy(np.ascontiguousarray(value.transpose(3, 2, 0, 1) if value.ndim == 4 else value))

    for name, k, cin, cout in GENERATOR_LAYERS:
        w_name, b_name = _tf_names(name)
        prefix = name if name == "layer5" else f"{name}.conv"
        state[f"{prefix}.weight"] = get(w_name, (k, k, cin, cout))
        state[f"{prefix}.bias"] = get(b_name, (cout,))
        if name != "layer5":
            for key, tf_key in _BN.items():
                state[f"{name}.{key}"] = get(f"fusion_model/{name}/BatchNorm/{tf_key}", (cout,))
            state[f"{name}.bn.num_batches_tracked"] = torch.tensor(0)
    return state


def load_tf_generator(path: str | Path) -> dict[str, torch.Tensor]:
    """The generator of an official checkpoint (prefix, .index, .data-* file or its folder)."""
    return from_tf_checkpoint(TFCheckpoint(path).read_all("fusion_model/"))


# ----------------------------------------------------------------------------------------------- method
@METHODS.register("pmgi")
class PMGI(LearnedMethod):
    """Options:

    * ``norm`` ("official" default: per-image BatchNorm statistics, gamma 1, beta 0, as the authors ran it |
      "trained": the checkpoint's moving averages and gamma/beta);
    * ``output`` ("stretch" default = the official save, per-image min-max stretch | "clip").

    The task decides which source feeds the ir branch (:data:`IR_SOURCE`) and, in training, the loss weights.
    """

    network: ClassVar[type[nn.Module]] = PMGIGenerator
    network_kind: ClassVar[str] = "a PMGI generator"
    net: PMGIGenerator | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.norm = choice(self.name, "norm", self.options.get("norm", "official"), NORMS)
        self.output = choice(self.name, "output", self.options.get("output", "stretch"), OUTPUTS)

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> PMGITrainer:
        train_options.setdefault("task", self.task or "ivif")
        return PMGITrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`PMGITrainer` (the generator's state dict)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load an official TF1 checkpoint (any of the four tasks) with the pure-Python reader: its prefix
        (``.../CGAN.model-1``), ``.index`` or ``.data-*`` file, or its folder."""
        self._set_net(load_tf_generator(weights), device, Path(weights))

    # -- fusion
    def fuse_raw(self, a255: np.ndarray, b255: np.ndarray) -> np.ndarray:
        """``out * 127.5 + 127.5`` for two HxW images on 0..255 in fusebench's order (the official ``.npy``)."""
        net = self._require(self.net)
        a255, b255 = np.asarray(a255, np.float32), np.asarray(b255, np.float32)
        if a255.shape != b255.shape or a255.ndim != 2:
            raise ValueError(f"pmgi: expected two HxW images of one size, got {a255.shape}, {b255.shape}")
        ir, vi = (a255, b255) if IR_SOURCE.get(self.task or "ivif", 0) == 0 else (b255, a255)

        def prep(x: np.ndarray) -> torch.Tensor:
            return self.to_tensor((x - np.float32(127.5)) / np.float32(127.5))

        with torch.inference_mode():
            out = net(prep(ir), prep(vi), image_stats=self.norm == "official")
        return to_image(out) * np.float32(127.5) + np.float32(127.5)

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r = self.fuse_raw(np.asarray(a, np.float32) * np.float32(255), np.asarray(b, np.float32) * np.float32(255))
        if self.output == "stretch":
            return (bytescale(r).astype(np.float32) / np.float32(255)).astype(np.float32)
        return np.clip(r / np.float32(255), 0.0, 1.0).astype(np.float32)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """``test_one_image.py``: SciPy's flattened YCbCr read, [-1, 1], the network with per-image BatchNorm,
        ``out * 127.5 + 127.5``, SciPy ``imsave``'s min-max stretch. Gray uint8 HxW (no colour in Python)."""
        return bytescale(self.fuse_raw(scipy_luma(path_a), scipy_luma(path_b)))


# ---------------------------------------------------------------------------------------------- trainer
class PMGITrainer(NetTrainer):
    """The official training step: ``100 * (w_int_ir ||F - ir||^2 + w_int_vi ||F - vi||^2 + w_grad_ir
    ||lap F - lap ir||^2 + w_grad_vi ||lap F - lap vi||^2)`` (means; Laplacian with zero padding), weights
    per task (:data:`LOSS_WEIGHTS`, overridable by ``loss_weights``), Adam(``lr``), BatchNorm in training mode
    (batch statistics, learned gamma/beta, moving averages with decay 0.9). Images on [-1, 1]; a pair's source
    order follows :data:`IR_SOURCE`.
    """

    def __init__(
        self,
        device: str,
        task: str = "ivif",
        lr: float = 1e-4,
        loss_weights: tuple[float, float, float, float] | list[float] | None = None,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("pmgi", other)
        self.task = choice("pmgi", "task", task, tuple(LOSS_WEIGHTS))
        weights = LOSS_WEIGHTS[self.task] if loss_weights is None else tuple(float(w) for w in loss_weights)
        if len(weights) != 4:
            raise ValueError("pmgi trainer: loss_weights are 4 numbers (intensity ir, vi, gradient ir, vi)")
        self.weights = weights
        self.net = seeded(seed, PMGIGenerator).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(lr), eps=1e-8)

    def losses(self, ir: torch.Tensor, vi: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for N x 1 x H x W ir and vi on [-1, 1]."""
        fused = self.net(ir, vi)
        g = laplacian_same(fused)
        terms = {
            "int_ir": ((fused - ir) ** 2).mean(),
            "int_vi": ((fused - vi) ** 2).mean(),
            "grad_ir": ((g - laplacian_same(ir)) ** 2).mean(),
            "grad_vi": ((g - laplacian_same(vi)) ** 2).mean(),
        }
        total = 100 * sum(w * t for w, t in zip(self.weights, terms.values(), strict=True))
        return {"loss": total, **terms}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"pmgi trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        batch = batch.to(self.device, torch.float32) * 2 - 1
        i = IR_SOURCE[self.task]
        ir, vi = batch[:, i : i + 1], batch[:, 1 - i : 2 - i]
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(ir, vi)
        terms["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
