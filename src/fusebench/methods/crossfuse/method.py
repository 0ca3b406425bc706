"""The registered ``crossfuse`` method and its two-stage trainer. See docs/methods/crossfuse.md."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from ...torchfile import load_torch
from ...training import Trainer, check_options, seeded
from ..base import METHODS, LearnedMethod, load_state, to_image
from .losses import MASK_KINDS, MS_SSIM_KINDS, fusion_loss, reconstruction_loss
from .network import AutoEncoder, FusionNet

SCALE = 255.0
FORMAT = "fusebench-crossfuse-1"

#: the three files of the official release (hli1221/CrossFuse, models/...)
OFFICIAL_FILES = {
    "ir": "auto_encoder_epoch_4_ir.model",
    "vi": "auto_encoder_epoch_4_vi.model",
    "fusion": "fusetrans_epoch_32_bs_8_num_20k_lr_0.1_s1_c1.model",
}
_OFFICIAL_SUBDIRS = ("", "autoencoder", "transfuse", "models/autoencoder", "models/transfuse")
_OPTION_OF_PART = {"ir": "official_ir", "vi": "official_vi", "fusion": "official_fusion"}


def official_paths(weights: Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Path]:
    """Where the three official files are: ``overrides`` (options ``official_ir``, ``official_vi``,
    ``official_fusion``; relative paths are taken relative to ``weights``), else the official file names in
    ``weights`` or in its ``autoencoder/`` / ``transfuse/`` (or ``models/...``) sub-folders, as upstream."""
    weights = Path(weights)
    overrides = overrides or {}
    found: dict[str, Path] = {}
    for part, filename in OFFICIAL_FILES.items():
        given = overrides.get(_OPTION_OF_PART[part])
        if given:
            path = Path(given)
            found[part] = path if path.is_absolute() else weights / path
            continue
        candidates = [weights / sub / filename for sub in _OFFICIAL_SUBDIRS]
        hit = next((c for c in candidates if c.is_file()), None)
        if hit is None:
            raise FileNotFoundError(
                f"crossfuse: official file {filename} not found in {weights} (nor in its autoencoder/, "
                f"transfuse/, models/... sub-folders); fetch the pinned files (docs/methods/crossfuse.md) or "
                f"give its path with the option {_OPTION_OF_PART[part]}"
            )
        found[part] = hit
    return found


# ---------------------------------------------------------------------------------------------- method
@METHODS.register("crossfuse")
class CrossFuse(LearnedMethod):
    """Options: ``shift`` (bool, default True: the CAM's shifted self-attention at test time, as the release's
    test script), ``ir_scale`` (0.5: weight of the infrared shallow skip in the decoder, as the release),
    ``official_ir`` / ``official_vi`` / ``official_fusion`` (paths of the three official files, see
    :meth:`load_official`). Source ``a`` is the infrared image, ``b`` the visible one."""

    name: ClassVar[str] = "crossfuse"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.shift = bool(self.options.get("shift", True))
        self.ir_scale = float(self.options.get("ir_scale", 0.5))
        self.ae_ir: AutoEncoder | None = None
        self.ae_vi: AutoEncoder | None = None
        self.fusion: FusionNet | None = None

    # -- weights
    def trainer(self, device: str, **train_options: Any) -> CrossFuseTrainer:
        return CrossFuseTrainer(device, **{"ir_scale": self.ir_scale, **train_options})

    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load ``model.pt`` of :class:`CrossFuseTrainer` (three state dicts in the official layout)."""
        state = load_torch(checkpoint, device)
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError(f"crossfuse: {checkpoint} is not a model.pt written by the crossfuse trainer")
        self._set(state["auto_encoder_ir"], state["auto_encoder_vi"], state["fusion"], device)

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the release's three files from the folder ``weights``, or from the folder of the file ``weights``
        (the workflow passes the first of the three fetched files; see :func:`official_paths`)."""
        weights = Path(weights)
        paths = official_paths(weights.parent if weights.is_file() else weights, self.options)
        self._set(*(load_state(paths[part], device, self.name) for part in ("ir", "vi", "fusion")), device)

    def _set(self, ir: Mapping[str, Any], vi: Mapping[str, Any], fusion: Mapping[str, Any], device: str) -> None:
        ae_ir, ae_vi = AutoEncoder(), AutoEncoder()
        net = FusionNet(ir_scale=self.ir_scale)
        for module, state, what in (
            (ae_ir, ir, "infrared auto-encoder"),
            (ae_vi, vi, "visible auto-encoder"),
            (net, fusion, "fusion network"),
        ):
            try:
                module.load_state_dict(dict(state), strict=True)
            except RuntimeError as err:
                raise ValueError(f"crossfuse: the {what} weights do not match the architecture: {err}") from None
        self.ae_ir = self._to_device(ae_ir, device, ("encode",))
        self.ae_vi = self._to_device(ae_vi, device, ("encode",))
        self.fusion = self._to_device(net, device)

    # -- fusion
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Fuse infrared ``a`` and visible ``b`` (HxW float32 in [0, 1]) as the release's test script does:
        whole images through both encoders, the CAM on 32x32 tiles of the deep features (shift on), decoder,
        per-image min-max normalisation. Returns HxW float32 in [0, 1)."""
        ae_ir, ae_vi, fusion = self._require(self.ae_ir), self._require(self.ae_vi), self._require(self.fusion)
        a = np.asarray(a, dtype=np.float32)
        b = np.asarray(b, dtype=np.float32)
        if a.shape != b.shape or a.ndim != 2:
            raise ValueError(f"crossfuse: expected two HxW images of the same size, got {a.shape} and {b.shape}")
        if min(a.shape) < 16:
            # the deep maps (1/8 size) must be at least 2x2 for the decoder's reflection padding
            raise ValueError(f"crossfuse: images must be at least 16x16, got {a.shape}")
        with torch.inference_mode():
            ir_sh, ir_de = ae_ir.encode(self.to_tensor(a))
            vi_sh, vi_de = ae_vi.encode(self.to_tensor(b))
            out = fusion(ir_sh, vi_sh, ir_de, vi_de, shift_flag=self.shift, tiled=True)
        return np.clip(to_image(out), 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------------- trainer
class CrossFuseTrainer(Trainer):
    """Both training stages in one trainer; the stage is chosen by ``step``.

    * steps ``[0, stage1_steps)``: stage 1, the two auto-encoders (infrared on source a, visible on source b),
      each with its own Adam, on ``ae_batch_size`` pairs drawn from the batch (a choice fixed by ``seed`` and
      ``step``, so resuming sees the same images);
    * steps ``[stage1_steps, steps)``: stage 2, encoders frozen (not updated, run without gradients), CAM +
      fusion decoder trained with one Adam on the whole batch.

    ``stage1_steps`` is ``round(stage1_fraction * steps)`` unless given; ``steps`` is the run's total
    (``fusebench train`` passes it). The learning rate of each stage is multiplied by ``lr_drop_factor``
    once ``ae_lr_drop`` / ``cam_lr_drop`` of that stage is done (the release: x0.1 from its third epoch on).
    """

    LOSS_KEYS: ClassVar[tuple[str, ...]] = ("loss", "ae_ir", "ae_vi", "intensity", "gradient", "lr")

    def __init__(
        self,
        device: str,
        steps: int | None = None,
        stage1_fraction: float = 0.5,
        stage1_steps: int | None = None,
        ae_batch_size: int = 2,
        ae_lr: float = 1e-4,
        cam_lr: float = 1e-3,
        weight_decay: float = 0.9,
        ae_lr_drop: float = 0.5,
        cam_lr_drop: float = 2 / 32,
        lr_drop_factor: float = 0.1,
        ssim_weight: float = 1e4,
        ms_ssim: str = "official",
        gradient_weight: float = 10.0,
        mask_size: int = 11,
        intensity_mask: str = "binary",
        shift_train: bool = False,
        ir_scale: float = 0.5,
        seed: int | None = None,
        **other: Any,
    ) -> None:
        super().__init__(device)
        check_options("crossfuse", other)  # `steps` is a parameter here, so never among `other`
        if stage1_steps is None:
            if steps is None:
                raise TypeError(
                    "crossfuse trainer: give `steps` (the run's total number of steps, to place the stage "
                    "boundary at stage1_fraction * steps) or `stage1_steps`"
                )
            if not 0.0 <= float(stage1_fraction) <= 1.0:
                raise ValueError(f"crossfuse trainer: stage1_fraction must be in [0, 1], got {stage1_fraction}")
            stage1_steps = round(float(stage1_fraction) * int(steps))
        self.stage1_steps = int(stage1_steps)
        self.stage2_steps = None if steps is None else max(int(steps) - self.stage1_steps, 0)
        if ms_ssim not in MS_SSIM_KINDS:
            raise ValueError(f"crossfuse trainer: ms_ssim must be one of {', '.join(MS_SSIM_KINDS)}")
        if intensity_mask not in MASK_KINDS:
            raise ValueError(f"crossfuse trainer: intensity_mask must be one of {', '.join(MASK_KINDS)}")
        if int(ae_batch_size) < 1:
            raise ValueError(f"crossfuse trainer: ae_batch_size must be >= 1, got {ae_batch_size}")
        self.ae_batch_size = int(ae_batch_size)
        self.ae_lr, self.cam_lr = float(ae_lr), float(cam_lr)
        self.ae_lr_drop, self.cam_lr_drop = float(ae_lr_drop), float(cam_lr_drop)
        self.lr_drop_factor = float(lr_drop_factor)
        self.ssim_weight = float(ssim_weight)
        self.ms_ssim_kind = ms_ssim
        self.gradient_weight = float(gradient_weight)
        self.mask_size = int(mask_size)
        self.intensity_mask = intensity_mask
        self.shift_train = bool(shift_train)
        self.seed = 0 if seed is None else int(seed)

        nets = seeded(seed, lambda: (AutoEncoder(), AutoEncoder(), FusionNet(ir_scale=ir_scale)))
        self.ae_ir, self.ae_vi, self.fusion = (net.to(self.device) for net in nets)
        wd = float(weight_decay)
        self.opt_ir = _adam(list(self.ae_ir.parameters()), self.ae_lr, wd)
        self.opt_vi = _adam(list(self.ae_vi.parameters()), self.ae_lr, wd)
        self.opt_fusion = _adam([p for p in self.fusion.parameters() if p.requires_grad], self.cam_lr, wd)

    # -- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "ae_ir": self.ae_ir.state_dict(),
            "ae_vi": self.ae_vi.state_dict(),
            "fusion": self.fusion.state_dict(),
            "opt_ir": self.opt_ir.state_dict(),
            "opt_vi": self.opt_vi.state_dict(),
            "opt_fusion": self.opt_fusion.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ae_ir.load_state_dict(state["ae_ir"])
        self.ae_vi.load_state_dict(state["ae_vi"])
        self.fusion.load_state_dict(state["fusion"])
        self.opt_ir.load_state_dict(state["opt_ir"])
        self.opt_vi.load_state_dict(state["opt_vi"])
        self.opt_fusion.load_state_dict(state["opt_fusion"])

    def export(self) -> dict[str, Any]:
        def cpu(module: torch.nn.Module) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

        return {
            "format": FORMAT,
            "auto_encoder_ir": cpu(self.ae_ir),
            "auto_encoder_vi": cpu(self.ae_vi),
            "fusion": cpu(self.fusion),
        }

    # -- schedule
    def stage(self, step: int) -> int:
        return 1 if step < self.stage1_steps else 2

    def learning_rate(self, step: int) -> float:
        if self.stage(step) == 1:
            drop = step >= self.ae_lr_drop * self.stage1_steps
            return self.ae_lr * (self.lr_drop_factor if drop else 1.0)
        if self.stage2_steps is None:  # stage1_steps given without steps: no drop can be placed
            return self.cam_lr
        drop = step - self.stage1_steps >= self.cam_lr_drop * self.stage2_steps
        return self.cam_lr * (self.lr_drop_factor if drop else 1.0)

    def ae_subset(self, batch_size: int, step: int) -> np.ndarray:
        return stage1_subset(batch_size, self.ae_batch_size, self.seed, step)

    # -- steps
    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if batch.ndim != 4 or batch.shape[1] != 2:
            raise ValueError(f"crossfuse trainer: expected a Bx2xHxW batch, got {tuple(batch.shape)}")
        if min(batch.shape[-2:]) < 16:
            raise ValueError(f"crossfuse trainer: patches must be at least 16x16, got {tuple(batch.shape[-2:])}")
        batch = batch.to(self.device, torch.float32)
        lr = self.learning_rate(step)
        out = dict.fromkeys(self.LOSS_KEYS, float("nan"))
        out["lr"] = lr
        if self.stage(step) == 1:
            out.update(self._stage1(batch, step, lr))
        else:
            out.update(self._stage2(batch, lr))
        return out

    def _stage1(self, batch: torch.Tensor, step: int, lr: float) -> dict[str, float]:
        idx = torch.from_numpy(self.ae_subset(batch.shape[0], step)).to(batch.device)
        chosen = batch.index_select(0, idx)
        result = {}
        for key, net, optimizer, channel in (
            ("ae_ir", self.ae_ir, self.opt_ir, 0),
            ("ae_vi", self.ae_vi, self.opt_vi, 1),
        ):
            images = chosen[:, channel : channel + 1]
            net.train()
            _set_lr(optimizer, lr)
            optimizer.zero_grad(set_to_none=True)
            terms = self.reconstruction_terms(net, images)
            terms["loss"].backward()
            optimizer.step()
            result[key] = float(terms["loss"].detach())
        result["loss"] = result["ae_ir"] + result["ae_vi"]
        return result

    def reconstruction_terms(self, net: AutoEncoder, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage-1 loss terms for N x 1 x H x W images in [0, 1] (compared on the 0..255 scale)."""
        return reconstruction_loss(net(images) * SCALE, images * SCALE, self.ssim_weight, self.ms_ssim_kind)

    def fusion_terms(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Stage-2 loss terms for a Bx2xHxW batch in [0, 1]: frozen encoders, CAM on whole feature maps."""
        ir, vi = batch[:, 0:1], batch[:, 1:2]
        self.ae_ir.eval()
        self.ae_vi.eval()
        with torch.no_grad():
            ir_sh, ir_de = self.ae_ir.encode(ir)
            vi_sh, vi_de = self.ae_vi.encode(vi)
        out = self.fusion(ir_sh, vi_sh, ir_de, vi_de, shift_flag=self.shift_train, tiled=False) * SCALE
        return fusion_loss(out, ir * SCALE, vi * SCALE, self.gradient_weight, self.mask_size, self.intensity_mask)

    def _stage2(self, batch: torch.Tensor, lr: float) -> dict[str, float]:
        self.fusion.train()
        _set_lr(self.opt_fusion, lr)
        self.opt_fusion.zero_grad(set_to_none=True)
        terms = self.fusion_terms(batch)
        terms["loss"].backward()
        self.opt_fusion.step()
        return {k: float(v.detach()) for k, v in terms.items()}


def stage1_subset(batch_size: int, count: int, seed: int, step: int) -> np.ndarray:
    """The (sorted) indices of the ``count`` pairs of a batch that stage 1 trains on at ``step``: a pure
    function of its arguments, so a resumed run draws the same ones."""
    if count >= batch_size:
        return np.arange(batch_size)
    rng = np.random.default_rng([seed, step, 1])
    return np.sort(rng.permutation(batch_size)[:count])


def _adam(params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Adam:
    """Adam with L2 weight decay added to the gradient (``torch.optim.Adam(weight_decay=...)``, as the
    release). The fused implementation (same update, about 20x faster on CPU for the 20 M CAM parameters) is
    used where this torch supports it for the parameters' device."""
    try:
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
