"""Where the workflow puts its results (a contract between the workflow rules and the report).

::

    results/data/<dataset>/test/<modality>/<pair>.<ext>     source images
    results/fused/<dataset>/<method>/<pair>.png             fused images
    results/fused/<dataset>/<method>/runtime.csv            columns: image, seconds
    results/fused/<dataset>/<method>/fusion.json            method, protocol, weights (optional)
    results/metrics/<dataset>/<method>.csv                  columns: image, <metric>...
    results/models/<method>/<train_dataset>/loss.csv        training log: step, <loss>... (learned methods)

Every missing input is reported by :class:`MissingResultError`, which names the file and the rule that
writes it.
"""

from __future__ import annotations

from pathlib import Path

#: which workflow rule writes each kind of result (named in error messages)
PRODUCERS: dict[str, str] = {
    "data": "download",
    "fused": "fuse",
    "runtime": "fuse",
    "metrics": "metrics",
    "loss": "train",
}


class MissingResultError(FileNotFoundError):
    """A result the report needs does not exist; the message names the file and the rule producing it."""

    def __init__(self, path: Path, kind: str, what: str) -> None:
        rule = PRODUCERS.get(kind, kind)
        super().__init__(
            f"{path}: missing {what}. It is written by the workflow rule '{rule}'; "
            f"run the workflow (e.g. `snakemake {path}`) before building the report."
        )
        self.path = path
        self.kind = kind


def source_dir(results: Path, dataset: str, modality: str) -> Path:
    return Path(results) / "data" / dataset / "test" / modality


def fused_dir(results: Path, dataset: str, method: str) -> Path:
    return Path(results) / "fused" / dataset / method


def fused_image(results: Path, dataset: str, method: str, pair: str) -> Path:
    return fused_dir(results, dataset, method) / f"{pair}.png"


def runtime_csv(results: Path, dataset: str, method: str) -> Path:
    return fused_dir(results, dataset, method) / "runtime.csv"


def fusion_json(results: Path, dataset: str, method: str) -> Path:
    """Written by ``fusebench fuse``: method, protocol and weights of the fused images."""
    return fused_dir(results, dataset, method) / "fusion.json"


def metrics_csv(results: Path, dataset: str, method: str) -> Path:
    return Path(results) / "metrics" / dataset / f"{method}.csv"


def models_dir(results: Path, method: str) -> Path:
    return Path(results) / "models" / method


def loss_csv(results: Path, method: str, train_dataset: str) -> Path:
    return models_dir(results, method) / train_dataset / "loss.csv"


def loss_logs(results: Path, method: str) -> dict[str, Path]:
    """``train_dataset -> loss.csv`` for every training run of ``method`` that has a log (maybe none)."""
    folder = models_dir(results, method)
    if not folder.is_dir():
        return {}
    return {p.parent.name: p for p in sorted(folder.glob("*/loss.csv")) if p.is_file()}
