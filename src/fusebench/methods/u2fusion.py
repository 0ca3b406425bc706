"""U2Fusion (H. Xu, J. Ma, J. Jiang, X. Guo, H. Ling, "U2Fusion: A Unified Unsupervised Image Fusion Network",
IEEE TPAMI 44(1), 2022).

Reference code: ``hanna-xu/U2Fusion`` @ ``0a5882140df6`` (TensorFlow 1: ``Net.py``, ``model.py``, ``LOSS.py``,
``train_task.py``, ``main.py``, ``test_main.py``, ``VGGnet/vgg16.py``) and its one checkpoint
``model/model.ckpt`` for every task. See docs/methods/u2fusion.md for the recipe, its sources and the deviations.

Network (:class:`U2FusionNet`, 659,217 parameters): the two sources are concatenated (2 channels); every conv is
reflect-pad 1 + 3x3 VALID conv with bias; LeakyReLU(0.2) = ``max(x, 0.2 x)``; no normalisation.

* encoder: ``conv1_1`` 2 -> 44, then five dense convs ``dense_block_conv1..5`` (44 new channels each), each output
  put IN FRONT of its input (``concat(new, old)``): 88, 132, 176, 220, 264 channels;
* decoder: ``conv2_1`` 264 -> 128, ``conv2_2`` -> 64, ``conv2_3`` -> 32 (LeakyReLU), ``conv2_4`` -> 1, then
  ``tanh(x) / 2 + 0.5`` (output on [0, 1]).

Training (:class:`U2FusionTrainer`): information-preservation degrees from a VGG16 feature extractor
(:class:`VGG16Features`, torchvision's ``features`` layout, weights from a file), SSIM + 20 MSE weighted per
sample by them, RMSProp, weights clipped to [-50, 50], optional EWC penalty (:func:`ewc_anchor`) for sequential
multi-task training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ..losses import ssim
from ..tfcheckpoint import TFCheckpoint
from ..training import NetTrainer, check_options, seeded
from .base import METHODS, LearnedMethod, choice, load_state, to_image

__all__ = [
    "C_BY_TASK",
    "NET_PARAMETERS",
    "U2Fusion",
    "U2FusionNet",
    "U2FusionTrainer",
    "VGG16Features",
    "ewc_anchor",
    "feature_gradient",
    "from_tf_checkpoint",
    "information_weights",
    "load_tf_net",
    "rgb2ycbcr",
    "scipy_imread",
    "to_tf_names",
    "toimage_max",
    "ycbcr2rgb",
]

NET_PARAMETERS = 659_217
GROWTH = 44
#: (module name = TF scope, TF outer scope, in, out); variables are <outer>/<scope>/kernel and .../bias
LAYERS: tuple[tuple[str, str, int, int], ...] = (
    ("conv1_1", "Generator/encoder", 2, GROWTH),
    *((f"dense_block_conv{k}", "Generator/encoder", k * GROWTH, GROWTH) for k in range(1, 6)),
    ("conv2_1", "Generator_1/decoder", 6 * GROWTH, 128),
    ("conv2_2", "Generator_1/decoder", 128, 64),
    ("conv2_3", "Generator_1/decoder", 64, 32),
    ("conv2_4", "Generator_1/decoder", 32, 1),
)
#: the information-measure constant c of main.py per task (vis-ir 3200, oe-ue 3500, far-near 100); the
#: released code trains no medical task: mif uses the multi-modal (vis-ir) value (ours)
C_BY_TASK: Mapping[str, float] = {"ivif": 3200.0, "mif": 3200.0, "mef": 3500.0, "mff": 100.0}
OUTPUTS = ("max", "clip")
ORDERS = ("ba", "ab")
VGG_INPUTS = ("caffe", "torchvision")
#: the official grad kernel of model.py (features_grad), zero ("SAME") padding
_FEATURE_GRAD = ((1 / 8, 1 / 8, 1 / 8), (1 / 8, -1.0, 1 / 8), (1 / 8, 1 / 8, 1 / 8))


def _tf_init(module: nn.Module) -> None:
    """Net.py's initialisers: truncated normal kernels (std 0.05, cut at 2 std), zero biases."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.trunc_normal_(m.weight, std=0.05, a=-0.1, b=0.1)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------- network
class U2FusionNet(nn.Module):
    """The dense encoder-decoder of Net.py (module docstring); sources and output on [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        for name, _scope, cin, cout in LAYERS:
            self.add_module(name, nn.Conv2d(cin, cout, 3))
        _tf_init(self)

    def _conv(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, name)(F.pad(x, (1, 1, 1, 1), mode="reflect"))

    def forward(self, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self._conv("conv1_1", torch.cat([s1, s2], 1)), 0.2)
        for k in range(1, 6):
            h = torch.cat([F.leaky_relu(self._conv(f"dense_block_conv{k}", h), 0.2), h], 1)
        for name in ("conv2_1", "conv2_2", "conv2_3"):
            h = F.leaky_relu(self._conv(name, h), 0.2)
        return torch.tanh(self._conv("conv2_4", h)) / 2 + 0.5


# -------------------------------------------------------------------------------------- official weights
def from_tf_checkpoint(tensors: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our state dict from the official TF variables (HWIO kernels -> OIHW)."""
    state = {}
    for name, scope, cin, cout in LAYERS:
        w_name, b_name = f"{scope}/{name}/kernel", f"{scope}/{name}/bias"
        if w_name not in tensors or b_name not in tensors:
            raise KeyError(f"u2fusion: the checkpoint has no {w_name} / {b_name}; is it U2Fusion's model.ckpt?")
        w = np.asarray(tensors[w_name], dtype=np.float32)
        if w.shape != (3, 3, cin, cout):
            raise ValueError(f"u2fusion: {w_name} has shape {w.shape}, expected {(3, 3, cin, cout)}")
        state[f"{name}.weight"] = torch.from_numpy(np.ascontiguousarray(w.transpose(3, 2, 0, 1)))
        state[f"{name}.bias"] = torch.from_numpy(np.asarray(tensors[b_name], dtype=np.float32).copy())
    return state


def to_tf_names(state: Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Inverse of :func:`from_tf_checkpoint` (TF names, HWIO kernels)."""
    out = {}
    for name, scope, *_ in LAYERS:
        out[f"{scope}/{name}/kernel"] = state[f"{name}.weight"].detach().cpu().numpy().transpose(2, 3, 1, 0)
        out[f"{scope}/{name}/bias"] = state[f"{name}.bias"].detach().cpu().numpy()
    return out


def load_tf_net(path: str | Path) -> dict[str, torch.Tensor]:
    """The network of the official checkpoint (prefix ``.../model.ckpt``, its ``.index``/``.data-*`` or folder)."""
    ckpt = TFCheckpoint(path)
    return from_tf_checkpoint({n: ckpt.read(n) for n in ckpt.names() if n.startswith("Generator")})


# ------------------------------------------------------------------------------ official test procedure
def scipy_imread(path: str | Path) -> np.ndarray:
    """``scipy.misc.imread(path, flatten=False)`` of SciPy <= 1.1 (no mode): Pillow's array of the file as
    stored ('L' -> HxW, 'RGB' -> HxWx3, 'RGBA' -> HxWx4), palette images as RGB(A), bilevel as 'L'."""
    with Image.open(path) as img:
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        elif img.mode == "1":
            img = img.convert("L")
        if img.mode not in ("L", "RGB", "RGBA"):
            raise ValueError(f"u2fusion: {path} has image mode {img.mode}; the official reader expects L or RGB")
        return np.asarray(img)


def rgb2ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """test_main.py's ``rgb2ycbcr`` on [0, 1] RGB (float64): Y, Cb, Cr with chroma offset 128/255."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.1687 * r - 0.3313 * g + 0.5 * b + 128 / 255.0
    cr = 0.5 * r - 0.4187 * g - 0.0813 * b + 128 / 255.0
    return y, cb, cr


def ycbcr2rgb(y: np.ndarray, cb: np.ndarray, cr: np.ndarray) -> np.ndarray:
    """test_main.py's ``ycbcr2rgb``: HxWx3, not clipped."""
    r = y + 1.402 * (cr - 128 / 255.0)
    g = y - 0.34414 * (cb - 128 / 255.0) - 0.71414 * (cr - 128 / 255.0)
    b = y + 1.772 * (cb - 128 / 255.0)
    return np.stack([r, g, b], axis=-1)


def toimage_max(f: np.ndarray) -> np.ndarray:
    """``scipy.misc.toimage(f, cmin=0, cmax=f.max())`` of SciPy <= 1.1: ``uint8(clip(f * 255 / max, 0, 255)
    + 0.5)`` in the array's own precision (float32 for the grey output, float64 for colour)."""
    f = np.asarray(f)
    top = f.max()
    scale = f.dtype.type(255.0 / float(top)) if top != 0 else f.dtype.type(255.0)
    return (np.clip(f * scale, 0, 255) + f.dtype.type(0.5)).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- method
@METHODS.register("u2fusion")
class U2Fusion(LearnedMethod):
    """Options:

    * ``output`` ("max", default = the official save: divide by the image's maximum | "clip": the network's
      [0, 1] output as it is);
    * ``input_order`` ("ba", default: b -> SOURCE1, a -> SOURCE2 | "ab"). test_main.py's presets feed SOURCE1 =
      vi, PET/CT, over-exposed, far and SOURCE2 = ir, MRI, under-exposed, near: source b of fusebench's
      datasets in every task (ir,vi; mri,ct|pet|spect; a,b with a the darker / near image).
    """

    network: ClassVar[type[nn.Module]] = U2FusionNet
    network_kind: ClassVar[str] = "a U2Fusion network"
    net: U2FusionNet | None

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.output = choice(self.name, "output", self.options.get("output", "max"), OUTPUTS)
        self.input_order = choice(self.name, "input_order", self.options.get("input_order", "ba"), ORDERS)

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> U2FusionTrainer:
        train_options.setdefault("c", C_BY_TASK.get(self.task or "ivif", C_BY_TASK["ivif"]))
        return U2FusionTrainer(device, **train_options)

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` written by :class:`U2FusionTrainer` (the network's state dict)."""
        self._set_net(load_state(checkpoint, "cpu", self.name), device, Path(checkpoint))

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the official TF1 checkpoint ``model.ckpt`` (prefix, ``.index``, ``.data-*`` or folder) with the
        pure-Python reader."""
        self._set_net(load_tf_net(weights), device, Path(weights))

    # -- fusion
    def fuse_raw(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The network's output (HxW float32 on [0, 1]) for two HxW sources on [0, 1], in the configured order."""
        net = self._require(self.net)
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"u2fusion: expected two HxW images of one size, got {a.shape}, {b.shape}")
        if min(a.shape) < 2:
            raise ValueError(f"u2fusion: images must be at least 2x2 (reflection padding), got {a.shape}")
        s1, s2 = (b, a) if self.input_order == "ba" else (a, b)
        with torch.inference_mode():
            return to_image(net(self.to_tensor(s1), self.to_tensor(s2)))

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        out = self.fuse_raw(a, b)
        if self.output == "max":
            top = out.max()
            out = out / top if top > 0 else out
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    def fuse_official(self, path_a: Path, path_b: Path) -> np.ndarray:
        """test_main.py end to end: the uint8 image (HxW, or HxWx3 when exactly one source is colour) that
        the official script saves (before its JPEG encoding for JPEG inputs)."""
        sources = []
        for path in (path_a, path_b):
            image = scipy_imread(path) / 255.0
            sources.append(rgb2ycbcr(image) if image.ndim == 3 else (image, None, None))
        (ya, *chroma_a), (yb, *chroma_b) = sources
        if ya.shape != yb.shape:
            raise ValueError(f"u2fusion: {path_a} and {path_b} differ in size ({ya.shape} vs {yb.shape})")
        f = self.fuse_raw(ya.astype(np.float32), yb.astype(np.float32))
        colour = [c for c in (chroma_a, chroma_b) if c[0] is not None]
        if len(colour) == 1:  # both or neither colour: the script keeps the grey output
            f = ycbcr2rgb(f, *colour[0])
        return toimage_max(f)


# ------------------------------------------------------------------------------------ VGG16 and weights
#: torchvision's vgg16 ``features`` up to conv5_3's ReLU: conv layers by index (in, out); ReLU after each,
#: 2x2 max pooling at 4, 9, 16, 23
_VGG_CONVS: Mapping[int, tuple[int, int]] = {
    0: (3, 64), 2: (64, 64),
    5: (64, 128), 7: (128, 128),
    10: (128, 256), 12: (256, 256), 14: (256, 256),
    17: (256, 512), 19: (512, 512), 21: (512, 512),
    24: (512, 512), 26: (512, 512), 28: (512, 512),
}  # fmt: skip
_VGG_POOLS = (4, 9, 16, 23)
#: the ReLU outputs U2Fusion uses: conv1_2, conv2_2, conv3_3, conv4_3, conv5_3 (vgg16.py's build() return)
VGG_TAPS = (3, 8, 15, 22, 29)
#: vgg16.py's Caffe means (B, G, R) on the 0..255 scale; torchvision's ImageNet mean and std (R, G, B)
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VGG16Features(nn.Module):
    """VGG16's convolutional part with torchvision's ``features`` indices (state dict keys ``0.weight`` ...
    ``28.bias``), up to the ReLU of conv5_3; ``forward`` returns the five :data:`VGG_TAPS` feature maps."""

    def __init__(self) -> None:
        super().__init__()
        for i in range(VGG_TAPS[-1] + 1):
            if i in _VGG_CONVS:
                layer: nn.Module = nn.Conv2d(*_VGG_CONVS[i], 3, padding=1)
            elif i in _VGG_POOLS:
                layer = nn.MaxPool2d(2, 2)
            else:
                layer = nn.ReLU()
            self.add_module(str(i), layer)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for i, layer in enumerate(self.children()):
            x = layer(x)
            if i in VGG_TAPS:
                taps.append(x)
        return taps

    @classmethod
    def from_file(cls, path: str | Path) -> VGG16Features:
        """Frozen, eval-mode features from a state dict file: torchvision's whole ``vgg16`` (``features.N.*``,
        the classifier is ignored) or its ``features`` alone (``N.*``)."""
        state = load_state(Path(path), "cpu", "u2fusion")
        if any(k.startswith("features.") for k in state):
            state = {k.removeprefix("features."): v for k, v in state.items() if k.startswith("features.")}
        net = cls()
        expected = set(net.state_dict())
        missing = expected - set(state)
        if missing:
            raise ValueError(
                f"u2fusion: {path} is not a VGG16 state dict in torchvision's layout (missing {sorted(missing)[:3]}); "
                "give torchvision's vgg16 state dict or its `features` part"
            )
        net.load_state_dict({k: state[k] for k in expected})
        return net.eval().requires_grad_(False)


def feature_gradient(x: torch.Tensor) -> torch.Tensor:
    """model.py's ``features_grad``: each channel convolved with the 3x3 kernel (1/8 around, -1 in the centre),
    zero padding."""
    k = torch.tensor(_FEATURE_GRAD, dtype=x.dtype, device=x.device).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, k, padding=1, groups=x.shape[1])


def vgg_input(x: torch.Tensor, size: int, convention: str) -> torch.Tensor:
    """N x 1 x H x W sources on [0, 1] -> VGG16 input: nearest resize to ``size`` (TF1's
    ``resize_nearest_neighbor``: source index ``floor(i * in / out)``, as torch's "nearest"), three equal
    channels, then "caffe" (vgg16.py: x 255 minus the BGR means) or "torchvision" (ImageNet mean and std)."""
    x = F.interpolate(x, size=(size, size), mode="nearest").expand(-1, 3, -1, -1)
    if convention == "caffe":
        mean = torch.tensor(CAFFE_BGR_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return x * 255 - mean
    mean, std = (
        torch.tensor(v, dtype=x.dtype, device=x.device).view(1, 3, 1, 1) for v in (IMAGENET_MEAN, IMAGENET_STD)
    )
    return (x - mean) / std


def information_weights(
    vgg: VGG16Features, s1: torch.Tensor, s2: torch.Tensor, c: float, size: int = 224, convention: str = "caffe"
) -> torch.Tensor:
    """The adaptive information-preservation degrees (N x 2) of model.py: per source and sample, the mean over
    the five VGG layers of ``mean(features_grad(phi)^2)``, divided by ``c``, softmax over the two sources."""
    with torch.no_grad():
        g = []
        for s in (s1, s2):
            taps = vgg(vgg_input(s, size, convention))
            g.append(torch.stack([feature_gradient(t).square().mean(dim=(1, 2, 3)) for t in taps], 1).mean(1))
        return torch.softmax(torch.stack(g, 1) / float(c), dim=1)


def content_loss(
    net: U2FusionNet, s1: torch.Tensor, s2: torch.Tensor, w: torch.Tensor, mse_weight: float
) -> dict[str, torch.Tensor]:
    """model.py's loss: ``mean_n(w1 (1 - SSIM(S1, F)) + w2 (1 - SSIM(S2, F))) + mse_weight * mean_n(w1 MSE(F, S1)
    + w2 MSE(F, S2))`` (SSIM: 11x11 Gaussian window, sigma 1.5, valid windows, L = 1)."""
    fused = net(s1, s2)
    ssim_terms = [1 - ssim(s, fused, data_range=1.0, reduction="none") for s in (s1, s2)]
    mse_terms = [(fused - s).square().mean(dim=(1, 2, 3)) for s in (s1, s2)]
    ssim_loss = (w[:, 0] * ssim_terms[0] + w[:, 1] * ssim_terms[1]).mean()
    mse_loss = (w[:, 0] * mse_terms[0] + w[:, 1] * mse_terms[1]).mean()
    return {"content": ssim_loss + mse_weight * mse_loss, "ssim": ssim_loss, "mse": mse_loss}


def _tf_rmsprop(params: Sequence[nn.Parameter], lr: float) -> torch.optim.RMSprop:
    """train_task.py's ``RMSPropOptimizer(lr, decay=0.6, momentum=0.15)`` (TF epsilon 1e-10) with TF1's slot
    initialisation: the mean square starts at ONE, not zero (torch's default), which keeps the first steps small."""
    opt = torch.optim.RMSprop(params, lr=lr, alpha=0.6, eps=1e-10, momentum=0.15)
    for p in params:
        opt.state[p] = {
            "step": torch.zeros((), dtype=torch.float32),
            "square_avg": torch.ones_like(p, memory_format=torch.preserve_format),
            "momentum_buffer": torch.zeros_like(p, memory_format=torch.preserve_format),
        }
    return opt


def _swap(seed: int, step: int) -> bool:
    """Whether batch ``step`` feeds source b as SOURCE1 (train_task.py draws the order at random per batch);
    a function of (seed, step) so a resumed run draws the same."""
    return bool(np.random.default_rng([seed, step, 1]).integers(2))


def ewc_anchor(
    state: Mapping[str, torch.Tensor],
    task_sets: Sequence[tuple[np.ndarray, float]],
    vgg_weights: str | Path,
    samples: int = 30,
    batch_size: int = 18,
    seed: int = 0,
    mse_weight: float = 20.0,
    vgg_size: int = 224,
    vgg_input_convention: str = "caffe",
) -> dict[str, dict[str, torch.Tensor]]:
    """The EWC anchor after a task (model.py ``compute_fisher`` + ``star``): ``{"star": state, "fisher": F}``
    with ``F = mean over samples and task sets of (d content_loss / d theta)^2`` on one random batch of
    ``batch_size`` consecutive patches per sample and set (random source order), at the weights ``state``.

    ``task_sets``: (uint8 N x 2 x H x W patches, c) of every task trained so far. Save it with ``torch.save``
    and pass the file as the ``ewc`` option of the next task's trainer."""
    net = U2FusionNet()
    net.load_state_dict(dict(state))
    vgg = VGG16Features.from_file(vgg_weights)
    fisher = {k: torch.zeros_like(p) for k, p in net.named_parameters()}
    rng = np.random.default_rng(seed)
    for _ in range(samples):
        for patches, c in task_sets:
            start = int(rng.integers(max(len(patches) - batch_size, 1)))
            batch = torch.from_numpy(patches[start : start + batch_size].astype(np.float32) / 255)
            s1, s2 = (batch[:, 1:], batch[:, :1]) if rng.integers(2) else (batch[:, :1], batch[:, 1:])
            w = information_weights(vgg, s1, s2, c, vgg_size, vgg_input_convention)
            net.zero_grad(set_to_none=True)
            content_loss(net, s1, s2, w, mse_weight)["content"].backward()
            for k, p in net.named_parameters():
                fisher[k] += p.grad.square()  # type: ignore[union-attr]
    n = samples * len(task_sets)
    return {"star": {k: v.detach().clone() for k, v in state.items()}, "fisher": {k: v / n for k, v in fisher.items()}}


# --------------------------------------------------------------------------------------------- trainer
class U2FusionTrainer(NetTrainer):
    """One task of U2Fusion's sequential training (module docstring; docs/methods/u2fusion.md).

    Options: ``vgg_weights`` (required: a VGG16 state dict file in torchvision's layout, see
    :meth:`VGG16Features.from_file`), ``c`` (the task's information-measure constant, :data:`C_BY_TASK`),
    ``lr`` (1e-4), ``mse_weight`` (20), ``vgg_input`` ("caffe" | "torchvision"), ``vgg_size`` (224),
    ``ewc`` (None, or an :func:`ewc_anchor` file of the previous tasks: training starts from its weights and
    adds ``ewc_weight / 2 * sum F (theta - theta*)^2``), ``ewc_weight`` (0, the released main.py's LAM),
    ``clip`` (50: every weight clipped to [-clip, clip] after each step, as train_task.py), ``seed``.
    """

    def __init__(
        self,
        device: str,
        vgg_weights: str | Path | None = None,
        c: float = C_BY_TASK["ivif"],
        lr: float = 1e-4,
        mse_weight: float = 20.0,
        vgg_input: str = "caffe",
        vgg_size: int = 224,
        ewc: str | Path | None = None,
        ewc_weight: float = 0.0,
        clip: float = 50.0,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("u2fusion", other)
        if vgg_weights is None:
            raise ValueError(
                "u2fusion trainer: set the train option vgg_weights to a VGG16 state dict file (torchvision's "
                "vgg16 layout); U2Fusion's loss weights come from VGG16 features and they cannot be downloaded here"
            )
        self.convention = choice("u2fusion", "vgg_input", vgg_input, VGG_INPUTS)
        self.c, self.mse_weight, self.vgg_size = float(c), float(mse_weight), int(vgg_size)
        self.ewc_weight, self.clip, self.seed = float(ewc_weight), float(clip), int(seed or 0)
        self.vgg = VGG16Features.from_file(vgg_weights).to(self.device)
        self.net = seeded(seed, U2FusionNet).to(self.device).train()
        self.anchor: dict[str, dict[str, torch.Tensor]] | None = None
        if ewc is not None:
            anchor = torch.load(Path(ewc), map_location=self.device, weights_only=True)
            if not isinstance(anchor, Mapping) or set(anchor) != {"star", "fisher"}:
                raise ValueError(f"u2fusion trainer: {ewc} is not an EWC anchor file (see u2fusion.ewc_anchor)")
            self.anchor = {k: dict(v) for k, v in anchor.items()}
            self.net.load_state_dict(self.anchor["star"])  # the next task starts from the previous one
        self.optimizer = _tf_rmsprop(list(self.net.parameters()), float(lr))

    def ewc_penalty(self) -> torch.Tensor:
        if self.anchor is None:
            return torch.zeros((), device=self.device)
        star, fisher = self.anchor["star"], self.anchor["fisher"]
        total = sum((fisher[k] * (p - star[k]).square()).sum() for k, p in self.net.named_parameters())
        return torch.as_tensor(total, device=self.device)

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"u2fusion trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        batch = batch.to(self.device, torch.float32)
        s1, s2 = (batch[:, 1:], batch[:, :1]) if _swap(self.seed, step) else (batch[:, :1], batch[:, 1:])
        w = information_weights(self.vgg, s1, s2, self.c, self.vgg_size, self.convention)
        self.net.train()
        self.optimizer.zero_grad(set_to_none=True)
        terms = content_loss(self.net, s1, s2, w, self.mse_weight)
        terms["ewc"] = self.ewc_penalty()
        terms["loss"] = terms["content"] + self.ewc_weight / 2 * terms["ewc"]
        terms["loss"].backward()
        self.optimizer.step()
        with torch.no_grad():
            for p in self.net.parameters():
                p.clamp_(-self.clip, self.clip)
        terms["w1"] = w[:, 0].mean()
        return {k: float(v.detach()) for k, v in terms.items()}

    def export(self) -> dict[str, Any]:
        return {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
