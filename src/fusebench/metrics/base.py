"""The pieces every metric shares: the prepared image triplet, the metric and convention records, registries.

A *metric* is one numpy implementation with keyword parameters (window, log base, pair reduction...). A
*convention* is a parameter set: how the input arrays are scaled and how colour is handled before any metric
runs (:meth:`Convention.prepare`), plus per-metric keyword overrides. Reproducing another codebase's numbers
(VIFB's MATLAB, CDDFuse's Python evaluator...) is therefore a new :class:`Convention` entry, never a copy of a
metric.
"""

from __future__ import annotations

import dataclasses
import functools
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
    #: every value is an integer 0..255 (value range 255 and 8-bit or rounded input): exact integer
    #: arithmetic may be used (e.g. SSIM's box sums)
    levels: bool = False
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

    @property
    def has_torch(self) -> bool:
        """Whether a batched torch implementation exists (others run the numpy one image by image)."""
        from . import _torch  # noqa: F401  (registers the torch twins; imports torch, so only when asked)

        return self.name in TORCH_IMPLEMENTATIONS

    def parameters(self) -> dict[str, Any]:
        """The keyword parameters of the implementation with their defaults."""
        sig = inspect.signature(self.func)
        return {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}


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
      ``luma_weights``, computed in float64 or, with ``luma_arithmetic="opencv_float32"``, exactly as OpenCV's
      ``cvtColor(float32 BGR, COLOR_BGR2GRAY)`` does (fused multiply-adds in float32), then rounded to one of
      256 levels when ``luma_round`` (True or "half_up": half away from zero, like OpenCV's uint8
      ``cvtColor``; "half_even": like ``np.round``).
    * ``round_input``: round every float input to the nearest of the 256 levels of 0-255 (half to even,
      clipped), before the colour handling: the 8-bit image a float output would be saved as (exactly
      ``fusebench.imageio.to_uint8``), so that scoring an array equals scoring its PNG. No-op on uint8.
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
    luma_round: bool | Literal["half_up", "half_even"] = False
    luma_arithmetic: Literal["float64", "opencv_float32"] = "float64"
    round_input: bool = False
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        frozen = MappingProxyType({k: MappingProxyType(dict(v)) for k, v in self.params.items()})
        object.__setattr__(self, "params", frozen)  # registered conventions cannot be edited in place
        if self.color not in ("per_channel", "luma"):
            raise ValueError(f"convention {self.name}: color must be 'per_channel' or 'luma', not {self.color!r}")
        if self.luma_round not in (False, True, "half_up", "half_even"):
            raise ValueError(
                f"convention {self.name}: luma_round must be a bool, 'half_up' or 'half_even', not {self.luma_round!r}"
            )
        if self.luma_arithmetic not in ("float64", "opencv_float32"):
            raise ValueError(
                f"convention {self.name}: luma_arithmetic must be 'float64' or 'opencv_float32', "
                f"not {self.luma_arithmetic!r}"
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
        prepared = [
            self._stack(fused, "fused"),
            self._stack(source_a, "source_a"),
            self._stack(source_b, "source_b"),
        ]
        stacks = [values for values, _ in prepared]
        levels = self.value_range == 255.0 and all(integral for _, integral in prepared)
        sizes = {what: s.shape[1:] for what, s in zip(("fused", "source_a", "source_b"), stacks, strict=True)}
        if len(set(sizes.values())) != 1:
            detail = ", ".join(f"{k} {h}x{w}" for k, (h, w) in sizes.items())
            raise ValueError(f"images differ in size: {detail}")
        channels = max(s.shape[0] for s in stacks)
        layout = self.layout()
        memo = _source_memo((layout, _digest(np.asarray(source_a)), _digest(np.asarray(source_b))))
        return Images(stacks[0], stacks[1], stacks[2], channels, float(self.value_range), levels, memo)

    def layout(self) -> tuple[Any, ...]:
        """Everything :meth:`prepare` depends on (the key of remembered source intermediates)."""
        return (
            self.input_range,
            self.value_range,
            self.color,
            self.luma_weights,
            self.luma_round,
            self.luma_arithmetic,
            self.round_input,
        )

    def _stack(self, image: np.ndarray, what: str) -> tuple[np.ndarray, bool]:
        """(C, H, W) float64 stack on 0..value_range, and whether its values are whole 8-bit levels."""
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
        integral = array.dtype == np.uint8
        if array.dtype == np.uint8:
            scale = self.value_range / 255.0
        elif np.issubdtype(array.dtype, np.floating):
            if not np.isfinite(array).all():
                raise ValueError(f"{what}: image contains NaN or infinity")
            scale = self.value_range / self.input_range
            top = float(array.max())
            if (self.input_range > 1 and 0 < top <= 1) or (self.input_range <= 1 and top > 1.5):
                warnings.warn(
                    f"{what}: float image with maximum {top:.3g} but convention {self.name!r} expects "
                    f"values on 0-{self.input_range:g}; pass uint8 or 0-{self.input_range:g} floats",
                    stacklevel=4,
                )
        else:
            raise ValueError(f"{what}: expected uint8 or float pixels, got {array.dtype}")
        if array.ndim == 3 and self.color == "luma" and array.dtype == np.uint8 and self.value_range == 255.0:
            values = luma_uint8(array, self.luma_weights, self.luma_arithmetic, self.luma_round)
            return values[None], bool(self.luma_round)
        values = array.astype(np.float64)
        if scale != 1.0:
            values = values * scale
        if self.round_input and not integral:  # the 8-bit image it would be saved as, before any colour work
            values = round_levels(values, self.value_range)
            integral = True
        if values.ndim == 3 and self.color == "luma":
            values = luma(values, self.value_range, self.luma_weights, self.luma_arithmetic, self.luma_round)
            integral = integral and bool(self.luma_round)
        if values.ndim == 2:
            return values[None], integral
        return np.ascontiguousarray(values.transpose(2, 0, 1)), integral


def luma(
    rgb: np.ndarray,
    value_range: float,
    weights: tuple[float, float, float] = (0.299, 0.587, 0.114),
    arithmetic: str = "float64",
    rounding: bool | str = False,
) -> np.ndarray:
    """Gray ``weights`` . (R, G, B) of an HxWx3 float64 image on ``0..value_range`` (see :class:`Convention`)."""
    if arithmetic == "opencv_float32":
        # OpenCV 4.x float BGR->gray: d = fma(R, cr, fma(G, cg, B * cb)) in float32. On 0-255 values the
        # products with float32 coefficients and their sums are exact in float64, so each step computed in
        # float64 and rounded once to float32 is the fused multiply-add.
        scale = 255.0 / value_range
        r, g, b = (rgb[..., k] * scale for k in range(3))
        cr, cg, cb = (float(np.float32(w)) for w in weights)
        t = (b * cb).astype(np.float32).astype(np.float64)
        t = (g * cg + t).astype(np.float32).astype(np.float64)
        gray = (r * cr + t).astype(np.float32).astype(np.float64) / scale
    else:  # elementwise, left to right: the torch path computes the same roundings
        gray = rgb[..., 0] * weights[0] + rgb[..., 1] * weights[1] + rgb[..., 2] * weights[2]
    if rounding:
        levels = 255.0 / value_range
        if rounding == "half_even":
            gray = np.rint(gray * levels) / levels
        else:  # True / "half_up": to the nearest of 256 levels, like a uint8 conversion
            gray = np.floor(gray * levels + 0.5) / levels
    return gray


@functools.lru_cache(maxsize=8)
def _luma_tables(weights: tuple[float, float, float], arithmetic: str) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables for 8-bit luma giving :func:`luma`'s exact roundings: for OpenCV's float32 arithmetic
    (R -> R cr, G * 256 + B -> fma(G, cg, B cb)), else (R * 256 + G -> R w0 + G w1, B -> B w2), float64."""
    v = np.arange(256, dtype=np.float64)
    if arithmetic == "opencv_float32":
        cr, cg, cb = (float(np.float32(w)) for w in weights)
        t = (v * cb).astype(np.float32).astype(np.float64)
        return v * cr, (v[:, None] * cg + t[None, :]).astype(np.float32).astype(np.float64).ravel()
    return (v[:, None] * weights[0] + v[None, :] * weights[1]).ravel(), v * weights[2]


def luma_uint8(
    rgb: np.ndarray, weights: tuple[float, float, float], arithmetic: str, rounding: bool | str
) -> np.ndarray:
    """:func:`luma` of an 8-bit HxWx3 image on 0-255 by table lookups (the same roundings, fewer passes)."""
    single, pair = _luma_tables(tuple(float(w) for w in weights), arithmetic)
    if arithmetic == "opencv_float32":
        index = rgb[..., 1].astype(np.intp)
        index <<= 8
        index |= rgb[..., 2]
        gray = (single[rgb[..., 0]] + pair[index]).astype(np.float32).astype(np.float64)
    else:
        index = rgb[..., 0].astype(np.intp)
        index <<= 8
        index |= rgb[..., 1]
        gray = single[index] + pair[rgb[..., 2]]
    if rounding == "half_even":
        np.rint(gray, out=gray)
    elif rounding:
        gray += 0.5
        np.floor(gray, out=gray)
    return gray


def round_levels(values: np.ndarray, value_range: float) -> np.ndarray:
    """The nearest of the 256 levels of ``0..value_range`` (half to even), clipped: an 8-bit image."""
    levels = 255.0 / value_range
    rounded = np.clip(np.rint(values * levels), 0.0, 255.0)
    return rounded / levels if levels != 1.0 else rounded


CONVENTIONS: Registry[Convention] = Registry("convention")
"""Registered conventions: parameter sets reproducing one codebase's numbers with the shared metrics.

``vifb`` (VIFB's MATLAB code), ``cddfuse`` (MMIF-CDDFuse's Python evaluator) and ``fusebench`` (the
project's documented default) are defined in :mod:`fusebench.metrics.conventions`; docs/metrics.md describes
them.
"""

#: metric name -> batched torch implementation ``func(batch, **params) -> Tensor (N,)`` (``metrics._torch``)
TORCH_IMPLEMENTATIONS: dict[str, Callable[..., Any]] = {}


def register_torch(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``func`` is the batched torch implementation of the registered metric ``name``; it takes
    the same keyword parameters as the numpy implementation (the reference it is tested against)."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        if name in TORCH_IMPLEMENTATIONS:
            raise ValueError(f"metric {name}: torch implementation registered twice")
        TORCH_IMPLEMENTATIONS[name] = func
        return func

    return decorator


def check_torch_twins() -> None:
    """Every torch implementation takes exactly the keyword parameters (names and defaults) of the numpy
    metric it twins, so that a convention's parameters mean the same on both backends; raises otherwise.

    Called when :mod:`fusebench.metrics` is imported, after every metric is registered."""
    problems = []
    for name, func in TORCH_IMPLEMENTATIONS.items():
        if name not in METRICS:
            problems.append(f"{name}: a torch implementation without a numpy metric")
            continue
        sig = inspect.signature(func)
        torch_params = {p.name: p.default for p in sig.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY}
        numpy_params = METRICS.get(name).parameters()
        if torch_params != numpy_params:
            problems.append(f"{name}: torch {torch_params} != numpy {numpy_params}")
    if problems:
        raise TypeError("torch metric implementations differ from their numpy metrics: " + "; ".join(problems))
