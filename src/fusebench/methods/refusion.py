"""ReFusion (H. Bai et al., "ReFusion: Learning Image Fusion from Reconstruction with Learnable Loss via
Meta-Learning", IJCV 2024, arXiv 2312.07943).

Three networks:

* the **fusion module** F (:class:`ReFusionNet`, the only one used at test time): two Restormer-style
  branches, a cross-attention fusion module (AFM) and a transformer decoder, sigmoid output; 59,856
  parameters. Module names follow the authors' ``ReFusion.py`` so their four published state dicts load;
* the **loss proposal module** P (:class:`LossProposalNet`): from the two sources it proposes per-pixel
  intensity weights ``W = (W_a, W_b)`` and gradient weights ``V = (V_a, V_b)``, each pair a softmax over the
  two sources (so ``W_a + W_b = 1`` and ``V_a + V_b = 1`` at every pixel);
* the **reconstruction module** R (:class:`ReconstructionNet`): rebuilds both sources from the fused image.

F is trained with the learnable fusion loss of P; P is meta-learned so that one step of F along that loss
makes the sources easier for R to reconstruct (the outer loss goes through F's inner update); R is trained to
reconstruct. See ``docs/methods/refusion.md`` for the recipe, every choice where the paper and the released
code are silent, and the parity results.

Official weights: the authors wrap every convolution in a ``MetaConv2d`` that holds an ``nn.Conv2d`` as
``.conv`` *and* registers the same Parameter under its own name, so their files list every convolution weight
twice (``x.weight`` and ``x.conv.weight``, 54 pairs, 140 keys in all). Here convolutions are plain
``nn.Conv2d`` (86 keys); :func:`from_official_state_dict` maps ``x.conv.weight -> x.weight`` (the tensor the
official forward pass uses) and drops the twin, :func:`to_official_state_dict` writes both names back, so
weights trained here also load into the authors' ``ReFusion`` class.

Test time (:meth:`ReFusion.fuse`), as in the authors' ``test.py``: the two luminance images in [0, 1] go to
the network's two inputs (order per task, see ``input_order``), and the sigmoid output is min-max normalised
per image (option ``normalize="minmax"``, the default; ``"none"`` returns the raw sigmoid output).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from .. import official
from ..losses import gradient_magnitude
from ..training import Trainer, check_options, seeded
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .restormer import TransformerBlock, channel_attention, split_heads

#: fusebench task -> the name of the authors' weights file (``ReFusion_<NAME>.pth``)
OFFICIAL_TASKS = {"ivif": "IVIF", "mif": "MIF", "mff": "MFIF", "mef": "MEIF"}
NORMALIZE = ("minmax", "none")
ORDERS = ("ab", "ba")
RECON_LOSSES = ("max", "sum")
OUTER_UPDATES = ("normalized", "adam")
#: official state dicts hold this many entries (86 distinct tensors + 54 duplicated convolution weights)
OFFICIAL_KEYS = 140


# ============================================================================================ networks
def _conv(cin: int, cout: int, k: int, groups: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=k, padding=k // 2, groups=groups, bias=bias)


class AFM(nn.Module):
    """The release's fusion module: cross attention (queries of one branch, keys/values of the other), a
    residual projection per branch, then a gate computed from both branches modulating each branch."""

    def __init__(self, dim: int = 16, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.temperature1 = nn.Parameter(torch.ones(heads, 1, 1))
        self.temperature2 = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = _conv(dim, dim * 3, 1)
        self.qkv1_dwconv = _conv(dim * 3, dim * 3, 3, groups=dim * 3)
        self.qkv2 = _conv(dim, dim * 3, 1)
        self.qkv2_dwconv = _conv(dim * 3, dim * 3, 3, groups=dim * 3)
        self.project_mid1 = _conv(dim, dim, 1)
        self.project_mid2 = _conv(dim, dim, 1)
        self.project_E = _conv(dim * 2, dim * 8, 1)
        self.project_E_d = _conv(dim * 8, dim * 8, 3, groups=dim * 8)
        self.project_E1 = _conv(dim, dim * 4, 1)
        self.project_E1_d = _conv(dim * 4, dim * 4, 3, groups=dim * 4)
        self.project_E2 = _conv(dim, dim * 4, 1)
        self.project_E2_d = _conv(dim * 4, dim * 4, 3, groups=dim * 4)
        self.project_out1 = _conv(dim * 4, dim * 2, 1)
        self.project_out2 = _conv(dim * 4, dim * 2, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        q1, k1, v1 = (split_heads(t, self.heads) for t in self.qkv1_dwconv(self.qkv1(x1)).chunk(3, dim=1))
        q2, k2, v2 = (split_heads(t, self.heads) for t in self.qkv2_dwconv(self.qkv2(x2)).chunk(3, dim=1))
        # branch 1 is re-weighted by the queries of branch 2 and vice versa
        out1 = channel_attention(q2, k1, v1, self.temperature1).reshape(x1.shape)
        out2 = channel_attention(q1, k2, v2, self.temperature2).reshape(x2.shape)
        x1 = x1 + self.project_mid1(out1)
        x2 = x2 + self.project_mid2(out2)
        both = torch.cat([x1, x2], dim=1)
        g1, g2 = self.project_E_d(self.project_E(both)).chunk(2, dim=1)
        y1 = F.gelu(g1) * self.project_E1_d(self.project_E1(x1))
        y2 = F.gelu(g2) * self.project_E2_d(self.project_E2(x2))
        return both + self.project_out1(y1) + self.project_out2(y2)


class ReFusionNet(nn.Module):
    """The fusion module F: N x 2 x H x W (source 1, source 2 in [0, 1]) -> N x 1 x H x W in (0, 1).

    Every layer is stride 1 and the attention runs over channels, so any H x W works in one pass.
    """

    def __init__(self, dim: int = 16, blocks: int = 2, heads: int = 8, expansion: float = 2.0) -> None:
        super().__init__()
        self.project_in_1 = _conv(1, dim, 3)
        self.project_in_2 = _conv(1, dim, 3)
        self.encoder1 = nn.ModuleList(TransformerBlock(dim, heads, expansion) for _ in range(blocks))
        self.encoder2 = nn.ModuleList(TransformerBlock(dim, heads, expansion) for _ in range(blocks))
        self.FM = AFM(dim, heads)
        self.decoder = nn.ModuleList(TransformerBlock(dim * 2, heads, expansion) for _ in range(blocks))
        self.project_out_0 = _conv(dim * 2, dim, 3)
        self.act = nn.LeakyReLU(0.01)
        self.project_out_1 = _conv(dim, 1, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.project_in_1(x[:, :1])
        x2 = self.project_in_2(x[:, 1:2])
        for block in self.encoder1:
            x1 = block(x1)
        for block in self.encoder2:
            x2 = block(x2)
        out = self.FM(x1, x2)
        for block in self.decoder:
            out = block(out)
        return torch.sigmoid(self.project_out_1(self.act(self.project_out_0(out))))


class LossProposalNet(nn.Module):
    """The loss proposal module P: N x 2 x H x W sources -> (W, V), each N x 2 x H x W, softmax over sources.

    Same backbone as the authors' loss module in their released follow-up (TDFusion, ``nets/ReFusion.py``,
    class ``LPN``): a 3x3 embedding and two transformer blocks per source, two joint blocks at 2x width, 3x3
    conv, PReLU, 3x3 conv. ReFusion proposes two weight pairs (intensity and gradient), so the last conv has
    4 outputs; channels (0, 1) are softmaxed into W and (2, 3) into V.
    """

    def __init__(self, dim: int = 16, blocks: int = 2, heads: int = 8, expansion: float = 2.0) -> None:
        super().__init__()
        self.patch_embed1 = _conv(1, dim, 3)
        self.patch_embed2 = _conv(1, dim, 3)
        self.encoder1 = nn.ModuleList(TransformerBlock(dim, heads, expansion) for _ in range(blocks))
        self.encoder2 = nn.ModuleList(TransformerBlock(dim, heads, expansion) for _ in range(blocks))
        self.encoder3 = nn.ModuleList(TransformerBlock(dim * 2, heads, expansion) for _ in range(blocks))
        self.out1 = _conv(dim * 2, dim, 3)
        self.out2 = nn.PReLU()
        self.out3 = _conv(dim, 4, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x1 = self.patch_embed1(x[:, :1])
        for block in self.encoder1:
            x1 = block(x1)
        x2 = self.patch_embed2(x[:, 1:2])
        for block in self.encoder2:
            x2 = block(x2)
        out = torch.cat([x1, x2], dim=1)
        for block in self.encoder3:
            out = block(out)
        logits = self.out3(self.out2(self.out1(out)))
        return logits[:, 0:2].softmax(dim=1), logits[:, 2:4].softmax(dim=1)


class ReconstructionNet(nn.Module):
    """The reconstruction module R: N x 1 x H x W fused image -> N x 2 x H x W sources in (0, 1).

    Four 3x3 convolutions with bias, PReLU between them (the unit ``MetaConvUnit`` = conv + PReLU that the
    authors' ``ReFusion.py`` defines but does not use in F), sigmoid output. Architecture of ours: neither the
    released code nor the material we could read specifies R (see the docs).
    """

    def __init__(self, width: int = 16, layers: int = 4) -> None:
        super().__init__()
        chans = [1] + [width] * (layers - 1)
        self.body = nn.ModuleList(
            nn.Sequential(_conv(cin, cout, 3, bias=True), nn.PReLU())
            for cin, cout in zip(chans[:-1], chans[1:], strict=True)
        )
        self.out = _conv(width, 2, 3, bias=True)

    def forward(self, fused: torch.Tensor) -> torch.Tensor:
        x = fused
        for unit in self.body:
            x = unit(x)
        return torch.sigmoid(self.out(x))


def parameter_count(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ================================================================================= official weights
def from_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' 140-key state dict -> :class:`ReFusionNet` keys (86).

    Each ``MetaConv2d`` appears twice: ``x.conv.weight`` (what the official forward pass with ``meta=False``
    runs, and what wins when the official ``load_state_dict`` writes both names into the one shared tensor)
    and ``x.weight``. We keep ``x.conv.weight`` under the name ``x.weight`` and drop the twin. A dict that
    already has our key names (no ``.conv.`` entries) is returned unchanged.
    """
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out: dict[str, torch.Tensor] = {}
    twins: set[str] = set()
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module.endswith(".conv") and leaf in ("weight", "bias"):
            # "<m>.conv.weight" (used by the official forward) -> "<m>.weight"; "<m>.weight" is its twin
            name = f"{module.removesuffix('.conv')}.{leaf}"
            out[name] = value
            twins.add(name)
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if not (module.endswith(".conv") and leaf in ("weight", "bias")) and key not in twins:
            out[key] = value
    return out


def to_official_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:class:`ReFusionNet` keys -> the authors' 140-key layout (both names of every convolution weight),
    which their ``ReFusion().load_state_dict`` accepts with ``strict=True``."""
    conv_names = {name for name, m in ReFusionNet().named_modules() if isinstance(m, nn.Conv2d)}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        module = key.rsplit(".", 1)[0]
        out[key] = value
        if module in conv_names:
            out[f"{module}.conv.{key.rsplit('.', 1)[1]}"] = value
    return out


# ================================================================================================ losses
def sobel_gradient(x: torch.Tensor) -> torch.Tensor:
    """``|Sobel_x * x| + |Sobel_y * x|`` per channel, zero padding (as in the authors' loss code), same size.

    ReFusion's gradient terms are defined with zero padding, which also counts the image border as an edge.
    """
    return gradient_magnitude(x, "l1", padding="zeros")


def fusion_loss(
    fused: torch.Tensor,
    src: torch.Tensor,
    w: torch.Tensor,
    v: torch.Tensor,
    int_weight: float = 1.0,
    grad_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """The learnable fusion loss L_f = L_int + L_grad with P's weights W (intensity) and V (gradient):

    L_int  = ||W_a (F - A)||^2 / N + ||W_b (F - B)||^2 / N
    L_grad = ||V_a (grad F - grad A)||^2 / N + ||V_b (grad F - grad B)||^2 / N

    (N = number of pixels in the batch, i.e. a mean of squares), grad = :func:`sobel_gradient`.
    """
    a, b = src[:, :1], src[:, 1:2]
    l_int = ((w[:, :1] * (fused - a)) ** 2).mean() + ((w[:, 1:2] * (fused - b)) ** 2).mean()
    gf, ga, gb = sobel_gradient(fused), sobel_gradient(a), sobel_gradient(b)
    l_grad = ((v[:, :1] * (gf - ga)) ** 2).mean() + ((v[:, 1:2] * (gf - gb)) ** 2).mean()
    return {"total": int_weight * l_int + grad_weight * l_grad, "int": l_int, "grad": l_grad}


def reconstruction_loss(
    recon: torch.Tensor,
    src: torch.Tensor,
    kind: str = "max",
    int_weight: float = 1.0,
    grad_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """How well R rebuilt both sources (N x 2 x H x W each), intensity and Sobel-gradient terms.

    ``kind="max"``: per pixel, the worse of the two sources counts (``mean(max(|A - A'|, |B - B'|)^2)``, and
    the same on gradients); ``"sum"``: plain sum of the two mean squared errors.
    """
    e_int = (recon - src).abs()
    e_grad = (sobel_gradient(recon) - sobel_gradient(src)).abs()
    if kind == "max":
        l_int = (e_int.amax(dim=1) ** 2).mean()
        l_grad = (e_grad.amax(dim=1) ** 2).mean()
    elif kind == "sum":
        l_int = (e_int[:, 0] ** 2).mean() + (e_int[:, 1] ** 2).mean()
        l_grad = (e_grad[:, 0] ** 2).mean() + (e_grad[:, 1] ** 2).mean()
    else:
        raise ValueError(f"refusion: recon_loss must be one of {', '.join(RECON_LOSSES)}, got {kind!r}")
    return {"total": int_weight * l_int + grad_weight * l_grad, "int": l_int, "grad": l_grad}


# ================================================================================================ method
@METHODS.register("refusion")
class ReFusion(LearnedMethod):
    """Options:

    * ``task`` ("ivif" | "mif" | "mff" | "mef", default "ivif"): which official weights
      ``ReFusion_{IVIF,MIF,MFIF,MEIF}.pth`` a weights *folder* resolves to, and the default ``input_order``;
    * ``normalize`` ("minmax" default = the official test script, "none" = raw sigmoid output);
    * ``input_order`` ("ab" | "ba"): which source goes to the first network input. The official script feeds
      infrared / CT-PET-SPECT / near-focus / under-exposed first; fusebench's MIF datasets list ``mri`` first,
      so the default is "ba" for ``task="mif"`` and "ab" otherwise.
    """

    name: ClassVar[str] = "refusion"
    network: ClassVar[type[nn.Module]] = ReFusionNet
    network_kind: ClassVar[str] = "a ReFusion state dict"
    net: ReFusionNet | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        task = str(self.task or "ivif").lower()
        aliases = {v.lower(): k for k, v in OFFICIAL_TASKS.items()}
        self.task = aliases.get(task, task)
        choice(self.name, "task", self.task, tuple(OFFICIAL_TASKS))
        self.normalize = choice(self.name, "normalize", self.options.get("normalize", "minmax"), NORMALIZE)
        default_order = "ba" if self.task == "mif" else "ab"
        self.input_order = choice(self.name, "input_order", self.options.get("input_order", default_order), ORDERS)

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> ReFusionTrainer:
        train_options.setdefault("input_order", self.input_order)
        return ReFusionTrainer(device, **train_options)

    def official_file(self, path: Path) -> Path:
        """``path`` itself, or ``path/ReFusion_<TASK>.pth`` when ``path`` is a folder."""
        path = Path(path)
        return path / f"ReFusion_{OFFICIAL_TASKS[self.task]}.pth" if path.is_dir() else path

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`ReFusionTrainer` (or any F state dict, either key layout)."""
        self._set_net(from_official_state_dict(load_state(checkpoint, device, self.name)), device, checkpoint)

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load ``ReFusion_<TASK>.pth`` (a file, or the folder holding the four files: ``task`` picks one)."""
        path = self.official_file(weights)
        state = load_state(path, device, self.name)
        if len(state) != OFFICIAL_KEYS:
            raise ValueError(f"refusion: {path} has {len(state)} entries, the official files have {OFFICIAL_KEYS}")
        self._set_net(from_official_state_dict(state), device, path)

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raw = self.fuse_raw(a, b)
        if self.normalize == "none":
            return raw
        return minmax(raw)

    def fuse_raw(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The network's sigmoid output (HxW float32 in (0, 1)) for two HxW [0, 1] images, in the order the
        ``input_order`` option says (no normalisation)."""
        net = self._require(self.net)
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"refusion: expected two HxW images of the same size, got {a.shape} and {b.shape}")
        first, second = (a, b) if self.input_order == "ab" else (b, a)
        with torch.inference_mode():
            out = net(self.to_tensor(first, second))
        return to_image(out)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The authors' ``test.py`` end to end: the RGB image it writes for a pair with a colour source, else
        its grey image (see :meth:`official_outputs`)."""
        gray, rgb = self.official_outputs(path_a, path_b)
        return gray if rgb is None else rgb

    def official_outputs(self, path_a: Path, path_b: Path) -> tuple[np.ndarray, np.ndarray | None]:
        """(``Gray/<pair>.png``, ``RGB/<pair>.png`` or None) as the authors' ``test.py`` writes them: sources
        decoded to RGB float32 0..255, OpenCV's float RGB->YCrCb (chroma offset 0.5 on 0..255 data), Y / 255 to
        the network (order ``input_order``), per-image min-max of the sigmoid output times 255, saved through
        imageio's float->uint8 rescale; colour from the one colour source's (Cr, Cb), or both fused by
        ``(C1 |C1 - .5| + C2 |C2 - .5|) / (|C1 - .5| + |C2 - .5| + 1e-4)``, back through OpenCV's float
        YCrCb->RGB, clipped to 0..255 and rescaled over the whole RGB array. Two grey sources: no RGB image."""
        img_a, img_b = (official.pil_rgb(p).astype(np.float32) for p in (path_a, path_b))
        ycc_a, ycc_b = official.opencv_float_ycrcb(img_a), official.opencv_float_ycrcb(img_b)
        gray_a, gray_b = official.is_gray_rgb(img_a), official.is_gray_rgb(img_b)
        crcb: np.ndarray | None
        if gray_a and gray_b:
            crcb = None
        elif gray_a or gray_b:
            crcb = (ycc_b if gray_a else ycc_a)[..., 1:]
        else:
            crcb = official_chroma(ycc_a[..., 1:], ycc_b[..., 1:])
        raw = self.fuse_raw(ycc_a[..., 0] / np.float32(255), ycc_b[..., 0] / np.float32(255))
        fused = minmax(raw) * np.float32(255)
        gray = official.imageio_as_uint8(fused)
        if crcb is None:
            return gray, None
        rgb = official.opencv_float_ycrcb_to_rgb(np.concatenate([fused[..., None], crcb], axis=-1))
        return gray, official.imageio_as_uint8(np.clip(rgb, 0, 255))


def official_chroma(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    """The script's chroma rule for two colour sources (OpenCV float chroma, offset 0.5), float32:
    ``(C1 |C1 - .5| + C2 |C2 - .5|) / (|C1 - .5| + |C2 - .5| + 1e-4)`` (0 where both are neutral)."""
    half = np.float32(0.5)
    w1, w2 = np.abs(c1 - half), np.abs(c2 - half)
    return ((c1 * w1 + c2 * w2) / (w1 + w2 + np.float32(1e-4))).astype(np.float32)


def minmax(raw: np.ndarray) -> np.ndarray:
    """The official per-image normalisation ``(o - min o) / (max o - min o)`` in float32 (torch, as the
    official script computes it). A constant output (max = min, where the official script divides by zero)
    is returned unchanged."""
    t = torch.from_numpy(np.asarray(raw, dtype=np.float32))
    lo, hi = t.min(), t.max()
    if not bool(hi > lo):
        return t.numpy().copy()
    return ((t - lo) / (hi - lo)).numpy()


# ============================================================================================== trainer
class ReFusionTrainer(Trainer):
    """ReFusion's three-module training, one fusebench step at a time.

    Steps come in cycles (the paper's epochs) of ``meta_steps`` meta steps followed by ``fusion_steps`` fusion
    steps; step ``s`` is a meta step when ``s % (meta_steps + fusion_steps) < meta_steps``.

    * **meta step** (updates P only): the batch is split into a meta-train half and a meta-test half.
      Inner update: ``F' = F - inner_lr * grad_F L_f(F, P; meta-train)``, a functional SGD step that keeps
      the graph (``create_graph=True``), so F' is a function of P; likewise (without graph) a look-ahead
      ``R' = R - inner_lr * grad_R L_r(R(F(meta-train)))`` when ``meta_update_r``. Outer update: the
      reconstruction loss ``L_r(R'(F'(meta-test)))`` is differentiated w.r.t. P *through* the inner step and
      P takes one step (``outer_update="normalized"``: SGD on the gradient divided by its largest absolute
      entry, as the authors' released meta-learning code does; ``"adam"``: P's Adam optimiser).
    * **fusion step** (updates F and R): ``L_f`` with P's current (detached) weights -> Adam step of F; then
      ``L_r`` of R on the detached fused image -> Adam step of R.

    ``lr`` decays by ``lr_gamma`` every ``lr_decay_cycles`` cycles (the paper's StepLR on epochs) for the
    three modules; ``inner_lr`` / ``outer_lr`` default to the current ``lr`` (as in the authors' code).
    ``swap_inputs`` doubles every batch with the two sources exchanged (R always rebuilds them in the
    original order). The batch's channel order is first set by ``input_order`` ("ba" flips it), so that
    channel 0 always holds what the official weights expect first.
    """

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        lr_gamma: float = 0.1,
        lr_decay_cycles: int = 10,
        meta_steps: int = 600,
        fusion_steps: int = 1000,
        inner_lr: float | None = None,
        outer_lr: float | None = None,
        outer_update: str = "normalized",
        swap_inputs: bool = True,
        input_order: str = "ab",
        int_weight: float = 1.0,
        grad_weight: float = 1.0,
        grad_ramp_cycles: int = 0,
        recon_loss: str = "max",
        recon_int_weight: float = 1.0,
        recon_grad_weight: float = 1.0,
        meta_update_r: bool = True,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("refusion", other)
        if int(meta_steps) < 0 or int(fusion_steps) < 1:
            raise ValueError(
                f"refusion trainer: need meta_steps >= 0, fusion_steps >= 1, got {meta_steps}, {fusion_steps}"
            )
        self.lr, self.lr_gamma, self.lr_decay_cycles = float(lr), float(lr_gamma), int(lr_decay_cycles)
        self.meta_steps, self.fusion_steps = int(meta_steps), int(fusion_steps)
        self.inner_lr = None if inner_lr is None else float(inner_lr)
        self.outer_lr = None if outer_lr is None else float(outer_lr)
        self.outer_update = choice("refusion", "outer_update", outer_update, OUTER_UPDATES)
        self.swap_inputs = bool(swap_inputs)
        self.input_order = choice("refusion", "input_order", input_order, ORDERS)
        self.int_weight, self.grad_weight = float(int_weight), float(grad_weight)
        self.grad_ramp_cycles = int(grad_ramp_cycles)
        self.recon_kind = choice("refusion", "recon_loss", recon_loss, RECON_LOSSES)
        self.recon_int_weight, self.recon_grad_weight = float(recon_int_weight), float(recon_grad_weight)
        self.meta_update_r = bool(meta_update_r)
        nets = seeded(seed, lambda: (ReFusionNet(), LossProposalNet(), ReconstructionNet()))
        self.fusion, self.proposal, self.recon = (n.to(self.device).train() for n in nets)
        self.opt_fusion = torch.optim.Adam(self.fusion.parameters(), lr=self.lr)
        self.opt_recon = torch.optim.Adam(self.recon.parameters(), lr=self.lr)
        # used only with outer_update="adam"; eps as in the authors' code for their loss module
        self.opt_proposal = torch.optim.Adam(self.proposal.parameters(), lr=self.lr, eps=1e-10)

    # -- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "fusion": self.fusion.state_dict(),
            "proposal": self.proposal.state_dict(),
            "recon": self.recon.state_dict(),
            "opt_fusion": self.opt_fusion.state_dict(),
            "opt_proposal": self.opt_proposal.state_dict(),
            "opt_recon": self.opt_recon.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fusion.load_state_dict(state["fusion"])
        self.proposal.load_state_dict(state["proposal"])
        self.recon.load_state_dict(state["recon"])
        self.opt_fusion.load_state_dict(state["opt_fusion"])
        self.opt_proposal.load_state_dict(state["opt_proposal"])
        self.opt_recon.load_state_dict(state["opt_recon"])

    def export(self) -> dict[str, Any]:
        """F's weights (our key layout; :func:`to_official_state_dict` gives the authors' layout)."""
        return {k: v.detach().cpu().clone() for k, v in self.fusion.state_dict().items()}

    # -- schedule
    def is_meta_step(self, step: int) -> bool:
        return step % (self.meta_steps + self.fusion_steps) < self.meta_steps

    def cycle(self, step: int) -> int:
        return step // (self.meta_steps + self.fusion_steps)

    def lr_at(self, step: int) -> float:
        if self.lr_decay_cycles <= 0:
            return self.lr
        return self.lr * self.lr_gamma ** (self.cycle(step) // self.lr_decay_cycles)

    def grad_weight_at(self, step: int) -> float:
        if self.grad_ramp_cycles <= 0:
            return self.grad_weight
        return self.grad_weight * min(1.0, (self.cycle(step) + 1) / self.grad_ramp_cycles)

    # -- pieces
    def prepare(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(network input, reconstruction target), both (1 or 2)B x 2 x H x W."""
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"refusion trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        x = batch.to(self.device, torch.float32)
        if self.input_order == "ba":
            x = x.flip(1)
        if not self.swap_inputs:
            return x, x
        return torch.cat([x, x.flip(1)]), torch.cat([x, x])

    def fusion_terms(self, x: torch.Tensor, fused: torch.Tensor, step: int, detach_p: bool) -> dict[str, torch.Tensor]:
        if detach_p:
            with torch.no_grad():
                w, v = self.proposal(x)
        else:
            w, v = self.proposal(x)
        return fusion_loss(fused, x, w, v, self.int_weight, self.grad_weight_at(step))

    def recon_terms(self, recon: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        return reconstruction_loss(recon, target, self.recon_kind, self.recon_int_weight, self.recon_grad_weight)

    @torch.no_grad()
    def evaluate(self, batch: torch.Tensor, step: int = 0) -> dict[str, float]:
        """Fusion and reconstruction losses of the current modules on ``batch`` (no update)."""
        x, target = self.prepare(batch)
        fused = self.fusion(x)
        lf = self.fusion_terms(x, fused, step, detach_p=True)
        lr_ = self.recon_terms(self.recon(fused), target)
        return {"fusion": float(lf["total"]), "recon": float(lr_["total"])}

    # -- steps
    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        lr = self.lr_at(step)
        for opt in (self.opt_fusion, self.opt_recon, self.opt_proposal):
            for group in opt.param_groups:
                group["lr"] = lr
        self.fusion.train(), self.proposal.train(), self.recon.train()
        if self.is_meta_step(step):
            lf, lr_ = self.meta_step(batch, step, lr)
        else:
            lf, lr_ = self.fusion_step(batch, step)
        return {
            "meta": float(self.is_meta_step(step)),
            "lr": lr,
            "fusion": float(lf["total"]),
            "fusion_int": float(lf["int"]),
            "fusion_grad": float(lf["grad"]),
            "recon": float(lr_["total"]),
            "recon_int": float(lr_["int"]),
            "recon_grad": float(lr_["grad"]),
        }

    def fusion_step(self, batch: torch.Tensor, step: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        x, target = self.prepare(batch)
        self.opt_fusion.zero_grad(set_to_none=True)
        fused = self.fusion(x)
        lf = self.fusion_terms(x, fused, step, detach_p=True)
        lf["total"].backward()
        self.opt_fusion.step()
        self.opt_recon.zero_grad(set_to_none=True)
        lr_ = self.recon_terms(self.recon(fused.detach()), target)
        lr_["total"].backward()
        self.opt_recon.step()
        return {k: t.detach() for k, t in lf.items()}, {k: t.detach() for k, t in lr_.items()}

    def meta_step(
        self, batch: torch.Tensor, step: int, lr: float
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        if batch.shape[0] < 2:
            raise ValueError("refusion trainer: a meta step splits the batch in two halves; use batch_size >= 2")
        half = batch.shape[0] // 2
        x_tr, target_tr = self.prepare(batch[:half])
        x_te, target_te = self.prepare(batch[half : 2 * half])
        inner_lr = lr if self.inner_lr is None else self.inner_lr

        # inner update of F on the meta-train half, differentiable w.r.t. P
        params_f = dict(self.fusion.named_parameters())
        fused_tr = functional_call(self.fusion, params_f, (x_tr,))
        lf = self.fusion_terms(x_tr, fused_tr, step, detach_p=False)
        grads = torch.autograd.grad(lf["total"], list(params_f.values()), create_graph=True)
        fast_f = {n: p - inner_lr * g for (n, p), g in zip(params_f.items(), grads, strict=True)}

        # look-ahead of R on the same half (does not depend on P: no graph)
        params_r = dict(self.recon.named_parameters())
        if self.meta_update_r:
            lr_tr = self.recon_terms(functional_call(self.recon, params_r, (fused_tr.detach(),)), target_tr)
            grads_r = torch.autograd.grad(lr_tr["total"], list(params_r.values()))
            params_r = {n: (p - inner_lr * g).detach() for (n, p), g in zip(params_r.items(), grads_r, strict=True)}

        # outer update of P from the reconstruction loss on the meta-test half, through F'
        fused_te = functional_call(self.fusion, fast_f, (x_te,))
        lr_te = self.recon_terms(functional_call(self.recon, params_r, (fused_te,)), target_te)
        p_params = list(self.proposal.parameters())
        grads_p = torch.autograd.grad(lr_te["total"], p_params, allow_unused=True)
        grads_p = [torch.zeros_like(p) if g is None else g for p, g in zip(p_params, grads_p, strict=True)]
        if self.outer_update == "normalized":
            outer_lr = lr if self.outer_lr is None else self.outer_lr
            with torch.no_grad():
                biggest = max(float(g.abs().max()) for g in grads_p)
                if biggest > 0 and math.isfinite(biggest):
                    for p, g in zip(p_params, grads_p, strict=True):
                        p.add_(g, alpha=-outer_lr / biggest)
        else:
            if self.outer_lr is not None:
                for group in self.opt_proposal.param_groups:
                    group["lr"] = self.outer_lr
            self.opt_proposal.zero_grad(set_to_none=True)
            for p, g in zip(p_params, grads_p, strict=True):
                p.grad = g.detach()
            self.opt_proposal.step()
        return {k: t.detach() for k, t in lf.items()}, {k: t.detach() for k, t in lr_te.items()}
