"""Rows of reference/official-outputs/<method>/outputs.csv, with their sources in fusebench's (a, b) order.

The CSVs always list ir / CT-or-PET / ``a`` as ``source_a``; fusebench's MIF datasets list ``mri`` first, so the
``fuse_official(path_a, path_b)`` of a method receives the two sources in its dataset's modality order."""

from __future__ import annotations

import csv
from pathlib import Path

from conftest import SHARED

from fusebench.datasets import DATASETS


def official_rows(method: str, shared: Path = SHARED) -> list[dict[str, str]]:
    """Every row of the method's outputs.csv (empty without the data bundle: the ``shared`` fixture skips)."""
    path = shared / "reference" / "official-outputs" / method / "outputs.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def fusebench_sources(shared: Path, row: dict[str, str]) -> tuple[Path, Path]:
    """The row's two source files as fusebench's (a, b): ordered by the dataset's registered modalities (the
    modality is the source's folder name, e.g. ``Harvard-MRI-CT/test/ct/16009.png``)."""
    modalities = DATASETS.get(row["dataset"]).modalities
    paths = sorted((Path(row[k]) for k in ("source_a", "source_b")), key=lambda p: modalities.index(p.parent.name))
    return shared / "datasets" / paths[0], shared / "datasets" / paths[1]
