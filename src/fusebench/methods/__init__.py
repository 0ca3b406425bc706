"""Fusion methods: the catalogue (names, tasks, options, training recipes; torch-free) and the method classes.

``METHODS`` lists every method of ``catalog.yaml``; ``METHODS.get(name)`` imports the method's module (and torch)
on first use, so the workflow can build its DAG and validate a config without importing any network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .catalog import METHODS, MethodSpec, OptionError, catalog

if TYPE_CHECKING:
    from .base import FusionMethod, LearnedMethod


def create(name: str, **options: Any) -> FusionMethod:
    """Instantiate registered method ``name`` with config ``options`` (and ``task``); unknown options or bad
    values raise :class:`OptionError` naming the valid ones."""
    return METHODS.get(name)(**options)


def __getattr__(name: str) -> Any:
    # The base classes import torch: only when asked for.
    if name in ("FusionMethod", "LearnedMethod"):
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "FusionMethod", "LearnedMethod", "MethodSpec", "OptionError", "catalog", "create"]
