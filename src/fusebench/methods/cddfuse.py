"""CDDFuse (Z. Zhao et al., "CDDFuse: Correlation-Driven Dual-Branch Feature Decomposition for Multi-Modality
Image Fusion", CVPR 2023), re-implemented from the paper and the authors' release
(``Zhaozixiang1228/MMIF-CDDFuse``: ``net.py``, ``train.py``, ``test_IVF.py``, ``test_MIF.py``,
``utils/loss.py``).

Network (one shared encoder for both modalities, 64 channels everywhere, no down-sampling):

* shallow encoder: a 3x3 conv (``patch_embed``) and four Restormer blocks (MDTA channel attention + gated
  depth-wise feed-forward, ``encoder_level1``);
* base branch: one Lite-Transformer block (``baseFeature``: channel attention whose qkv goes through a full
  3x3 conv, feed-forward of expansion 1) -> low-frequency, modality-shared features;
* detail branch: three INN coupling nodes (``detailFeature``: inverted-residual blocks, affine coupling with
  ``exp``) -> high-frequency, modality-specific features;
* fusion layers: one more Lite-Transformer block (``BaseFuseLayer``) on the *sum* of the two base features and
  one INN node (``DetailFuseLayer``) on the sum of the detail features;
* decoder: concat(base, detail) -> 1x1 conv to 64 -> four Restormer blocks -> 3x3 conv 64->32, LeakyReLU,
  3x3 conv 32->1 -> optional residual (the input image is added) -> sigmoid.

Module and parameter names mirror the release, so the official ``CDDFuse_IVF.pth`` / ``CDDFuse_MIF.pth`` (a
dict ``{DIDF_Encoder, DIDF_Decoder, BaseFuseLayer, DetailFuseLayer}`` of ``nn.DataParallel`` state dicts)
load with ``strict=True`` once the ``module.`` prefix is dropped. ``model.pt`` written by our trainer uses the
same four-group layout without the prefix.

Test time, exactly as the official scripts (see ``docs/methods/cddfuse.md``):

* the two sources go through the encoder, base and detail features are *added* and fused, the decoder makes
  one image; the official code names the sources VIS and IR. In fusebench's pair order (``[ir, vi]`` for
  IVIF, ``[mri, ct|pet|spect]`` for MIF) the official "VIS" is source **b** for IVIF and source **a** (MRI)
  for MIF (option ``visible``; defaults per variant);
* decoder residual (option ``residual``): ``test_IVF.py`` adds the VIS image to the decoder output
  (``"visible"``, the default of ``variant: ivf``); ``test_MIF.py`` runs the MIF weights without residual
  (``"none"``, the default of ``variant: mif``) and the IVF weights on medical pairs with ``VIS + IR``
  (``"sum"``);
* the decoder's sigmoid output is min-max normalised over the image (option ``normalize``, default true), as
  both test scripts do before saving.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..losses import gradient_magnitude, sobel, ssim_map
from ..training import Trainer, check_options, seeded
from .base import METHODS, LearnedMethod, choice, load_state, to_image
from .restormer import GDFN, LayerNorm, TransformerBlock, self_attention

VARIANTS = ("ivf", "mif")
RESIDUALS = ("visible", "sum", "none")
SOURCES = ("a", "b")
#: the four groups of the official checkpoint -> attribute of :class:`CDDFuseNet`
OFFICIAL_GROUPS = {
    "DIDF_Encoder": "encoder",
    "DIDF_Decoder": "decoder",
    "BaseFuseLayer": "base_fuse",
    "DetailFuseLayer": "detail_fuse",
}
#: the registry names (``fusebench.weights``) of the pinned official weights of each variant
OFFICIAL_WEIGHTS = {"ivf": "cddfuse-ivf", "mif": "cddfuse-mif"}
#: parameters of the whole model (encoder + decoder + base fuse + detail fuse), as in the release
PARAMETER_COUNT = 1_188_272


# ================================================================================================ network
class LiteAttention(nn.Module):
    """The base branch's attention (release: ``AttentionBase``): 1x1 qkv, then a *full* 3x3 conv on qkv."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.num_heads = heads
        self.scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.qkv1 = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=False)
        self.qkv2 = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, bias=False)
        self.proj = nn.Conv2d(dim, dim, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self_attention(self.qkv2(self.qkv1(x)), self.num_heads, self.scale))


class BaseFeatureExtraction(nn.Module):
    """Lite-Transformer block of the base branch and of the base fusion layer."""

    def __init__(self, dim: int = 64, heads: int = 8) -> None:
        super().__init__()
        self.norm1 = LayerNorm(dim)
        self.attn = LiteAttention(dim, heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = GDFN(dim, expansion=1.0, dw_groups_per_hidden=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class InvertedResidualBlock(nn.Module):
    """MobileNetV2 bottleneck without BatchNorm and without the skip (the release's layer indices kept)."""

    def __init__(self, channels: int = 32, expand: int = 2) -> None:
        super().__init__()
        hidden = channels * expand
        self.bottleneckBlock = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU6(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(hidden, hidden, 3, groups=hidden, bias=False),
            nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneckBlock(x)


class DetailNode(nn.Module):
    """One INN coupling: mix the halves (1x1 conv), z2 += phi(z1), z1 = z1 * exp(rho(z2)) + eta(z2)."""

    def __init__(self, half: int = 32) -> None:
        super().__init__()
        self.theta_phi = InvertedResidualBlock(half, 2)
        self.theta_rho = InvertedResidualBlock(half, 2)
        self.theta_eta = InvertedResidualBlock(half, 2)
        self.shffleconv = nn.Conv2d(2 * half, 2 * half, kernel_size=1, bias=True)  # sic, release spelling

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z1, z2 = self.shffleconv(torch.cat((z1, z2), dim=1)).chunk(2, dim=1)
        z2 = z2 + self.theta_phi(z1)
        z1 = z1 * torch.exp(self.theta_rho(z2)) + self.theta_eta(z2)
        return z1, z2


class DetailFeatureExtraction(nn.Module):
    """INN detail branch (3 nodes in the encoder, 1 node as the detail fusion layer)."""

    def __init__(self, num_layers: int = 3) -> None:
        super().__init__()
        self.net = nn.Sequential(*(DetailNode() for _ in range(num_layers)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z1, z2 = x.chunk(2, dim=1)
        for node in self.net:
            z1, z2 = node(z1, z2)
        return torch.cat((z1, z2), dim=1)


class _PatchEmbed(nn.Module):
    def __init__(self, in_channels: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Encoder(nn.Module):
    """Restormer shallow encoder + base (Lite Transformer) and detail (INN) branches."""

    def __init__(self, dim: int = 64, blocks: int = 4, heads: int = 8) -> None:
        super().__init__()
        self.patch_embed = _PatchEmbed(1, dim)
        self.encoder_level1 = nn.Sequential(*(TransformerBlock(dim, heads, expansion=2.0) for _ in range(blocks)))
        self.baseFeature = BaseFeatureExtraction(dim, heads)
        self.detailFeature = DetailFeatureExtraction(3)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        shallow = self.encoder_level1(self.patch_embed(image))
        return self.baseFeature(shallow), self.detailFeature(shallow), shallow


class Decoder(nn.Module):
    """Restormer decoder: concat(base, detail), 1x1, 4 blocks, 3x3, LeakyReLU, 3x3, (+ residual), sigmoid."""

    def __init__(self, dim: int = 64, blocks: int = 4, heads: int = 8) -> None:
        super().__init__()
        self.reduce_channel = nn.Conv2d(dim * 2, dim, kernel_size=1, bias=False)
        self.encoder_level2 = nn.Sequential(*(TransformerBlock(dim, heads, expansion=2.0) for _ in range(blocks)))
        self.output = nn.Sequential(
            nn.Conv2d(dim, dim // 2, kernel_size=3, padding=1, bias=False),
            nn.LeakyReLU(),
            nn.Conv2d(dim // 2, 1, kernel_size=3, padding=1, bias=False),
        )

    def forward(
        self, residual: torch.Tensor | None, base: torch.Tensor, detail: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        reduced = self.reduce_channel(torch.cat((base, detail), dim=1))
        out = self.output(self.encoder_level2(reduced))
        if residual is not None:
            out = out + residual
        return torch.sigmoid(out), reduced


class CDDFuseNet(nn.Module):
    """The four trained parts; :data:`OFFICIAL_GROUPS` maps them to the release's checkpoint keys."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.base_fuse = BaseFeatureExtraction(64, 8)
        self.detail_fuse = DetailFeatureExtraction(1)

    def fuse(self, vis: torch.Tensor, ir: torch.Tensor, residual: torch.Tensor | None) -> torch.Tensor:
        """Fused image (sigmoid output, not yet normalised) of two N x 1 x H x W batches."""
        # one encoder pass per source, as the release: a batch of both is no faster on CPU (larger tensors
        # leave the cache) and needs twice the memory
        vis_base, vis_detail, _ = self.encoder(vis)
        ir_base, ir_detail, _ = self.encoder(ir)
        fused_base = self.base_fuse(vis_base + ir_base)
        fused_detail = self.detail_fuse(vis_detail + ir_detail)
        return self.decoder(residual, fused_base, fused_detail)[0]

    # -- the release's checkpoint layout
    def official_state(self) -> dict[str, dict[str, torch.Tensor]]:
        """``{DIDF_Encoder: ..., ...}`` state dicts (CPU copies, no ``module.`` prefix)."""
        return {
            group: {k: v.detach().cpu().clone() for k, v in getattr(self, attr).state_dict().items()}
            for group, attr in OFFICIAL_GROUPS.items()
        }

    def load_official_state(self, state: Mapping[str, Any], source: str | Path = "state") -> None:
        """Load a four-group checkpoint (ours or the release's, ``module.`` prefixes dropped), strictly."""
        missing = [g for g in OFFICIAL_GROUPS if g not in state]
        if missing:
            raise ValueError(
                f"cddfuse: {source} is not a CDDFuse checkpoint: it lacks {', '.join(missing)} "
                f"(has {', '.join(map(str, state)) or 'nothing'}); "
                f"expected the keys {', '.join(OFFICIAL_GROUPS)}"
            )
        for group, attr in OFFICIAL_GROUPS.items():
            part = state[group]
            if not isinstance(part, Mapping):
                raise ValueError(f"cddfuse: {source}[{group!r}] is not a state dict")
            cleaned = {str(k).removeprefix("module."): v for k, v in part.items()}
            try:
                getattr(self, attr).load_state_dict(cleaned, strict=True)
            except RuntimeError as exc:
                raise ValueError(f"cddfuse: {source}[{group!r}] does not fit the CDDFuse network: {exc}") from exc


def parameter_counts(net: CDDFuseNet | None = None) -> dict[str, int]:
    """Parameters per official group and in total (``total`` = 1,188,272 for the release's model)."""
    net = net or CDDFuseNet()
    counts = {g: sum(p.numel() for p in getattr(net, a).parameters()) for g, a in OFFICIAL_GROUPS.items()}
    counts["total"] = sum(counts.values())
    return counts


# ================================================================================================= losses
def cc(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Correlation coefficient of each (image, channel) over the pixels, clamped to [-1, 1], averaged.

    As the release's ``utils/loss.cc``: ``eps`` (float32 machine epsilon) is added to the denominator, so a
    constant channel gives 0.
    """
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"cc: expected two NCHW tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    n, c = x.shape[:2]
    x = x.reshape(n, c, -1)
    y = y.reshape(n, c, -1)
    x = x - x.mean(dim=-1, keepdim=True)
    y = y - y.mean(dim=-1, keepdim=True)
    eps = torch.finfo(torch.float32).eps
    num = (x * y).sum(dim=-1)
    den = eps + torch.sqrt((x * x).sum(dim=-1)) * torch.sqrt((y * y).sum(dim=-1))
    return torch.clamp(num / den, -1.0, 1.0).mean()


def decomposition_loss(
    base_a: torch.Tensor, base_b: torch.Tensor, detail_a: torch.Tensor, detail_b: torch.Tensor
) -> torch.Tensor:
    """Correlation-driven decomposition loss ``cc(D_a, D_b)^2 / (1.01 + cc(B_a, B_b))`` (paper Eq. 7)."""
    return cc(detail_a, detail_b) ** 2 / (1.01 + cc(base_a, base_b))


def ssim_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``kornia.losses.SSIM(11, reduction="mean")`` of kornia 0.2 (the release's pin): mean of
    ``clamp(1 - SSIM_map, 0, 1) / 2`` with an 11x11 Gaussian (sigma 1.5) and *reflect*-padded "same" maps.

    Note the ``/ 2``: the release's ``5 * Loss_ssim`` is ``2.5 * (1 - SSIM)``.
    """
    s, _ = ssim_map(x, y, 1.0, 11, 1.5, padding="reflect")
    return (torch.clamp(1.0 - s, 0.0, 1.0) / 2.0).mean()


def sobel_abs(x: torch.Tensor) -> torch.Tensor:
    """``|Sobel_x| + |Sobel_y|`` with zero padding, as the release's fusion loss (``Sobelxy``)."""
    return gradient_magnitude(x, "l1", padding="zeros")


def spatial_gradient(x: torch.Tensor) -> torch.Tensor:
    """``kornia.filters.SpatialGradient()`` of kornia 0.2: Sobel x, y divided by 8, replicate padding.

    Returns N x 2C x H x W (x and y derivative of each channel, interleaved)."""
    return torch.stack(sobel(x, "replicate", scale=1.0 / 8.0), dim=2).flatten(1, 2)


def fusion_loss(
    vis: torch.Tensor, ir: torch.Tensor, fused: torch.Tensor, grad_weight: float = 10.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage-II fusion loss: ``L1(max(vis, ir), F) + grad_weight * L1(max(|grad vis|, |grad ir|), |grad F|)``.

    Returns (total, intensity term, gradient term), as the release's ``Fusionloss``.
    """
    intensity = F.l1_loss(fused, torch.maximum(vis, ir))
    gradient = F.l1_loss(sobel_abs(fused), torch.maximum(sobel_abs(vis), sobel_abs(ir)))
    return intensity + grad_weight * gradient, intensity, gradient


# ================================================================================================= method
@METHODS.register("cddfuse")
class CDDFuse(LearnedMethod):
    """Options (all optional):

    * ``variant``: ``"ivf"`` (default) or ``"mif"``; sets the defaults below and names the official weights;
    * ``visible``: ``"a"`` | ``"b"``, the source the release calls VIS (default ``b`` for ivf, the ``vi`` of
      ``[ir, vi]`` pairs; ``a`` for mif, the MRI of ``[mri, X]`` pairs);
    * ``residual``: ``"visible"`` | ``"sum"`` | ``"none"``: what the decoder adds before its sigmoid
      (default ``visible`` for ivf, ``none`` for mif);
    * ``normalize``: min-max normalise the output image as the test scripts do (default true).

    bf16 autocast is the workflow's ``fusion``/``training`` ``precision`` setting (:mod:`fusebench.accel`).
    """

    name: ClassVar[str] = "cddfuse"
    net: CDDFuseNet | None
    net_entries: ClassVar[tuple[str, ...]] = ("fuse",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.variant = choice(self.name, "variant", self.options.get("variant", "ivf"), VARIANTS)
        default_visible = "b" if self.variant == "ivf" else "a"
        self.visible = choice(self.name, "visible", self.options.get("visible", default_visible), SOURCES)
        default_residual = "visible" if self.variant == "ivf" else "none"
        self.residual = choice(self.name, "residual", self.options.get("residual", default_residual), RESIDUALS)
        self.normalize = bool(self.options.get("normalize", True))

    @property
    def official_weights(self) -> str:
        """Registry name of this variant's official weights (``fusebench fetch-weights NAME``)."""
        return OFFICIAL_WEIGHTS[self.variant]

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> CDDFuseTrainer:
        options = {"visible": self.visible, "residual": self.residual != "none"}
        options.update(train_options)
        return CDDFuseTrainer(device, **options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`CDDFuseTrainer` (the official four-group layout)."""
        self._set_net(load_state(checkpoint, device, self.name), device, checkpoint)

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the release's ``CDDFuse_IVF.pth`` / ``CDDFuse_MIF.pth`` (``weights_only=True``; verified against
        its pinned git blob id and sidecar by :func:`~fusebench.methods.base.load_state`)."""
        weights = Path(weights)
        self._set_net(load_state(weights, device, self.name), device, weights)

    def _set_net(self, state: Mapping[str, Any], device: str, source: Path) -> None:
        """Load a four-group checkpoint (the release's layout, see :meth:`CDDFuseNet.load_official_state`)."""
        net = CDDFuseNet()
        net.load_official_state(state, source)
        self.net = self._to_device(net, device)

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        net = self._require(self.net)
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"cddfuse: expected two HxW images of the same size, got {a.shape} and {b.shape}")
        if min(a.shape) < 2:
            raise ValueError(f"cddfuse: images must be at least 2x2 (reflection padding), got {a.shape}")
        vis_np, ir_np = (b, a) if self.visible == "b" else (a, b)
        with torch.inference_mode():
            vis, ir = self.to_tensor(vis_np), self.to_tensor(ir_np)
            residual = {"visible": vis, "sum": vis + ir, "none": None}[self.residual]
            out = net.fuse(vis, ir, residual).float()
            if self.normalize:
                out = _min_max(out)
        return np.clip(to_image(out), 0.0, 1.0).astype(np.float32)


def _min_max(x: torch.Tensor) -> torch.Tensor:
    """``(x - min) / (max - min)`` over the whole image as the test scripts do; a flat image is kept."""
    lo, hi = x.min(), x.max()
    if float(hi - lo) <= 0.0:
        return x
    return (x - lo) / (hi - lo)


# ================================================================================================ trainer
#: the columns of loss.csv (the same in both stages; terms a stage does not compute are NaN)
LOSS_KEYS = (
    "loss",
    "stage",
    "lr",
    "decomp",
    "cc_base",
    "cc_detail",
    "rec_vis",
    "rec_ir",
    "grad",
    "fusion",
    "fusion_int",
    "fusion_grad",
)


class CDDFuseTrainer(Trainer):
    """Two-stage training as ``train.py`` of the release, one call of :meth:`train_step` per batch.

    Stage I (epochs ``[0, epochs_stage1)``): encoder + decoder reconstruct each source (decoder residual = the
    source itself when ``residual``), loss ``rec_vis + rec_ir + 2 * decomp + 5 * grad`` where
    ``rec = 5 * ssim_loss + MSE`` (kornia's SSIM loss is ``(1 - SSIM) / 2``), ``grad`` the L1 distance of the
    normalised Sobel gradients of VIS and its reconstruction (VIS only, as the release), and ``decomp`` the
    correlation-driven decomposition loss of the two sources' base/detail features.
    Stage II: all four parts; fused image from the summed features (residual = VIS when ``residual``), loss
    ``fusion + 2 * decomp`` with ``fusion = L1(max) + 10 * L1(Sobel max)``.

    Schedule: epoch ``e`` of step ``s`` is ``s // epoch_steps`` when ``epoch_steps`` is given, else
    ``s * epochs // steps``. Learning rate (Adam, one optimiser per part as the release): encoder and decoder
    ``lr * gamma ** (e // lr_step_epochs)``, fusion layers ``lr * gamma ** ((e - epochs_stage1) //
    lr_step_epochs)`` (their StepLR only advances in stage II), never below ``lr_min``. The learning rate is
    a pure function of the step, so resuming needs no scheduler state. Each part's gradient norm is clipped
    to ``clip_grad`` separately, as the release does.

    Initial weights come from ``seed`` (forked RNG) when it is given, else from the global torch RNG.
    """

    def __init__(
        self,
        device: str,
        lr: float = 1e-4,
        steps: int | None = None,
        epoch_steps: int | None = None,
        epochs: int = 120,
        epochs_stage1: int = 40,
        lr_step_epochs: int = 20,
        lr_gamma: float = 0.5,
        lr_min: float = 1e-6,
        weight_decay: float = 0.0,
        clip_grad: float = 0.01,
        coeff_rec_vis: float = 1.0,
        coeff_rec_ir: float = 1.0,
        coeff_decomp: float = 2.0,
        coeff_grad: float = 5.0,
        ssim_weight: float = 5.0,
        fusion_grad_weight: float = 10.0,
        visible: str = "b",
        residual: bool = True,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("cddfuse", other)  # `steps` is a parameter here, so never among `other`
        visible = choice("cddfuse trainer", "visible", visible, SOURCES)
        if epoch_steps is None and steps is None:
            raise ValueError(
                "cddfuse trainer: the two-stage schedule needs the run length: give train option `steps` "
                "(the same number as --steps) or `epoch_steps` (steps per epoch)"
            )
        for key, value in (("steps", steps), ("epoch_steps", epoch_steps), ("epochs", epochs)):
            if value is not None and int(value) < 1:
                raise ValueError(f"cddfuse trainer: {key} must be >= 1, got {value}")
        if int(epochs_stage1) < 0 or int(lr_step_epochs) < 1:
            raise ValueError(
                f"cddfuse trainer: need epochs_stage1 >= 0 and lr_step_epochs >= 1, got {epochs_stage1}, "
                f"{lr_step_epochs}"
            )
        self.lr = float(lr)
        self.steps = None if steps is None else int(steps)
        self.epoch_steps = None if epoch_steps is None else int(epoch_steps)
        self.epochs = int(epochs)
        self.epochs_stage1 = int(epochs_stage1)
        self.lr_step_epochs = int(lr_step_epochs)
        self.lr_gamma = float(lr_gamma)
        self.lr_min = float(lr_min)
        self.clip_grad = float(clip_grad)
        self.coeff = {
            "rec_vis": float(coeff_rec_vis),
            "rec_ir": float(coeff_rec_ir),
            "decomp": float(coeff_decomp),
            "grad": float(coeff_grad),
        }
        self.ssim_weight = float(ssim_weight)
        self.fusion_grad_weight = float(fusion_grad_weight)
        self.visible = visible
        self.residual = bool(residual)
        self.net = seeded(seed, CDDFuseNet).to(self.device).train()
        self.optimizers = {
            attr: torch.optim.Adam(getattr(self.net, attr).parameters(), lr=self.lr, weight_decay=weight_decay)
            for attr in OFFICIAL_GROUPS.values()
        }

    # -- schedule
    def epoch(self, step: int) -> int:
        if self.epoch_steps is not None:
            return step // self.epoch_steps
        assert self.steps is not None
        return step * self.epochs // self.steps

    def stage(self, step: int) -> int:
        return 1 if self.epoch(step) < self.epochs_stage1 else 2

    def learning_rates(self, step: int) -> dict[str, float]:
        e = self.epoch(step)

        def decayed(epochs_done: int) -> float:
            return max(self.lr_min, self.lr * self.lr_gamma ** (max(epochs_done, 0) // self.lr_step_epochs))

        outer = decayed(e)
        inner = decayed(e - self.epochs_stage1)
        return {"encoder": outer, "decoder": outer, "base_fuse": inner, "detail_fuse": inner}

    # -- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "net": self.net.state_dict(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])

    def export(self) -> dict[str, Any]:
        return self.net.official_state()

    # -- one step
    def _split(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a, b = batch[:, 0:1], batch[:, 1:2]
        return (b, a) if self.visible == "b" else (a, b)

    def losses(self, batch: torch.Tensor, step: int) -> dict[str, torch.Tensor]:
        """Loss terms of ``batch`` (Bx2xHxW in [0, 1]) at ``step``; ``loss`` is what is minimised."""
        vis, ir = self._split(batch)
        nan = torch.tensor(float("nan"), device=batch.device)
        net = self.net
        # each source through the encoder (and in stage I the decoder) on its own, as the release: at 4 x 128^2 on
        # CPU one batch of both was 20% slower (its activations leave the cache)
        vis_base, vis_detail, _ = net.encoder(vis)
        ir_base, ir_detail, _ = net.encoder(ir)
        if self.stage(step) == 1:
            vis_hat, _ = net.decoder(vis if self.residual else None, vis_base, vis_detail)
            ir_hat, _ = net.decoder(ir if self.residual else None, ir_base, ir_detail)
        else:
            fused_base = net.base_fuse(ir_base + vis_base)
            fused_detail = net.detail_fuse(ir_detail + vis_detail)
            fused, _ = net.decoder(vis if self.residual else None, fused_base, fused_detail)
        # .float(): bf16 under `precision: bf16` autocast
        cc_base = cc(vis_base.float(), ir_base.float())
        cc_detail = cc(vis_detail.float(), ir_detail.float())
        decomp = cc_detail**2 / (1.01 + cc_base)
        terms = dict.fromkeys(LOSS_KEYS, nan)
        terms.update(decomp=decomp, cc_base=cc_base, cc_detail=cc_detail)
        if self.stage(step) == 1:
            vis_hat, ir_hat = vis_hat.float(), ir_hat.float()
            rec_vis = self.ssim_weight * ssim_loss(vis, vis_hat) + F.mse_loss(vis_hat, vis)
            rec_ir = self.ssim_weight * ssim_loss(ir, ir_hat) + F.mse_loss(ir_hat, ir)
            grad = F.l1_loss(spatial_gradient(vis_hat), spatial_gradient(vis))
            loss = (
                self.coeff["rec_vis"] * rec_vis
                + self.coeff["rec_ir"] * rec_ir
                + self.coeff["decomp"] * decomp
                + self.coeff["grad"] * grad
            )
            terms.update(rec_vis=rec_vis, rec_ir=rec_ir, grad=grad)
        else:
            total, intensity, gradient = fusion_loss(vis, ir, fused.float(), self.fusion_grad_weight)
            loss = total + self.coeff["decomp"] * decomp
            terms.update(fusion=total, fusion_int=intensity, fusion_grad=gradient)
        terms["loss"] = loss
        return terms

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"cddfuse trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        batch = batch.to(self.device, torch.float32)
        stage = self.stage(step)
        parts = ("encoder", "decoder") if stage == 1 else tuple(OFFICIAL_GROUPS.values())
        rates = self.learning_rates(step)
        for key, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = rates[key]
        self.net.train()
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        terms = self.losses(batch, step)
        terms["loss"].backward()
        # one device-to-host transfer for all logged values (and the finiteness check) per step
        values = torch.stack([v.detach().float().reshape(()) for v in terms.values()]).tolist()
        out = dict(zip(terms, values, strict=True))
        if not np.isfinite(out["loss"]):
            raise FloatingPointError(f"cddfuse trainer: loss is {out['loss']} at step {step} (stage {stage})")
        for key in parts:
            nn.utils.clip_grad_norm_(getattr(self.net, key).parameters(), max_norm=self.clip_grad, norm_type=2)
        for key in parts:
            self.optimizers[key].step()
        out["stage"] = float(stage)
        out["lr"] = rates["encoder"]
        return out
