"""The benchmark report: summary tables (``fusebench summarize``) and the static HTML page rendered from them."""

from __future__ import annotations

from .paths import PRODUCERS, MissingResultError
from .plan import Plan, PlanError, plan_from_dict, read_plan
from .render import render_report
from .summary import summarize

__all__ = [
    "PRODUCERS",
    "MissingResultError",
    "Plan",
    "PlanError",
    "plan_from_dict",
    "read_plan",
    "render_report",
    "summarize",
]
