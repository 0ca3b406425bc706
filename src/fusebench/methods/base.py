"""The one interface every fusion method implements, learned or not.

A method fuses two *gray* images (float32 HxW in [0, 1]) into one; colour handling happens once, outside
methods, in :mod:`fusebench.fuse`. Learned methods also provide a :class:`~fusebench.training.Trainer` and
know how to load the checkpoints it writes (and, where published, the authors' official weights).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from torch import nn

from ..accel import Accel
from ..torchfile import load_torch
from ..training import Trainer
from ..weights import check_known_file
from .catalog import METHODS

N = TypeVar("N", bound=nn.Module)


def choice(method: str, name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``str(value)`` if it is one of ``allowed``, else a ``ValueError`` naming ``method`` and option ``name``."""
    value = str(value)
    if value not in allowed:
        raise ValueError(f"{method}: {name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def load_state(path: Path, device: str | torch.device, method: str) -> dict[str, Any]:
    """Read a state dict file safely (``weights_only=True``) after verifying it if it is a registered official
    file (:func:`fusebench.weights.check_known_file`); a DataParallel ``module.`` prefix is dropped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{method}: no weights file at {path}")
    check_known_file(path)
    state = load_torch(path, device)
    if not isinstance(state, Mapping):
        raise ValueError(f"{method}: {path} does not hold a state dict")
    return {k.removeprefix("module."): v for k, v in state.items()}


def to_image(t: torch.Tensor) -> np.ndarray:
    """The first image of a N x C x H x W network output: HxW float32 on the CPU."""
    return t[0, 0].float().cpu().numpy()


class FusionMethod(ABC):
    """A configured fusion method. ``options`` come from the config's entry for the method and are checked
    against the options the method declares in the catalogue (unknown keys and bad values raise
    :class:`~fusebench.methods.catalog.OptionError`)."""

    #: registry name, e.g. "densefuse"; set from the catalogue on registration, like ``tasks`` and ``description``
    name: ClassVar[str]
    #: tasks the method is meant for ("ivif", "mif", "mff", "mef")
    tasks: ClassVar[tuple[str, ...]]
    #: whether the method has weights to train or load
    learned: ClassVar[bool] = False
    #: one-line description and reference shown in the report
    description: ClassVar[str]

    def __init__(self, task: str | None = None, **options: Any) -> None:
        if getattr(self, "name", None) in METHODS:  # an ad-hoc subclass outside the catalogue declares nothing
            METHODS.spec(self.name).check_options(options)
        #: task of the images being fused ("ivif", "mif", "mff", "mef"); the workflow passes the dataset's
        #: task, so methods with per-task behaviour (weights, input order) need no extra config
        self.task = task
        self.options = dict(options)

    @abstractmethod
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Fuse two registered gray images (HxW float32 in [0, 1]) into HxW float32 in [0, 1]."""


class LearnedMethod(FusionMethod):
    """A method with weights. Weights are loaded in exactly one of two ways, after construction:
    :meth:`load` (``model.pt`` written by fusebench training) or :meth:`load_official` (the authors' file);
    ``fuse`` before either raises a ``RuntimeError``.

    Methods that run one network keep it in ``net`` (None until loaded) and give its class as ``network``
    (with ``network_kind`` naming it in load errors); :meth:`_set_net` then loads a state dict into a fresh
    instance. Methods with several networks or another layout keep their own and use :meth:`_require`.
    """

    learned: ClassVar[bool] = True
    #: the class of the network ``fuse`` runs (built with no arguments by :meth:`_set_net`)
    network: ClassVar[type[nn.Module] | None] = None
    #: what load errors call a state dict of ``network``, e.g. "a FusionGAN generator"
    network_kind: ClassVar[str] = "a state dict of the network"
    #: the network's methods (or submodules) that ``fuse`` and ``fuse_official`` call: what ``accel`` sets up
    net_entries: ClassVar[tuple[str, ...]] = ("forward",)

    def __init__(self, task: str | None = None, accel: Accel | None = None, **options: Any) -> None:
        super().__init__(task, **options)
        #: performance settings applied to each network when it is loaded (:mod:`fusebench.accel`)
        self.accel = accel or Accel()
        #: where the loaded network runs (set when weights are loaded)
        self.device = torch.device("cpu")
        #: the network ``fuse`` runs; None until :meth:`load` or :meth:`load_official`
        self.net: nn.Module | None = None

    @abstractmethod
    def trainer(self, device: str, **train_options: Any) -> Trainer:
        """A fresh trainer for this method (model(s), optimiser(s), loss).

        ``train_options`` are the trainer options of the method's recipe (``METHODS.spec(name).training(...)``,
        the catalogue's paper recipe with the config's overrides) plus ``steps``, the length of the run (for
        learning-rate schedules and stage boundaries), and ``patch_size``, the side of the training patches
        (for networks sized by their input, such as fully connected discriminators).
        """

    @abstractmethod
    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load weights written by this method's trainer (``weights_only=True``)."""

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the authors' published weights; methods without any raise a clear error."""
        raise NotImplementedError(f"{self.name} has no official weights in fusebench")

    def _set_net(self, state: Mapping[str, Any], device: str, source: Path) -> None:
        """Load ``state`` (strict) into a fresh ``network`` and make it ``net``, on ``device``, in eval mode."""
        if self.network is None:
            raise NotImplementedError(f"{self.name} does not set LearnedMethod.network")
        net = self.network()
        missing = set(net.state_dict()) - set(state)
        if missing:
            raise ValueError(f"{self.name}: {source} is not {self.network_kind} (missing {sorted(missing)[:3]})")
        try:
            net.load_state_dict(dict(state), strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{self.name}: {source} does not hold {self.network_kind}: {exc}") from None
        self.net = self._to_device(net, device)

    def _to_device(self, net: N, device: str, entries: tuple[str, ...] | None = None) -> N:
        """``net`` moved to ``device`` in eval mode and set up by ``accel`` (its ``entries``, default
        ``net_entries``, are the calls that run under its settings); ``device`` becomes the method's device."""
        self.device = torch.device(device)
        return self.accel.network(net.to(self.device).eval(), self.device, entries or self.net_entries)

    def _require(self, net: N | None) -> N:
        """``net``, or, when no weights were loaded into it yet, the error ``fuse`` gives in every learned
        method."""
        if net is None:
            raise RuntimeError(f"{self.name}: no weights loaded; call load(model.pt) or load_official(path) first")
        return net

    def to_tensor(self, *images: np.ndarray) -> torch.Tensor:
        """HxW images -> a 1 x len(images) x H x W float32 tensor on the method's device."""
        return torch.from_numpy(np.ascontiguousarray(np.stack(images), dtype=np.float32))[None].to(self.device)


def combine(m: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a m + b (1 - m)`` for HxW maps and HxW or HxWxC images (the map broadcasts over channels)."""
    m = np.asarray(m, dtype=np.float32)
    a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    if a.ndim == 3:
        m = m[..., None]
    return (a * m + b * (1.0 - m)).astype(np.float32)


class DecisionMapMethod(LearnedMethod):
    """A multi-focus method whose output is ``F = a m + b (1 - m)`` for a decision map ``m``.

    ``decision_map(a, b)`` returns ``m`` (HxW float32 in [0, 1], the weight of source ``a``) for two gray
    images, so colour sources can be fused with the same map (``combine(m, rgb_a, rgb_b)``) instead of fusing
    Y by the map and chroma by a separate rule.
    """

    def decision_map(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a, b = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
        return np.clip(combine(self.decision_map(a, b), a, b), 0.0, 1.0)
