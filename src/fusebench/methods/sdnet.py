"""SDNet (H. Zhang, J. Ma, "SDNet: A Versatile Squeeze-and-Decomposition Network for Real-Time Image Fusion",
IJCV 129, 2021).

Reference code: ``HaoZhang1018/SDNet`` @ ``bf6a2eeed1f7`` (TensorFlow 1; one folder per task, ``IR_VIS``,
``Medical``, ``Multi_exposure``, ``Multi_focus``, each with ``model.py``, ``train.py``, ``test.py``, ``utils.py`` and
its checkpoint). The network is the same in all four; the loss weights and patching differ per task. See
docs/methods/sdnet.md for the recipe, its sources and the deviations.

Network (:class:`SDNetNet`, 67,091 parameters; every conv stride 1, zero "SAME" padding, bias; LeakyReLU(0.2) =
``max(x, 0.2 x)``; no normalisation), two branches ``*_ir`` and ``*_vi``:

* squeeze (fusion) part, per branch: ``c1 = conv5x5(x) 1 -> 16``, ``c2 = conv3x3(c1) 16 -> 16``,
  ``c3 = conv3x3([c1, c2]) 32 -> 16``, ``c4 = conv3x3([c1, c2, c3]) 48 -> 16``; fused
  ``F = tanh(conv1x1[layer5_fuse]([c1_ir, c1_vi, c2_ir, c2_vi, c3_ir, c3_vi, c4_ir, c4_vi]) 128 -> 1)``;
* decomposition part (training only): ``d = lrelu(conv1x1[layer6_sept](F) 1 -> 128)``, per branch
  ``tanh(conv3x3(lrelu(conv3x3(lrelu(conv3x3(d) 128 -> 16)) 16 -> 4)) 4 -> 1)``: the two sources rebuilt from F.

The official scripts feed ir / CT-PET ("Function") / under-exposed / near to the ``*_ir`` branch: fusebench's
source a, except for MIF, whose datasets list ``mri`` first (option ``input_order``).

Images are on [-1, 1] inside the network (``(x - 127.5) / 127.5`` of 0..255 data). The official test script saves
``out * 127.5 + 127.5`` with ``scipy.misc.imsave``, which min-max stretches each image (``output="stretch"``).
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
from .mffgan import BLUR_3X3, OUTPUTS, bytescale, from_tf_checkpoint, laplacian_same

__all__ = [
    "LAYERS",
    "LOSS_WEIGHTS",
    "NET_PARAMETERS",
    "SDNet",
    "SDNetNet",
    "SDNetTrainer",
    "gradient_scores",
    "load_tf_net",
    "low_pass",
    "squeeze_decomposition_loss",
]

NET_PARAMETERS = 67_091
#: (module name = TF scope under fusion_model/, kernel size, in, out)
LAYERS: tuple[tuple[str, int, int, int], ...] = tuple(
    (f"layer{n}_{side}", k, cin, cout)
    for n, k, cin, cout in ((1, 5, 1, 16), (2, 3, 16, 16), (3, 3, 32, 16), (4, 3, 48, 16))
    for side in ("ir", "vi")
) + (
    ("layer5_fuse", 1, 128, 1),
    ("layer6_sept", 1, 1, 128),
    *(
        (f"layer{n}_{side}", 3, cin, cout)
        for n, cin, cout in ((7, 128, 16), (8, 16, 4), (9, 4, 1))
        for side in ("ir", "vi")
    ),
)
ORDERS = ("ab", "ba")
#: per task: (intensity weight of source b, gradient weight) of each folder's model.py; source a's intensity
#: weight and the decomposition weight are 1 everywhere
LOSS_WEIGHTS: Mapping[str, tuple[float, float]] = {
    "ivif": (0.5, 80.0),  # IR_VIS
    "mif": (0.5, 10.0),  # Medical
    "mef": (1.0, 50.0),  # Multi_exposure
    "mff": (1.0, 3.0),  # Multi_focus
}


def _tf_init(module: nn.Module) -> None:
    """The official initialisers: truncated normal (std 1e-3, cut at 2 std) kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=1e-3, a=-2e-3, b=2e-3)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------- network
class SDNetNet(nn.Module):
    """The squeeze (fusion) and decomposition network of model.py (module docstring); [-1, 1] in and out."""

    def __init__(self) -> None:
        super().__init__()
        for name, k, cin, cout in LAYERS:
            self.add_module(name, nn.Conv2d(cin, cout, k, padding=k // 2))
        _tf_init(self)

    def _c(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(getattr(self, name)(x), 0.2)

    def squeeze(self, ir: torch.Tensor, vi: torch.Tensor) -> torch.Tensor:
        """The fused image (what the test script fetches)."""
        maps: dict[str, list[torch.Tensor]] = {}
        for side, x in (("ir", ir), ("vi", vi)):
            c1 = self._c(f"layer1_{side}", x)
            c2 = self._c(f"layer2_{side}", c1)
            c3 = self._c(f"layer3_{side}", torch.cat([c1, c2], 1))
            c4 = self._c(f"layer4_{side}", torch.cat([c1, c2, c3], 1))
            maps[side] = [c1, c2, c3, c4]
        interleaved = [m for pair in zip(maps["ir"], maps["vi"], strict=True) for m in pair]
        return torch.tanh(self.layer5_fuse(torch.cat(interleaved, 1)))

    def decompose(self, fused: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two sources rebuilt from the fused image (the decomposition loss's inputs)."""
        d = self._c("layer6_sept", fused)
        out = []
        for side in ("ir", "vi"):
            h = self._c(f"layer8_{side}", self._c(f"layer7_{side}", d))
            out.append(torch.tanh(getattr(self, f"layer9_{side}")(h)))
        return out[0], out[1]

    def forward(self, ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        fused = self.squeeze(ir, vi)
        return (fused, *self.decompose(fused))


def load_tf_net(path: str | Path) -> dict[str, torch.Tensor]:
    """Our state dict from an official checkpoint (prefix, ``.index``, ``.data-*`` or folder), all 32 variables."""
    return from_tf_checkpoint(TFCheckpoint(path).read_all("fusion_model/"), LAYERS, "sdnet")


# ----------------------------------------------------------------------------------------------- method
@METHODS.register("sdnet")
class SDNet(LearnedMethod):
    """Options:

    * ``output`` ("stretch", default = the official save: per-image min-max stretch | "clip": the network
      output ``out * 127.5 + 127.5`` clipped to 0..255);
    * ``input_order`` ("ab" | "ba": which source feeds the ``*_ir`` branch; default "ba" for ``task="mif"``,
      whose datasets list ``mri`` first while the official Medical script feeds CT/PET there, else "ab").

    Weights: one official checkpoint per task."""

    network: ClassVar[type[nn.Module]] = SDNetNet
    network_kind: ClassVar[str] = "an SDNet network"
    net_entries: ClassVar[tuple[str, ...]] = ("squeeze",)
    net: SDNetNet | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.output = choice(self.name, "output", self.options.get("output", "stretch"), OUTPUTS)
        default_order = "ba" if self.task == "mif" else "ab"
        self.input_order = choice(self.name, "input_order", self.options.get("input_order", default_order), ORDERS)

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> SDNetTrainer:
        b_weight, grad_weight = LOSS_WEIGHTS.get(self.task or "ivif", LOSS_WEIGHTS["ivif"])
        train_options.setdefault("b_weight", b_weight)
        train_options.setdefault("grad_weight", grad_weight)
        train_options.setdefault("swap", self.input_order == "ba")
        return SDNetTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`SDNetTrainer` (the network's state dict)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load one official TF1 checkpoint (IR_VIS, Medical, Multi_exposure or Multi_focus): its prefix
        (``.../IRVIS.model-10``), ``.index``, ``.data-*`` file or folder."""
        self._set_net(load_tf_net(weights), device, Path(weights))

    # -- fusion
    def fuse_raw(self, a255: np.ndarray, b255: np.ndarray) -> np.ndarray:
        """``out * 127.5 + 127.5`` for two HxW sources on the 0..255 scale, fed in ``input_order``: what the
        official script hands to its save function (the official ``<pair>.npy``)."""
        net = self._require(self.net)
        a255, b255 = np.asarray(a255, np.float32), np.asarray(b255, np.float32)
        if a255.shape != b255.shape or a255.ndim != 2:
            raise ValueError(f"sdnet: expected two HxW images of one size, got {a255.shape}, {b255.shape}")

        def prep(x: np.ndarray) -> torch.Tensor:
            return self.to_tensor((x - np.float32(127.5)) / np.float32(127.5))

        ir, vi = (a255, b255) if self.input_order == "ab" else (b255, a255)
        with torch.inference_mode():
            out = net.squeeze(prep(ir), prep(vi))
        return to_image(out) * np.float32(127.5) + np.float32(127.5)

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        r = self.fuse_raw(np.asarray(a, np.float32) * np.float32(255), np.asarray(b, np.float32) * np.float32(255))
        if self.output == "stretch":
            return bytescale(r).astype(np.float32) / np.float32(255)
        return np.clip(r / np.float32(255), 0.0, 1.0).astype(np.float32)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """test.py end to end: SciPy's flattened YCbCr read of each file, ``input_order``, per-image min-max
        stretch with round-half-up; the uint8 HxW image the script saves."""
        a, b = scipy_luma(path_a), scipy_luma(path_b)
        if a.shape != b.shape:
            raise ValueError(f"sdnet: {path_a} and {path_b} differ in size ({a.shape} vs {b.shape})")
        return bytescale(self.fuse_raw(a, b))


# --------------------------------------------------------------------------------------------- trainer
def low_pass(x: torch.Tensor) -> torch.Tensor:
    """utils.py's ``low_pass``: one 3x3 blur (:data:`BLUR_3X3`) with zero padding, channel by channel."""
    k = torch.tensor(BLUR_3X3, dtype=x.dtype, device=x.device).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, k, padding=1, groups=x.shape[1])


def gradient_scores(ir: torch.Tensor, vi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """model.py's adaptive decision block: ``s_vi = sign(g_vi - min(g_vi, g_ir))`` with ``g = |lap(low_pass(x))|``
    (1 where vi's blurred gradient is strictly larger), ``s_ir = 1 - s_vi`` (ties go to ir)."""
    g_ir, g_vi = (laplacian_same(low_pass(x)).abs() for x in (ir, vi))
    s_vi = torch.sign(g_vi - torch.minimum(g_vi, g_ir))
    return 1.0 - s_vi, s_vi


def squeeze_decomposition_loss(
    net: SDNetNet,
    ir: torch.Tensor,
    vi: torch.Tensor,
    b_weight: float,
    grad_weight: float,
    sept_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """model.py's loss on [-1, 1] sources: ``L_int + grad_weight L_grad + sept_weight L_sept`` with
    ``L_int = mse(F, ir) + b_weight mse(F, vi)``, ``L_grad = mean(s_ir (lap F - lap ir)^2) + mean(s_vi (lap F -
    lap vi)^2)`` (zero-padded Laplacian, :func:`gradient_scores`), ``L_sept = mse(ir', ir) + mse(vi', vi)`` on
    the sources rebuilt from F."""
    fused, sept_ir, sept_vi = net(ir, vi)
    s_ir, s_vi = gradient_scores(ir, vi)
    lap_f = laplacian_same(fused)
    intensity = F.mse_loss(fused, ir) + b_weight * F.mse_loss(fused, vi)
    gradient = (s_ir * (lap_f - laplacian_same(ir)).square()).mean() + (
        s_vi * (lap_f - laplacian_same(vi)).square()
    ).mean()
    decomposition = F.mse_loss(sept_ir, ir) + F.mse_loss(sept_vi, vi)
    loss = intensity + grad_weight * gradient + sept_weight * decomposition
    return {"loss": loss, "intensity": intensity, "gradient": gradient, "decomposition": decomposition}


class SDNetTrainer(NetTrainer):
    """Adam on :func:`squeeze_decomposition_loss`; batches (a, b) on [0, 1] are mapped to [-1, 1].

    Options: ``lr`` (1e-4), ``b_weight`` and ``grad_weight`` (per task, :data:`LOSS_WEIGHTS`; the intensity
    weight of the ``*_vi`` input and the gradient weight), ``sept_weight`` (1), ``swap`` (feed b to the ``*_ir``
    branch; the method's ``trainer`` fills these in from its task and ``input_order``), ``seed``."""

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        b_weight: float = LOSS_WEIGHTS["ivif"][0],
        grad_weight: float = LOSS_WEIGHTS["ivif"][1],
        sept_weight: float = 1.0,
        swap: bool = False,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("sdnet", other)
        self.swap = bool(swap)
        self.b_weight, self.grad_weight, self.sept_weight = float(b_weight), float(grad_weight), float(sept_weight)
        self.net = seeded(seed, SDNetNet).to(self.device).train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=float(lr))

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"sdnet trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        x = batch.to(self.device, torch.float32) * 2 - 1
        if self.swap:
            x = x.flip(1)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = squeeze_decomposition_loss(
            self.net, x[:, :1], x[:, 1:], self.b_weight, self.grad_weight, self.sept_weight
        )
        terms["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
