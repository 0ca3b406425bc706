"""IFCNN (Y. Zhang, Y. Liu, P. Sun, H. Yan, X. Zhao, L. Zhang, "IFCNN: A general image fusion framework based on
convolutional neural network", Information Fusion 54, 2020).

Reference code: ``uzeful/IFCNN`` @ ``8fe59c2b1553`` (``Code/model.py``, ``Code/IFCNN_Main.py``) and its three
weight files ``Code/snapshots/IFCNN-{MAX,SUM,MEAN}.pth``. See docs/methods/ifcnn.md.

Network (:class:`IFCNNNet`, 3 channels in and out; module names as the release, so its state dicts load as
they are): per source, replicate-pad 3 and ``conv1`` (ResNet-101's 7x7 conv, 3 -> 64, no bias, stride 1, frozen
in training), then ``conv2`` (replicate-pad 1, 3x3 conv 64 -> 64 without bias, BatchNorm, ReLU); the sources'
features are fused element-wise by the ``rule`` (max, sum or mean); ``conv3`` (as conv2) and ``conv4`` (1x1,
64 -> 3, with bias) reconstruct the image. No resizing anywhere.

Two entry points:

* :meth:`IFCNN.fuse_official` runs the release's test procedure for the method's task end to end (see
  reference/official-outputs/ifcnn/README.md): IVIF/MIF fuse the RGB files and save OpenCV's gray of the result;
  MFF fuses ImageNet-normalised RGB; MEF fuses Pillow's Y, weights chroma by ``|C - 128|``, then squeezes the
  range, applies OpenCV's CLAHE and converts YCrCb to RGB. The OpenCV steps are re-implemented here in numpy
  (:func:`cv_rgb2gray`, :func:`cv_ycrcb2rgb`, :func:`clahe`), bit-exact for the conversions.
* :meth:`IFCNN.fuse`, fusebench's gray protocol: the gray source repeated to 3 channels, the task's official
  input normalisation, the network, clamp to [0, 1] and the BT.601 luma of the 3 output channels (in float).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..training import NetTrainer, check_options, seeded
from .base import METHODS, LearnedMethod, choice, load_state
from .mfifgan import SYNTHESIS_KEYS, SyntheticFocus

__all__ = [
    "IFCNN",
    "IFCNNNet",
    "IFCNNTrainer",
    "RULES",
    "clahe",
    "cv_rgb2gray",
    "cv_ycrcb2rgb",
    "fuse_features",
]

RULES = ("max", "sum", "mean")
#: the release's normalisation of the colour multi-focus branch (and of training); the other branches use none
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: BT.601 luma weights, used by :meth:`IFCNN.fuse` to turn the 3 output channels into one
LUMA = (0.299, 0.587, 0.114)
PARAMETERS = 83_587  # conv1 9,408 + 2 x (36,864 + 128 BN) + conv4 195


# --------------------------------------------------------------------------------------------- network
class ConvBlock(nn.Module):
    """Replicate pad 1, 3x3 conv without bias, BatchNorm (eps 1e-5), ReLU in place (as the release: no second
    full-size buffer); names ``conv``/``bn`` as the release."""

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(F.pad(x, (1, 1, 1, 1), mode="replicate"))), inplace=True)


class IFCNNNet(nn.Module):
    """The release's network without its fusion rule (the rule is an argument of :meth:`forward`)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, bias=False)
        self.conv2 = ConvBlock()
        self.conv3 = ConvBlock()
        self.conv4 = nn.Conv2d(64, 3, 1)
        # the release's init (He normal over k*k*out) for every conv; conv1 is overwritten by pretrained weights
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, (2.0 / n) ** 0.5)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(F.pad(x, (3, 3, 3, 3), mode="replicate")))

    def forward(self, *sources: torch.Tensor, rule: str = "max") -> torch.Tensor:
        """Each source (N x 3 x H x W) is encoded on its own, as in the release."""
        fused = fuse_features([self.features(s) for s in sources], rule)
        return self.conv4(self.conv3(fused))


def fuse_features(features: Sequence[torch.Tensor], rule: str) -> torch.Tensor:
    """The release's rules, in its order of operations: pairwise ``torch.max``, a running sum, sum / N."""
    out = features[0]
    for f in features[1:]:
        out = torch.maximum(out, f) if rule == "max" else out + f
    if rule == "mean":
        out = out / len(features)
    elif rule not in RULES:
        raise ValueError(f"ifcnn: rule must be one of {', '.join(RULES)}, got {rule!r}")
    return out


def _normalise(x: torch.Tensor, imagenet: bool) -> torch.Tensor:
    """torchvision ``Normalize`` (sub then div, per channel); identity for the mean-0/std-1 branches."""
    if not imagenet:
        return x
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


def _denormalise(x: torch.Tensor, imagenet: bool) -> torch.Tensor:
    """The release's ``denorm``: ``x * std + mean`` per channel (a no-op for mean 0, std 1)."""
    if not imagenet:
        return x
    out = x.clone()
    for c in range(3):
        out[:, c].mul_(IMAGENET_STD[c]).add_(IMAGENET_MEAN[c])
    return out


# ------------------------------------------------------------------------------ OpenCV 8-bit operations
def cv_rgb2gray(rgb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(rgb, COLOR_RGB2GRAY)`` on uint8: ``(9798 R + 19235 G + 3735 B + 16384) >> 15``."""
    v = rgb.astype(np.int64)
    return ((9798 * v[..., 0] + 19235 * v[..., 1] + 3735 * v[..., 2] + 16384) >> 15).astype(np.uint8)


def cv_ycrcb2rgb(ycrcb: np.ndarray) -> np.ndarray:
    """``cv2.cvtColor(., COLOR_YCrCb2RGB)`` on uint8: OpenCV's 14-bit fixed-point coefficients."""
    v = ycrcb.astype(np.int64)
    y, cr, cb = v[..., 0], v[..., 1] - 128, v[..., 2] - 128

    def descale(x: np.ndarray) -> np.ndarray:
        return (x + (1 << 13)) >> 14

    r = y + descale(22987 * cr)
    g = y + descale(-11698 * cr - 5636 * cb)
    b = y + descale(29049 * cb)
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def clahe(image: np.ndarray, clip_limit: float = 2.0, tiles: tuple[int, int] = (8, 8)) -> np.ndarray:
    """OpenCV's ``createCLAHE(clipLimit, tileGridSize).apply`` on a uint8 image (its algorithm, in numpy).

    The image is extended by reflect-101 to a multiple of the tile grid (OpenCV adds a whole extra tile on an
    axis that is already a multiple as soon as the other is not); each tile's histogram is clipped at
    ``max(int(clip_limit * area / 256), 1)``, the excess spread evenly and the remainder one by one at a
    stride; the LUT is ``round(cumsum * 255 / area)``; pixels interpolate bilinearly between the four
    nearest tile LUTs (single-precision weights, as OpenCV). OpenCV's SIMD paths may round a few pixels
    differently (by one level).
    """
    tiles_x, tiles_y = tiles
    h, w = image.shape
    ext = image
    if w % tiles_x or h % tiles_y:
        ext = np.pad(image, ((0, tiles_y - h % tiles_y), (0, tiles_x - w % tiles_x)), mode="reflect")
    th, tw = ext.shape[0] // tiles_y, ext.shape[1] // tiles_x
    area = th * tw
    limit = max(int(clip_limit * area / 256), 1) if clip_limit > 0 else 0
    scale = np.float32(255.0 / area)
    luts = np.empty((tiles_y, tiles_x, 256), np.uint8)
    for ty in range(tiles_y):
        for tx in range(tiles_x):
            hist = np.bincount(ext[ty * th : (ty + 1) * th, tx * tw : (tx + 1) * tw].ravel(), minlength=256)
            if limit > 0:
                clipped = int(np.maximum(hist - limit, 0).sum())
                hist = np.minimum(hist, limit) + clipped // 256
                residual = clipped - clipped // 256 * 256
                if residual:
                    step = max(256 // residual, 1)
                    hist[np.arange(0, 256, step)[:residual]] += 1
            cum = np.cumsum(hist).astype(np.float32) * scale
            luts[ty, tx] = np.clip(np.rint(cum), 0, 255).astype(np.uint8)

    def axis(n: int, size: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = np.arange(n, dtype=np.float32) * np.float32(np.float32(1.0) / np.float32(size)) - np.float32(0.5)
        i1 = np.floor(f).astype(np.int64)
        frac = (f - i1.astype(np.float32)).astype(np.float32)
        return np.maximum(i1, 0), np.minimum(i1 + 1, count - 1), frac

    y1, y2, ya = axis(h, th, tiles_y)
    x1, x2, xa = axis(w, tw, tiles_x)
    v = image.astype(np.int64)
    xa, xa1 = xa[None, :], np.float32(1) - xa[None, :]
    ya, ya1 = ya[:, None], np.float32(1) - ya[:, None]

    def lut(ty: np.ndarray, tx: np.ndarray) -> np.ndarray:
        return luts[ty[:, None], tx[None, :], v].astype(np.float32)

    res = (lut(y1, x1) * xa1 + lut(y1, x2) * xa) * ya1 + (lut(y2, x1) * xa1 + lut(y2, x2) * xa) * ya
    return np.clip(np.rint(res), 0, 255).astype(np.uint8)


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    """torchvision ``ToTensor`` of an HxWxC uint8 array: 1 x C x H x W float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1))).float().div(255)[None]


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """The release's save path: ``clamp(0, 1) * 255`` then ``astype('uint8')`` (truncation), HxWxC."""
    return (t[0].clamp(0, 1) * 255).cpu().numpy().astype(np.uint8).transpose(1, 2, 0)


# ----------------------------------------------------------------------------------------------- method
@METHODS.register("ifcnn")
class IFCNN(LearnedMethod):
    """Options: ``rule`` ("max" default | "sum" | "mean"): the element-wise feature fusion rule. The release
    has one weight file per rule (``IFCNN-MAX.pth`` for IVIF/MIF/MFF, ``IFCNN-MEAN.pth`` for MEF,
    ``IFCNN-SUM.pth``); loading a file named for another rule is refused."""

    network: ClassVar[type[nn.Module]] = IFCNNNet
    network_kind: ClassVar[str] = "an IFCNN state dict"
    net: IFCNNNet | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.rule = choice(self.name, "rule", self.options.get("rule", "max"), RULES)

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> IFCNNTrainer:
        train_options.setdefault("rule", self.rule)
        return IFCNNTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`IFCNNTrainer` (release key names)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load ``IFCNN-{MAX,SUM,MEAN}.pth``; the file's rule (from its name) must be the ``rule`` option."""
        match = re.fullmatch(r"IFCNN-(MAX|SUM|MEAN)\.pth", Path(weights).name, flags=re.IGNORECASE)
        if match and match.group(1).lower() != self.rule:
            raise ValueError(
                f"ifcnn: {weights} was trained with the {match.group(1).lower()} rule but rule is {self.rule!r}; "
                f"set the option rule: {match.group(1).lower()}"
            )
        self._set_net(load_state(weights, "cpu", self.name), device, Path(weights))

    def _set_net(self, state: Mapping[str, Any], device: str, source: Path) -> None:
        # the release's files predate BatchNorm's num_batches_tracked buffer (unused in eval mode)
        state = dict(state)
        for block in ("conv2", "conv3"):
            state.setdefault(f"{block}.bn.num_batches_tracked", torch.tensor(0))
        super()._set_net(state, device, source)

    # -- fusion
    def _run(self, *sources: torch.Tensor) -> torch.Tensor:
        net = self._require(self.net)
        with torch.inference_mode():
            return net(*(s.to(self.device) for s in sources), rule=self.rule).cpu()

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"ifcnn: expected two HxW images of one size, got {a.shape} and {b.shape}")
        imagenet = self.task == "mff"
        sources = [_normalise(torch.from_numpy(x)[None, None].expand(1, 3, *x.shape), imagenet) for x in (a, b)]
        out = _denormalise(self._run(*sources), imagenet).clamp(0, 1)[0].numpy()
        gray = sum(np.float32(w) * out[c] for c, w in enumerate(LUMA))
        return np.clip(gray, 0.0, 1.0).astype(np.float32)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """The release's test procedure for the task (IVIF/MIF: gray HxW; MFF/MEF: RGB HxWx3), uint8."""
        if self.task == "mef":
            return self._fuse_official_mef(path_a, path_b)
        if self.task not in ("ivif", "mif", "mff"):
            raise ValueError(f"ifcnn: the official procedure needs a task (ivif, mif, mff, mef), got {self.task!r}")
        imagenet = self.task == "mff"
        sources = []
        for path in (path_a, path_b):
            with Image.open(path) as img:
                sources.append(_normalise(_to_tensor(np.asarray(img.convert("RGB"))), imagenet))
        rgb = _to_uint8(_denormalise(self._run(*sources), imagenet))
        return rgb if imagenet else cv_rgb2gray(rgb)

    def _fuse_official_mef(self, path_a: Path, path_b: Path) -> np.ndarray:
        """Notebook cell 6: the network fuses Pillow's Y; chroma by ``|C - 128|`` weights; range squeeze,
        CLAHE, OpenCV YCrCb -> RGB."""
        ycc = []
        for path in (path_a, path_b):
            with Image.open(path) as img:
                ycc.append(_to_tensor(np.asarray(img.convert("YCbCr"))))
        chroma = []
        for c in (1, 2):
            planes = [t[0, c] * 255 for t in ycc]
            weights = [(p - 128).abs() for p in planes]
            total = sum(weights)
            fused = sum(p * w / total for p, w in zip(planes, weights, strict=True))
            chroma.append(torch.nan_to_num(fused, nan=128.0).numpy())
        y = cv_rgb2gray(_to_uint8(self._run(*(t[:, :1].repeat(1, 3, 1, 1) for t in ycc))))
        y = y / 255
        y = (y * 235 + (1 - y) * 16).astype(np.uint8)
        out = np.zeros((*y.shape, 3), np.uint8)
        out[..., 0] = clahe(y)
        out[..., 1] = chroma[1]  # numpy assignment of float into uint8 truncates, as the release
        out[..., 2] = chroma[0]
        return cv_ycrcb2rgb(out)


# ---------------------------------------------------------------------------------------------- trainer
class IFCNNTrainer(NetTrainer):
    """Supervised multi-focus training (the paper's setting) on synthetic pairs with ground truth.

    Each training image ``S`` of the batch (gray, repeated to 3 channels) becomes a multi-focus pair
    (A, B) by :class:`~fusebench.methods.mfifgan.SyntheticFocus` (options ``synthetic_*``; defaults: Gaussian
    blur sigma 1..3, hard complementary masks, swap 0.5); ``S`` itself is the ground truth. Inputs are
    ImageNet-normalised (as the release's colour multi-focus branch). Loss: ``MSE(F, S) + perceptual_weight *
    MSE(conv1(F), conv1(S))`` with the frozen conv1 (the perceptual term is ours, see the docs page).
    ``conv1`` stays frozen; ``conv1_weights`` names a state dict file holding ``conv1.weight`` (an official
    IFCNN file or torchvision's ResNet-101) to start from ImageNet features, else it keeps its random init.
    Optimiser: Adam(``lr``).
    """

    def __init__(
        self,
        device: str,
        rule: str = "max",
        lr: float = 1e-4,
        perceptual_weight: float = 1.0,
        conv1_weights: str | None = None,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        synthetic = {k: other.pop(k) for k in list(other) if k in SYNTHESIS_KEYS}
        check_options("ifcnn", other)
        self.rule = choice("ifcnn", "rule", rule, RULES)
        self.synthesis = SyntheticFocus.from_options(synthetic, psf="gaussian", blur=(1.0, 3.0), matte="hard", swap=0.5)
        self.perceptual_weight = float(perceptual_weight)
        self.net = seeded(seed, IFCNNNet)
        if conv1_weights is not None:
            state = load_state(Path(conv1_weights), "cpu", "ifcnn")
            if "conv1.weight" not in state:
                raise KeyError(f"ifcnn trainer: {conv1_weights} holds no conv1.weight")
            self.net.conv1.weight.data.copy_(state["conv1.weight"])
        self.net.conv1.weight.requires_grad_(False)
        self.net.to(self.device).train()
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(trainable, lr=float(lr))

    def losses(self, a: torch.Tensor, b: torch.Tensor, sharp: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms for N x 1 x H x W sources and ground truth in [0, 1]."""
        a, b, sharp = (_normalise(x.expand(-1, 3, -1, -1), True) for x in (a, b, sharp))
        fused = self.net(a, b, rule=self.rule)
        mse = F.mse_loss(fused, sharp)
        perceptual = F.mse_loss(self.net.conv1(fused), self.net.conv1(sharp))
        return {"loss": mse + self.perceptual_weight * perceptual, "mse": mse, "perceptual": perceptual}

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"ifcnn trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        batch = batch.to(self.device, torch.float32)
        a, b, _ = self.synthesis(batch)
        sharp = self.synthesis.sharp(batch)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = self.losses(a, b, sharp)
        terms["loss"].backward()
        self.optimizer.step()
        return {k: float(v.detach()) for k, v in terms.items()}

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
