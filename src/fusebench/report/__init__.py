"""The static HTML benchmark report: leaderboards, metric plots, example images, training curves."""

from __future__ import annotations

from .paths import PRODUCERS, MissingResultError
from .render import applicable_methods, infer_modalities, render_report

__all__ = ["PRODUCERS", "MissingResultError", "applicable_methods", "infer_modalities", "render_report"]
