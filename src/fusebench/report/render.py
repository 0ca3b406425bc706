"""Build the static HTML benchmark report from a results tree (see :mod:`fusebench.report.paths`).

The report is one ``index.html`` plus an ``assets/`` folder beside it (figures and image thumbnails), so
the folder can be copied or served as it is. Everything is written to a staging folder first and moved
into place at the end, so an interrupted run never leaves a half-written report under the final name.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from PIL import Image

from .. import __version__
from ..atomic import atomic_path
from ..imageio import ImageReadError, list_images, read_uint8
from . import paths
from .paths import MissingResultError

THUMBNAIL_SIDE = 256
ASSETS = "assets"
UP, DOWN = "\u2191", "\u2193"


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class MetricMeta:
    name: str
    #: None for a column fusebench.metrics does not know: shown, but neither ranked nor marked
    higher_is_better: bool | None
    description: str = ""
    reference: str = ""

    @property
    def arrow(self) -> str:
        return "" if self.higher_is_better is None else (UP if self.higher_is_better else DOWN)

    @property
    def tooltip(self) -> str:
        parts = [self.description or f"{self.name}: not a registered fusebench metric"]
        if self.higher_is_better is not None:
            parts.append("Higher is better." if self.higher_is_better else "Lower is better.")
        if self.reference:
            parts.append(f"Ref.: {self.reference}")
        return " ".join(parts)


def metric_meta(name: str) -> MetricMeta:
    """Direction, description and reference of metric ``name`` from :data:`fusebench.metrics.METRICS`."""
    from ..metrics import METRICS

    if name not in METRICS:
        return MetricMeta(name, None)
    m = METRICS.get(name)
    return MetricMeta(name, bool(m.higher_is_better), str(m.description), str(m.reference))


def method_meta(key: str, descriptions: Mapping[str, str] | None) -> tuple[str, bool | None]:
    """(description, learned) of config method ``key``; learned is None when the registry does not know it."""
    from ..methods import METHODS

    cls = METHODS.get(key) if key in METHODS else None
    description = (descriptions or {}).get(key) or (cls.description if cls is not None else "")
    return description, (bool(cls.learned) if cls is not None else None)


# --------------------------------------------------------------------------- formatting helpers


def slug(name: str) -> str:
    """A file-name-safe version of ``name``; unsafe names get a hash suffix so that slugs stay unique."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "x"
    if safe != name:
        safe = f"{safe}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"
    return safe


def decimals_for(values: Sequence[float]) -> int:
    """Decimals that show about four significant digits of the largest magnitude in a column."""
    finite = [abs(v) for v in values if v is not None and math.isfinite(v) and v != 0]
    if not finite:
        return 2
    return int(min(4, max(0, 3 - math.floor(math.log10(max(finite))))))


def _fmt(value: float, decimals: int) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{decimals}f}"


def _best_flags(values: Mapping[str, float], higher_is_better: bool | None) -> dict[str, str]:
    """method -> "best" / "second" / "" for the column ``values`` (ties share the mark; "second" only
    among three or more methods)."""
    if higher_is_better is None:
        return dict.fromkeys(values, "")
    finite = sorted({v for v in values.values() if v is not None and math.isfinite(v)}, reverse=higher_is_better)
    flags = {}
    for method, v in values.items():
        if v is None or not math.isfinite(v) or not finite:
            flags[method] = ""
        elif math.isclose(v, finite[0], rel_tol=1e-12, abs_tol=1e-15):
            flags[method] = "best"
        elif len(values) > 2 and len(finite) > 1 and math.isclose(v, finite[1], rel_tol=1e-12, abs_tol=1e-15):
            flags[method] = "second"
        else:
            flags[method] = ""
    return flags


def _hex(rgb: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in rgb[:3]))


def _rank_colour(rank: float, n: int) -> str:
    """Background for a mean rank: green (1) to white (n)."""
    if not math.isfinite(rank) or n <= 1:
        return ""
    t = (rank - 1) / (n - 1)
    return f"background-color: hsl(145, 55%, {round(62 + 36 * t)}%)"


# --------------------------------------------------------------------------- reading results


def method_protocol(results: Path, datasets: Sequence[str], method: str) -> str:
    """The protocol(s) that produced ``method``'s fused images, from the ``fusion.json`` files beside them
    ("\u2013" where none is recorded)."""
    found = set()
    for dataset in datasets:
        path = paths.fusion_json(results, dataset, method)
        if path.is_file():
            found.add(str(json.loads(path.read_text()).get("protocol", "?")))
    return ", ".join(sorted(found)) or "\u2013"


def read_metrics(results: Path, dataset: str, method: str) -> pd.DataFrame:
    path = _metrics_file(results, dataset, method)
    table = pd.read_csv(path, dtype={"image": str})
    if "image" not in table.columns:
        raise ValueError(f"{path}: no 'image' column (expected columns: image, <metric>...)")
    return table.set_index("image")


def read_runtime(results: Path, dataset: str, method: str) -> pd.Series:
    path = _runtime_file(results, dataset, method)
    table = pd.read_csv(path, dtype={"image": str})
    if "seconds" not in table.columns:
        raise ValueError(f"{path}: no 'seconds' column (expected columns: image, seconds)")
    return pd.to_numeric(table["seconds"], errors="coerce")


def _thumbnail(source: Path, target: Path) -> None:
    try:
        array = read_uint8(source)
    except ImageReadError as exc:
        raise ValueError(str(exc)) from exc
    image = Image.fromarray(array)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="JPEG", quality=88, optimize=True)


def _check_inputs(results: Path, dataset: str, methods: Sequence[str]) -> None:
    """Fail before any slow work when a metrics table or run-time log is missing."""
    for m in methods:
        _metrics_file(results, dataset, m)
        _runtime_file(results, dataset, m)


def _require(path: Path, kind: str, what: str) -> Path:
    if not path.is_file():
        raise MissingResultError(path, kind, what)
    return path


def _metrics_file(results: Path, dataset: str, method: str) -> Path:
    what = f"metrics of method '{method}' on dataset '{dataset}'"
    return _require(paths.metrics_csv(results, dataset, method), "metrics", what)


def _runtime_file(results: Path, dataset: str, method: str) -> Path:
    what = f"run times of method '{method}' on dataset '{dataset}'"
    return _require(paths.runtime_csv(results, dataset, method), "runtime", what)


def example_images(
    results: Path, dataset: str, methods: Sequence[str], modalities: tuple[str, str], count: int
) -> list[tuple[str, list[tuple[str, Path, str]]]]:
    """The first ``count`` pairs (by name) of the test sources: ``(pair, [(label, path, kind), ...])``
    with the two sources (kind "data") and then each method's fused image (kind "fused"), all checked
    to exist."""
    if count <= 0:
        return []
    a, b = modalities
    found = {}
    for mod in (a, b):
        folder = paths.source_dir(results, dataset, mod)
        if not folder.is_dir():
            raise MissingResultError(folder, "data", f"'{mod}' test images of dataset '{dataset}'")
        found[mod] = list_images(folder)
    chosen = []
    for pair in sorted(set(found[a]) & set(found[b]))[:count]:
        images = [(a, found[a][pair], "data"), (b, found[b][pair], "data")]
        for m in methods:
            fused = paths.fused_image(results, dataset, m, pair)
            _require(fused, "fused", f"image of pair '{pair}' fused by '{m}' ({dataset})")
            images.append((m, fused, "fused"))
        chosen.append((pair, images))
    return chosen


# --------------------------------------------------------------------------- building the page


@dataclass
class _DatasetSection:
    name: str
    anchor: str
    modalities: tuple[str, str]
    n_images: int
    metrics: list[MetricMeta]
    rows: list[dict]
    runtime_unit: str = "s"
    plot: str = ""
    examples: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mean_rank: dict[str, float] = field(default_factory=dict)


def _dataset_section(
    results: Path,
    dataset: str,
    methods: Sequence[str],
    modalities: tuple[str, str],
    examples: list[tuple[str, list[tuple[str, Path, str]]]],
    staging: Path,
    palette: Mapping[str, tuple[float, float, float]],
) -> _DatasetSection:
    from . import plots

    tables = {m: read_metrics(results, dataset, m) for m in methods}
    runtimes = {m: read_runtime(results, dataset, m) for m in methods}

    names = list(dict.fromkeys(c for t in tables.values() for c in t.columns))
    metric_names = [c for c in names if any(pd.api.types.is_numeric_dtype(t[c]) for t in tables.values() if c in t)]
    metrics = [metric_meta(c) for c in metric_names]
    images = sorted(set().union(*(t.index for t in tables.values())))
    anchor = f"ds-{slug(dataset)}"
    section = _DatasetSection(dataset, anchor, modalities, len(images), metrics, rows=[])

    counts = {m: len(t.index) for m, t in tables.items()}
    if len(set(counts.values())) > 1:
        short = ", ".join(f"{m} ({n})" for m, n in counts.items() if n < len(images))
        section.notes.append(f"Not every method has all {len(images)} images; fewer for: {short}.")

    # mean / std / n per method and metric
    stats: dict[str, dict[str, tuple[float, float, int]]] = {}
    for m, t in tables.items():
        stats[m] = {}
        for meta in metrics:
            col = pd.to_numeric(t[meta.name], errors="coerce") if meta.name in t else pd.Series(dtype=float)
            n = int(col.notna().sum())
            mean = float(col.mean()) if n else math.nan
            std = float(col.std(ddof=1)) if n > 1 else math.nan
            stats[m][meta.name] = (mean, std, n)
    runtime_mean = {m: float(r.mean()) if r.notna().any() else math.nan for m, r in runtimes.items()}

    # ranks over the metrics with a known direction (1 = best; ties share the lower rank)
    ranked = [meta for meta in metrics if meta.higher_is_better is not None]
    if ranked:
        means = pd.DataFrame({meta.name: {m: stats[m][meta.name][0] for m in methods} for meta in ranked})
        ranks = pd.DataFrame(
            {meta.name: means[meta.name].rank(ascending=not meta.higher_is_better, method="min") for meta in ranked}
        )
        section.mean_rank = {m: float(ranks.loc[m].mean()) for m in methods}
    else:
        section.mean_rank = dict.fromkeys(methods, math.nan)

    flags = {
        meta.name: _best_flags({m: stats[m][meta.name][0] for m in methods}, meta.higher_is_better) for meta in metrics
    }
    runtime_flags = _best_flags(runtime_mean, higher_is_better=False)
    rank_flags = _best_flags(section.mean_rank, higher_is_better=False)
    decimals = {meta.name: decimals_for([stats[m][meta.name][0] for m in methods]) for meta in metrics}
    finite_times = [t for t in runtime_mean.values() if math.isfinite(t)]
    section.runtime_unit, scale = ("ms", 1000.0) if finite_times and max(finite_times) < 1 else ("s", 1.0)
    runtime_decimals = decimals_for([t * scale for t in finite_times])

    for m in methods:
        cells = []
        for meta in metrics:
            mean, std, n = stats[m][meta.name]
            d = decimals[meta.name]
            cells.append(
                {
                    "metric": meta.name,
                    "mean": _fmt(mean, d),
                    "std": "" if not math.isfinite(std) else _fmt(std, d),
                    "value": "" if not math.isfinite(mean) else repr(mean),
                    "flag": flags[meta.name][m],
                    "title": f"{meta.name} of {m}: mean \u00b1 std over {n} images",
                }
            )
        section.rows.append(
            {
                "method": m,
                "colour": _hex(palette[m]),
                "cells": cells,
                "runtime": _fmt(runtime_mean[m] * scale, runtime_decimals),
                "runtime_value": "" if not math.isfinite(runtime_mean[m]) else repr(runtime_mean[m]),
                "runtime_flag": runtime_flags[m],
                "rank": _fmt(section.mean_rank[m], 2),
                "rank_value": "" if not math.isfinite(section.mean_rank[m]) else repr(section.mean_rank[m]),
                "rank_flag": rank_flags[m],
            }
        )

    # distribution plot
    long = (
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "method": m,
                        "metric": meta.name,
                        "value": pd.to_numeric(tables[m][meta.name], errors="coerce").to_numpy(),
                    }
                )
                for m in methods
                for meta in metrics
                if meta.name in tables[m]
            ],
            ignore_index=True,
        )
        if metrics
        else pd.DataFrame(columns=["method", "metric", "value"])
    )
    long = long.dropna(subset=["value"])
    if len(long):
        rel = f"{ASSETS}/{slug(dataset)}/metrics.png"
        plots.metric_distributions(
            long,
            [meta.name for meta in metrics],
            {meta.name: meta.arrow for meta in metrics},
            palette,
            staging / rel,
        )
        section.plot = rel

    # example images
    for pair, images in examples:
        tiles = []
        for role, path, kind in images:
            rel = f"{ASSETS}/{slug(dataset)}/{slug(pair)}__{slug(role)}.jpg"
            _thumbnail(path, staging / rel)
            tiles.append({"label": role, "src": rel, "source": kind == "data"})
        section.examples.append({"pair": pair, "tiles": tiles})
    return section


def _training_section(
    results: Path, methods: Sequence[str], learned: Mapping[str, bool | None], staging: Path
) -> tuple[list[dict], list[str]]:
    from . import plots

    entries, without_log = [], []
    for m in methods:
        logs = paths.loss_logs(results, m)
        if not logs:
            if learned.get(m):
                without_log.append(m)
            continue
        frames = {train: pd.read_csv(p) for train, p in logs.items()}
        rel = f"{ASSETS}/training/{slug(m)}.png"
        plots.loss_curves(frames, m, staging / rel)
        runs = []
        for train, frame in frames.items():
            terms = plots.loss_terms(frame)
            last = frame[terms].tail(max(1, len(frame) // 50)).mean() if terms else pd.Series(dtype=float)
            steps = int(frame["step"].max()) if "step" in frame and len(frame) else len(frame)
            runs.append(
                {
                    "train_dataset": train,
                    "steps": steps,
                    "final": ", ".join(f"{t} = {v:.4g}" for t, v in last.items()),
                }
            )
        entries.append({"method": m, "plot": rel, "runs": runs})
    return entries, without_log


def _overall(sections: Sequence[_DatasetSection], methods: Sequence[str]) -> list[dict]:
    """Methods ordered by their mean rank across the datasets they were run on (each dataset: mean rank
    over its metrics)."""
    rows = []
    for m in methods:
        per = [s.mean_rank.get(m, math.nan) for s in sections]
        finite = [r for r in per if math.isfinite(r)]
        overall = float(np.mean(finite)) if finite else math.nan
        present = [m in s.mean_rank for s in sections]
        rows.append({"method": m, "per_dataset": per, "present": present, "overall": overall})
    rows.sort(key=lambda r: (not math.isfinite(r["overall"]), r["overall"]))
    n = len(methods)
    flags = _best_flags({r["method"]: r["overall"] for r in rows}, higher_is_better=False)
    for position, r in enumerate(rows, start=1):
        r["position"] = position
        r["flag"] = flags[r["method"]]
        r["cells"] = [
            {"text": _fmt(v, 2), "style": _rank_colour(v, n), "title": ""}
            if m_in
            else {"text": "\u2013", "style": "", "title": "not run on this dataset"}
            for v, m_in in zip(r["per_dataset"], r["present"], strict=True)
        ]
        r["overall_text"] = _fmt(r["overall"], 2)
        r["overall_style"] = _rank_colour(r["overall"], n)
    return rows


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("fusebench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _now() -> dt.datetime:
    """Build time; ``SOURCE_DATE_EPOCH`` pins it for reproducible reports."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), tz=dt.timezone.utc)
    return dt.datetime.now(tz=dt.timezone.utc)


def infer_modalities(results: Path, dataset: str) -> tuple[str, str]:
    """Source modalities of a dataset not given explicitly: the registered dataset's, else the two
    modality folders of ``results/data/<dataset>/test`` in sorted order."""
    try:
        from ..datasets import DATASETS
    except ImportError:
        DATASETS = None  # noqa: N806
    if DATASETS is not None and dataset in DATASETS:
        registered = tuple(DATASETS.get(dataset).modalities)
        if len(registered) == 2:
            return registered[0], registered[1]
    folder = Path(results) / "data" / dataset / "test"
    if not folder.is_dir():
        raise MissingResultError(folder, "data", f"test images of dataset '{dataset}'")
    found = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(found) != 2:
        raise ValueError(f"{folder}: expected two modality folders, found {found}; give the modalities of '{dataset}'")
    return found[0], found[1]


def applicable_methods(dataset: str, methods: Sequence[str]) -> list[str]:
    """The methods meant for the task of ``dataset``: a method whose key is a registered method name is
    left out when its ``tasks`` exclude the registered dataset's task; all others are kept."""
    try:
        from ..datasets import DATASETS
        from ..methods import METHODS
    except ImportError:
        return list(methods)
    if dataset not in DATASETS:
        return list(methods)
    task = DATASETS.get(dataset).task
    return [m for m in methods if m not in METHODS or task in METHODS.get(m).tasks]


def render_report(
    results: Path,
    datasets: list[str],
    methods: list[str],
    out: Path,
    modalities: dict[str, tuple[str, str]],
    title: str = "fusebench report",
    descriptions: dict[str, str] | None = None,
    convention: str = "vifb",
    examples_per_dataset: int = 3,
    methods_for: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write the HTML report for ``methods`` on ``datasets`` to ``out`` (assets in ``out.parent/assets``).

    ``modalities`` maps dataset -> (first, second) source modality as named under ``results/data``;
    datasets missing from it use the registered dataset's modalities, else their two modality folders in
    sorted order. ``descriptions`` maps a method's config key to the text shown for it (default: the
    registered method's description). ``methods_for`` maps dataset -> the methods run on it (a subset of
    ``methods``); datasets missing from it get :func:`applicable_methods`. Raises
    :class:`MissingResultError` naming the file and the producing rule when an input is missing.
    Returns ``out``.
    """
    results, out = Path(results), Path(out)
    if not datasets:
        raise ValueError("no datasets to report on")
    if not methods:
        raise ValueError("no methods to report on")
    if len(set(methods)) != len(methods) or len(set(datasets)) != len(datasets):
        raise ValueError("datasets and methods must not repeat")
    from . import plots

    run_on = {}
    for d in datasets:
        run_on[d] = list((methods_for or {}).get(d) or applicable_methods(d, methods))
        unknown = sorted(set(run_on[d]) - set(methods))
        if unknown:
            raise ValueError(f"methods_for[{d!r}] names methods not in `methods`: {', '.join(unknown)}")
    palette = plots.method_palette(methods)
    colours = {m: _hex(c) for m, c in palette.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out.parent))
    try:
        chosen = {}
        for d in datasets:  # check every input before the slow part
            _check_inputs(results, d, run_on[d])
            mods = tuple(modalities[d]) if d in modalities else infer_modalities(results, d)
            chosen[d] = (mods, example_images(results, d, run_on[d], mods, examples_per_dataset))
        sections = [_dataset_section(results, d, run_on[d], *chosen[d], staging, palette) for d in datasets]
        meta = {m: method_meta(m, descriptions) for m in methods}
        training, without_log = _training_section(results, methods, {m: v[1] for m, v in meta.items()}, staging)
        glossary = list({meta.name: meta for s in sections for meta in s.metrics}.values())
        now = _now()
        html = (
            _environment()
            .get_template("report.html.j2")
            .render(
                title=title,
                generated=now.strftime("%Y-%m-%d %H:%M UTC"),
                convention=convention,
                version=__version__,
                n_datasets=len(datasets),
                n_methods=len(methods),
                n_images=sum(s.n_images for s in sections),
                datasets=sections,
                methods=[
                    {
                        "name": m,
                        "description": meta[m][0],
                        "kind": {True: "learned", False: "classical", None: "\u2013"}[meta[m][1]],
                        "protocol": method_protocol(results, datasets, m),
                        "colour": colours[m],
                    }
                    for m in methods
                ],
                colours=colours,
                glossary=glossary,
                training=training,
                without_log=without_log,
                overall=_overall(sections, methods),
                arrows={"up": UP, "down": DOWN},
            )
        )
        with atomic_path(out) as tmp:
            tmp.write_text(html, encoding="utf-8")
            _swap_assets(staging / ASSETS, out.parent / ASSETS, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def _swap_assets(new: Path, target: Path, staging: Path) -> None:
    """Replace ``target`` by ``new`` (both in the same folder tree, so these are renames)."""
    new.mkdir(parents=True, exist_ok=True)
    if target.exists():
        os.replace(target, staging / "previous-assets")
    os.replace(new, target)
