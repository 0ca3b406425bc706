"""The pieces every metric shares: the prepared image triplet, the metric and convention records, registries.

A *metric* is one numpy implementation with keyword parameters (window, log base, pair reduction...). A
*convention* is a parameter set: how the input arrays are scaled and how colour is handled before any metric
runs (:meth:`Convention.prepare`), plus per-metric keyword overrides. Reproducing another codebase's numbers
(VIFB's MATLAB, CDDFuse's Python evaluator...) is therefore a new :class:`Convention` entry, never a copy of a
metric.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from ..registry import Registry


@dataclass(frozen=True)
class Images:
    """A prepared fused/source triplet.

    Each image is a float64 stack of shape (C, H, W) on the scale ``0..value_range``. C is 1 for a gray image
    and ``channels`` (3) for a colour one; metrics rely on numpy broadcasting, so a gray source is used for
    every channel of a colour fused image (and vice versa) without being copied. Per-channel scores are
    averaged over ``channels``.
    """

    fused: np.ndarray
    a: np.ndarray
    b: np.ndarray
    channels: int
    value_range: float
    #: source-only intermediates shared by every triplet with the same sources (see :func:`per_source`)
    memo: dict[Any, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def shape(self) -> tuple[int, int]:
        return self.fused.shape[1], self.fused.shape[2]


def per_source(images: Images, key: Any, func: Callable[[np.ndarray], Any]) -> tuple[Any, Any]:
    """``(func(images.a), func(images.b))``, remembered for these sources.

    ``key`` must name the computation and every parameter it depends on. Scoring several fused images
    against the same sources (methods compared on one pair) computes source-only work once. The memo is
    keyed by the sources' content, holds the most recent pair only, and its arrays are read-only.
    """
    memo = images.memo
    if memo is None:
        return func(images.a), func(images.b)
    if key not in memo:
        results = (func(images.a), func(images.b))
        for result in results:
            for array in result if isinstance(result, tuple) else (result,):
                if isinstance(array, np.ndarray):
                    array.flags.writeable = False
        memo[key] = results
    return memo[key]


_SOURCE_MEMOS: OrderedDict[tuple[Any, ...], dict[Any, Any]] = OrderedDict()
SOURCE_MEMO_PAIRS = 1


def _source_memo(key: tuple[Any, ...]) -> dict[Any, Any]:
    memo = _SOURCE_MEMOS.pop(key, None)
    if memo is None:
        memo = {}
        while len(_SOURCE_MEMOS) >= SOURCE_MEMO_PAIRS:
            _SOURCE_MEMOS.popitem(last=False)
    _SOURCE_MEMOS[key] = memo
    return memo


def clear_source_memo() -> None:
    """Forget the remembered source intermediates (they are content-addressed, so this is never needed for
    correctness; it only frees their memory)."""
    _SOURCE_MEMOS.clear()


def _digest(array: np.ndarray) -> tuple[Any, ...]:
    contiguous = np.ascontiguousarray(array)
    return contiguous.dtype.str, contiguous.shape, hashlib.blake2b(contiguous.data, digest_size=16).digest()


@dataclass(frozen=True)
class Metric:
    """One registered metric. ``func(images, **params) -> float``; ``params`` come from the convention."""

    name: str
    func: Callable[..., float]
    higher_is_better: bool
    reference: str
    description: str
    uses_sources: bool = True

    def __call__(self, images: Images, **params: Any) -> float:
        return float(self.func(images, **params))

    def parameters(self) -> dict[str, Any]:
        """The keyword parameters of the implementation with their defaults."""
        sig = inspect.signature(self.func)
        return {
            p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
        }


METRICS: Registry[Metric] = Registry("metric")


def register_metric(
    name: str, *, higher_is_better: bool, reference: str, uses_sources: bool = True
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: register ``func`` as metric ``name``; its docstring (the formula) is the description."""

    def decorator(func: Callable[..., float]) -> Callable[..., float]:
        description = inspect.cleandoc(func.__doc__ or "")
        if not description:
            raise ValueError(f"metric {name}: the implementation needs a docstring giving its formula")
        METRICS.add(name, Metric(name, func, higher_is_better, reference, description, uses_sources))
        return func

    return decorator


@dataclass(frozen=True)
class Convention:
    """How images are prepared and how each metric is parameterised, e.g. to reproduce one codebase.

    * ``input_range``: the value of full scale in *float* input arrays (255: floats hold 0-255 values;
      1: floats are in [0, 1]). uint8 arrays always mean 0-255.
    * ``value_range``: the scale the metrics work on (255 in VIFB; 1 for a [0, 1] convention). Histogram
      metrics quantise to 256 levels of this range; PSNR/SSIM use it as their peak/dynamic range.
    * ``color``: ``"per_channel"`` scores a colour image per RGB channel and averages the channel scores,
      using a gray image for every channel (VIFB); ``"luma"`` converts colour images to gray with
      ``luma_weights`` (rounded to integers first when ``luma_round``, like OpenCV's uint8 ``cvtColor``).
    * ``params``: per-metric keyword overrides of the implementations' defaults (log base, windows, sum or
      mean over the two sources, constants...).
    """

    name: str
    description: str
    reference: str = ""
    input_range: float = 255.0
    value_range: float = 255.0
    color: Literal["per_channel", "luma"] = "per_channel"
    luma_weights: tuple[float, float, float] = (0.299, 0.587, 0.114)
    luma_round: bool = False
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.params.items()})
        object.__setattr__(self, "params", frozen)  # registered conventions cannot be edited in place
        if self.color not in ("per_channel", "luma"):
            raise ValueError(
                f"convention {self.name}: color must be 'per_channel' or 'luma', not {self.color!r}"
            )
        if self.input_range <= 0 or self.value_range <= 0:
            raise ValueError(f"convention {self.name}: input_range and value_range must be positive")

    def metric_params(self, metric: str) -> dict[str, Any]:
        return dict(self.params.get(metric, {}))

    def derive(self, name: str, description: str, **changes: Any) -> Convention:
        """A new convention from this one; ``params`` in ``changes`` are merged per metric, not replaced."""
        params = {k: dict(v) for k, v in self.params.items()}
        for metric, overrides in changes.pop("params", {}).items():
            params.setdefault(metric, {}).update(overrides)
        return dataclasses.replace(self, name=name, description=description, params=params, **changes)

    def prepare(self, fused: np.ndarray, source_a: np.ndarray, source_b: np.ndarray) -> Images:
        """Check shapes and dtypes, scale to ``value_range``, lay out the channels (see :class:`Images`)."""
        stacks = [
            self._stack(fused, "fused"),
            self._stack(source_a, "source_a"),
            self._stack(source_b, "source_b"),
        ]
        sizes = {what: s.shape[1:] for what, s in zip(("fused", "source_a", "source_b"), stacks, strict=True)}
        if len(set(sizes.values())) != 1:
            detail = ", ".join(f"{k} {h}x{w}" for k, (h, w) in sizes.items())
            raise ValueError(f"images differ in size: {detail}")
        channels = max(s.shape[0] for s in stacks)
        layout = (self.input_range, self.value_range, self.color, self.luma_weights, self.luma_round)
        memo = _source_memo((layout, _digest(np.asarray(source_a)), _digest(np.asarray(source_b))))
        return Images(stacks[0], stacks[1], stacks[2], channels, float(self.value_range), memo)

    def _stack(self, image: np.ndarray, what: str) -> np.ndarray:
        array = np.asarray(image)
        if array.ndim == 3 and array.shape[2] == 1:
            array = array[..., 0]
        if array.ndim == 3 and array.shape[2] == 3:
            if np.array_equal(array[..., 0], array[..., 1]) and np.array_equal(array[..., 0], array[..., 2]):
                array = array[..., 0]  # RGB-encoded gray is gray (as fusebench.imageio.read_uint8 does)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
            raise ValueError(f"{what}: expected an HxW or HxWx3 image, got shape {array.shape}")
        if min(array.shape[:2]) < 2:
            raise ValueError(f"{what}: image of shape {array.shape} is too small to score")
        if array.dtype == np.uint8:
            scale = self.value_range / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            if not np.isfinite(array).all():
                raise ValueError(f"{what}: image contains NaN or infinity")
            scale = self.value_range / self.input_range
            top = float(array.max())
            if self.input_range > 1 and 0 < top <= 1:
                warnings.warn(
                    f"{what}: float image with maximum {top:.3g} but convention {self.name!r} expects "
                    f"values on 0-{self.input_range:g}; pass uint8 or 0-{self.input_range:g} floats",
                    stacklevel=4,
                )
        else:
            raise ValueError(f"{what}: expected uint8 or float pixels, got {array.dtype}")
        values = array.astype(np.float64)
        if scale != 1.0:
            values = values * scale
        if values.ndim == 2:
            return values[None]
        if self.color == "luma":
            gray = values @ np.asarray(self.luma_weights, dtype=np.float64)
            if self.luma_round:  # to the nearest of 256 levels, like a uint8 conversion
                levels = 255.0 / self.value_range
                gray = np.floor(gray * levels + 0.5) / levels
            return gray[None]
        return np.ascontiguousarray(values.transpose(2, 0, 1))


CONVENTIONS: Registry[Convention] = Registry("convention")
