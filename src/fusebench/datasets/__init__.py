"""Benchmark datasets: the registry (registry.yaml), their files (files.csv) and a verified downloader.

>>> from fusebench.datasets import DATASETS, download_split, pairs
>>> spec = DATASETS.get("TNO")
>>> files = spec.files("test", max_pairs=2)                 # FileEntry rows, both modalities per pair
>>> download_split("TNO", "test", "results/data/TNO/test")  # mirror ($FUSEBENCH_MIRROR) or upstream
>>> pairs("results/data/TNO/test", spec.modalities)         # [(pair, ir_path, vi_path), ...]

Your own pairs need no package edit: define them in the config (``local_datasets``, see
``fusebench/schemas/dataset.schema.yaml``) and :func:`with_local` adds them to a registry. Adding a
dataset to the package means adding one entry to registry.yaml (and, for new bundle files, merging them
into files.csv with ``scripts/update_dataset_files.py``).
"""

from __future__ import annotations

from pathlib import Path

from ..registry import Registry
from .download import MARKER, MIRROR_ENV, download_files, download_split, fetch_file, git_blob_sha1, pairs
from .spec import (
    DEFAULT_UPSTREAM,
    SPLIT_NAMES,
    TASKS,
    UPSTREAM_ENV,
    DatasetError,
    DatasetSpec,
    FileEntry,
    SplitSpec,
    file_table,
    load_registry,
    local_spec,
    with_local,
)

#: every registered benchmark dataset, by name
DATASETS: Registry[DatasetSpec] = load_registry()


def describe(name: str, split_dir: str | Path) -> DatasetSpec:
    """The registered dataset ``name``, else the one a downloaded split folder describes (its dataset.json,
    written for config-defined and archive datasets)."""
    from .folders import read_description

    if name in DATASETS:
        return DATASETS.get(name)
    spec = read_description(Path(split_dir))
    if spec is None or spec.name != name:
        DATASETS.get(name)  # raises, listing the registered names
        raise DatasetError(f"{split_dir}: its dataset.json describes {spec.name if spec else None}, not {name}")
    return spec


__all__ = [
    "DATASETS",
    "DEFAULT_UPSTREAM",
    "MARKER",
    "MIRROR_ENV",
    "SPLIT_NAMES",
    "TASKS",
    "UPSTREAM_ENV",
    "DatasetError",
    "DatasetSpec",
    "FileEntry",
    "SplitSpec",
    "describe",
    "download_files",
    "download_split",
    "fetch_file",
    "file_table",
    "git_blob_sha1",
    "load_registry",
    "local_spec",
    "pairs",
    "with_local",
]
