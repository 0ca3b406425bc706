"""Method registry: every fusion method registers its class here under its config name."""

from __future__ import annotations

from typing import Any

from .base import METHODS, FusionMethod, LearnedMethod


def create(name: str, **options: Any) -> FusionMethod:
    """Instantiate registered method ``name`` with config ``options``."""
    return METHODS.get(name)(**options)


# Importing the modules registers their methods.
from . import (  # noqa: E402,F401
    cddfuse,
    classical,
    crossfuse,
    densefuse,
    fusegan,
    fusiongan,
    ifcnn,
    mffgan,
    mfifgan,
    pmgi,
    refusion,
    swinfusion,
    tardal,
    ufgan,
)

__all__ = ["METHODS", "FusionMethod", "LearnedMethod", "create"]
