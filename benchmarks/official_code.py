"""Import the authors' own PyTorch code from a folder the user gives, for the side-by-side speed benchmarks.

Nothing of the official code is in this project: the user exports each repository at its pinned commit (see
``benchmarks/README.md``) and passes ``--official NAME=FOLDER``. :func:`official_imports` puts that folder first on
``sys.path`` for the duration of the imports and then forgets its modules again, because several releases use the
same top-level names (``net``, ``utils``, ``model``).

Where a release imports a package that cannot be installed here (torchvision needs a matching torch build; timm and
wandb pull it in), :func:`official_imports` registers a minimal stand-in for just the names the code reaches; each
stand-in says what it replaces and why that does not change what is timed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn


def _module(name: str, **attrs: Any) -> ModuleType:
    mod = ModuleType(name)
    mod.__dict__.update(attrs)
    return mod


def _unused(name: str) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"{name} is a stand-in of the speed benchmark; the official code path timed never calls it")

    return fail


class _ResNet101Conv1:
    """``torchvision.models.resnet101(pretrained=...)`` as IFCNN's ``myIFCNN`` uses it: only its ``conv1`` (7x7,
    3->64, stride 2, padding 3, no bias, which IFCNN re-strides to 1 / pads 0) and its parameters (frozen). The
    release's state dict overwrites ``conv1.weight``, so the network run is the official one."""

    def __init__(self, pretrained: bool = False, **_: Any) -> None:
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.conv1.parameters()


class _ToTensor:
    """``torchvision.transforms.ToTensor`` for a PIL image: HxWxC uint8 -> CxHxW float32 / 255 (its code path)."""

    def __call__(self, pic: Any) -> torch.Tensor:
        img = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        img = img.view(pic.size[1], pic.size[0], len(pic.getbands())).permute(2, 0, 1).contiguous()
        return img.to(dtype=torch.get_default_dtype()).div(255)


class _Normalize:
    """``torchvision.transforms.Normalize`` (not in place): ``(x - mean) / std`` per channel."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        self.mean, self.std = mean, std

    def __call__(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=tensor.dtype)[:, None, None]
        std = torch.as_tensor(self.std, dtype=tensor.dtype)[:, None, None]
        return tensor.clone().sub_(mean).div_(std)


class _Compose:
    def __init__(self, transforms: list[Any]) -> None:
        self.transforms = transforms

    def __call__(self, x: Any) -> Any:
        for t in self.transforms:
            x = t(x)
        return x


def torchvision_stand_in() -> dict[str, ModuleType]:
    """What IFCNN's ``model.py`` / ``utils/myDatasets.py`` and TarDAL v0's ``pipeline/train.py`` import from
    torchvision (no CPU torchvision matching the installed torch can be installed here)."""
    transforms = _module(
        "torchvision.transforms", ToTensor=_ToTensor, Normalize=_Normalize, Compose=_Compose, Resize=_unused("Resize")
    )
    models = _module("torchvision.models", resnet101=_ResNet101Conv1)
    datasets = _module("torchvision.datasets")
    root = _module("torchvision", transforms=transforms, models=models, datasets=datasets)
    return {
        "torchvision": root,
        "torchvision.transforms": transforms,
        "torchvision.models": models,
        "torchvision.datasets": datasets,
    }


def timm_stand_in() -> dict[str, ModuleType]:
    """CDDFuse's ``net.py`` imports ``DropPath, to_2tuple, trunc_normal_`` from timm but defines its own
    ``DropPath`` and never calls the other two (timm needs torchvision)."""
    layers = _module(
        "timm.models.layers",
        DropPath=_unused("DropPath"),
        to_2tuple=_unused("to_2tuple"),
        trunc_normal_=_unused("trunc_normal_"),
    )
    models = _module("timm.models", layers=layers)
    return {"timm": _module("timm", models=models), "timm.models": models, "timm.models.layers": layers}


def wandb_stand_in() -> dict[str, ModuleType]:
    """TarDAL v0's ``pipeline/train.py`` imports wandb for logging in ``run``, which the benchmark does not call."""
    return {"wandb": _module("wandb", log=_unused("wandb.log"), init=_unused("wandb.init"))}


@contextmanager
def official_imports(root: Path, stand_ins: dict[str, ModuleType] | None = None) -> Iterator[None]:
    """Import from the official code folder ``root`` inside the ``with`` block (and from ``stand_ins`` for the
    packages named there); afterwards ``sys.path`` and ``sys.modules`` are as before, so the next release's
    ``net`` or ``utils`` is its own."""
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"official code folder {root} does not exist (export the repository there first)")
    saved_path = list(sys.path)
    own = {p.stem for p in root.iterdir() if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())}
    own |= {p.name for p in root.iterdir() if p.is_dir()}  # namespace packages (TarDAL's utils/, modules/)
    hidden = {k: v for k, v in sys.modules.items() if k.split(".")[0] in own}
    replaced = {k: sys.modules.get(k) for k in (stand_ins or {})}
    for k in hidden:
        del sys.modules[k]
    sys.modules.update(stand_ins or {})
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if k.split(".")[0] in own]:
            del sys.modules[k]
        sys.modules.update(hidden)
        for k, old in replaced.items():
            if old is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = old
