"""Fusion quality metrics: one numpy implementation per metric, parameterised by named conventions.

``METRICS`` (registry of :class:`Metric`) and ``CONVENTIONS`` (registry of :class:`Convention`) are the
extension points: a new metric is one ``@register_metric`` function, a new convention (another codebase's
definitions) is one :class:`Convention` entry with parameter overrides. :func:`compute` scores arrays or
torch tensors (batched, on CPU or CUDA; the hot metrics have batched torch implementations registered with
``register_torch``), :func:`score_folders` scores folders of images. docs/metrics.md documents every metric
and convention.
"""

from __future__ import annotations

# The torch twins (metrics._torch) are imported on first use (Metric.has_torch), so that listing and validating
# metrics (the workflow's DAG) does not import torch.
from . import features, fmi, information, perceptual, similarity, vif  # noqa: F401  (register the metrics)
from .api import PairingError, compute, score_folders
from .base import (
    CONVENTIONS,
    METRICS,
    Convention,
    Images,
    Metric,
    check_torch_twins,
    clear_source_memo,
    per_source,
    register_metric,
    register_torch,
)
from .conventions import CDDFUSE, FUSEBENCH, VIFB, VIFB_NAMES

check_torch_twins()

__all__ = [
    "CDDFUSE",
    "CONVENTIONS",
    "FUSEBENCH",
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
    "register_torch",
    "score_folders",
]
