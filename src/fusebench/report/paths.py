"""Where the workflow puts its results (a contract between the workflow rules and the report).

::

    results/data/<dataset>/test/<modality>/<pair>.<ext>     source images
    results/fused/<dataset>/<method>/<pair>.png             fused images
    results/fused/<dataset>/<method>/runtime.csv            columns: image, seconds
    results/fused/<dataset>/<method>/fusion.json            what the fuse step ran (protocol, weights, device)
    results/metrics/<dataset>/<method>.csv                  columns: image, <metric>... (the main convention)
    results/metrics-by-convention/<convention>/<dataset>/<method>.csv   the same under another convention
    results/models/<method>/<train_dataset>/loss.csv        training log: step, <loss>... (learned methods)
    results/models/<method>/<train_dataset>/recipe.json     training settings actually used (when written)
    results/summary/plan.json                               what the run benchmarks (fusebench.report.plan)
    results/summary/*.csv, provenance.json                  `fusebench summarize` (fusebench.report.summary)

Every missing input is reported by :class:`MissingResultError`, which names the file and the rule that
writes it.
"""

from __future__ import annotations

from pathlib import Path

RECIPE = "recipe.json"

#: which workflow rule writes each kind of result (named in error messages)
PRODUCERS: dict[str, str] = {
    "data": "download",
    "fused": "fuse",
    "runtime": "fuse",
    "metrics": "metrics",
    "convention_metrics": "convention_metrics",
    "summary": "summarize",
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


def metrics_csv(results: Path, dataset: str, method: str) -> Path:
    return Path(results) / "metrics" / dataset / f"{method}.csv"


def convention_metrics_csv(results: Path, dataset: str, method: str, convention: str, main: str) -> Path:
    """The per-image scores under ``convention``; those of the ``main`` convention are the metrics rule's."""
    if convention == main:
        return metrics_csv(results, dataset, method)
    return Path(results) / "metrics-by-convention" / convention / dataset / f"{method}.csv"


def model_dir(results: Path, model: str) -> Path:
    """``model`` is ``<method>/<train_dataset>`` as in the plan's weights."""
    return Path(results) / "models" / model
