"""The one interface every fusion method implements, learned or not.

A method fuses two *gray* images (float32 HxW in [0, 1]) into one; colour handling happens once, outside
methods, in :mod:`fusebench.fuse`. Learned methods also provide a :class:`~fusebench.training.Trainer` and
know how to load the checkpoints it writes (and, where published, the authors' official weights).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..registry import Registry
from ..training import Trainer


class FusionMethod(ABC):
    """A configured fusion method. ``options`` come from the config's entry for the method."""

    #: registry name, e.g. "densefuse"
    name: ClassVar[str]
    #: tasks the method is meant for ("ivif", "mif", "mff", "mef")
    tasks: ClassVar[tuple[str, ...]] = ("ivif", "mif", "mff", "mef")
    #: whether the method has weights to train or load
    learned: ClassVar[bool] = False
    #: one-line description and reference shown in the report
    description: ClassVar[str] = ""

    def __init__(self, task: str | None = None, **options: Any) -> None:
        #: task of the images being fused ("ivif", "mif", "mff", "mef"); the workflow passes the dataset's
        #: task, so methods with per-task behaviour (weights, input order) need no extra config
        self.task = task
        self.options = dict(options)

    @abstractmethod
    def fuse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Fuse two registered gray images (HxW float32 in [0, 1]) into HxW float32 in [0, 1]."""


class LearnedMethod(FusionMethod):
    learned: ClassVar[bool] = True
    #: training defaults from the paper; the config may override any of them
    train_defaults: ClassVar[Mapping[str, Any]] = {}

    @abstractmethod
    def trainer(self, device: str, **train_options: Any) -> Trainer:
        """A fresh trainer for this method (model(s), optimiser(s), loss).

        ``train_options`` are the config's trainer options plus ``steps``, the length of the run (for
        learning-rate schedules and stage boundaries).
        """

    @abstractmethod
    def load(self, checkpoint: Path, device: str = "cpu") -> None:
        """Load weights written by this method's trainer (``weights_only=True``)."""

    def load_official(self, weights: Path, device: str = "cpu") -> None:
        """Load the authors' published weights; methods without any raise a clear error."""
        raise NotImplementedError(f"{self.name} has no official weights in fusebench")


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


METHODS: Registry[type[FusionMethod]] = Registry("method")
