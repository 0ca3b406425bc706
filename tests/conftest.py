"""Shared test fixtures: the real data bundle beside the repository (../shared)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from slurm_cluster import slurm_cluster  # noqa: F401  (the shared SLURM cluster fixture)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FUSEBENCH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """../shared: datasets (the offline mirror), official weights and reference values."""
    if not (SHARED / "datasets" / "manifest.csv").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"the data bundle is missing at {SHARED}; CI needs ../shared beside the repository")
        pytest.skip(f"no data bundle at {SHARED} (set FUSEBENCH_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def mirror(shared: Path) -> Path:
    return shared / "datasets"
