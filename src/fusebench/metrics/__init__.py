"""Fusion quality metrics: one numpy implementation per metric, parameterised by named conventions.

``METRICS`` (registry of :class:`Metric`) and ``CONVENTIONS`` (registry of :class:`Convention`) are the
extension points: a new metric is one ``@register_metric`` function, a new convention (another codebase's
definitions) is one :class:`Convention` entry with parameter overrides. :func:`compute` scores arrays,
:func:`score_folders` scores folders of images.
"""

from __future__ import annotations

from . import features, information, perceptual, similarity  # noqa: F401  (register the metrics)
from .api import PairingError, compute, score_folders
from .base import (
    CONVENTIONS,
    METRICS,
    Convention,
    Images,
    Metric,
    clear_source_memo,
    per_source,
    register_metric,
)
from .conventions import VIFB, VIFB_NAMES

__all__ = [
    "CONVENTIONS",
    "METRICS",
    "VIFB",
    "VIFB_NAMES",
    "Convention",
    "Images",
    "Metric",
    "PairingError",
    "clear_source_memo",
    "compute",
    "per_source",
    "register_metric",
    "score_folders",
]
