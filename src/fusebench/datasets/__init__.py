"""Benchmark datasets: the registry (registry.yaml), their files (files.csv) and a verified downloader.

>>> from fusebench.datasets import DATASETS, download_split, pairs
>>> spec = DATASETS.get("TNO")
>>> files = spec.files("test", max_pairs=2)                 # FileEntry rows, both modalities per pair
>>> download_split("TNO", "test", "results/data/TNO/test")  # mirror ($FUSEBENCH_MIRROR) or upstream
>>> pairs("results/data/TNO/test", spec.modalities)         # [(pair, ir_path, vi_path), ...]

Adding a dataset means adding one entry to registry.yaml (and, for new files, regenerating files.csv
with ``scripts/update_dataset_files.py``).
"""

from __future__ import annotations

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
)

#: every registered benchmark dataset, by name
DATASETS: Registry[DatasetSpec] = load_registry()

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
    "download_files",
    "download_split",
    "fetch_file",
    "file_table",
    "git_blob_sha1",
    "load_registry",
    "pairs",
]
