"""Render the static HTML report from the summary tables (:mod:`fusebench.report.summary`) and the results tree.

Rendering only: every statistic comes from ``results/summary``; the results tree gives the per-image values
(box plots, drill-down), the images (examples, zoomed crops) and the training logs. The report is one
``index.html`` plus an ``assets/`` folder beside it, so the folder can be copied or served as it is, offline.
Everything is written to a staging folder first and moved into place at the end, so an interrupted run never
leaves a half-written report under the final name.
"""

from __future__ import annotations

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
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from PIL import Image

from .. import __version__
from ..atomic import atomic_path
from ..imageio import ImageReadError, list_images, read_uint8
from . import paths, stats, summary
from .paths import MissingResultError
from .plan import Plan

THUMBNAIL_SIDE = 256
#: zoomed crops: the side of the region (a fraction of the image's shorter side) and of the shown tile
CROP_FRACTION = 0.25
CROP_TILE = 192
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


def method_meta(key: str, method: str, description: str = "") -> tuple[str, bool | None]:
    """(description, learned) of config entry ``key`` running registered ``method``; learned is None when the
    registry does not know it. ``description`` (from the plan) wins over the registry's."""
    from ..methods import METHODS

    spec = METHODS.spec(method) if method in METHODS else None  # the catalogue: no torch import
    return description or (spec.description if spec is not None else ""), (spec.learned if spec else None)


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


def _sig(value: float) -> str:
    """Three significant digits (run times span orders of magnitude within one column)."""
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3g}"


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


# --------------------------------------------------------------------------- reading inputs


def _require(path: Path, kind: str, what: str) -> Path:
    if not path.is_file():
        raise MissingResultError(path, kind, what)
    return path


@dataclass
class Inputs:
    """Everything the page shows, read (and checked to exist) before any slow work."""

    summaries: dict[str, pd.DataFrame]
    overall: pd.DataFrame
    significance: pd.DataFrame
    conventions: pd.DataFrame
    efficiency: pd.DataFrame
    provenance: dict[str, Any]
    #: dataset -> method -> per-image scores under the main convention
    scores: dict[str, dict[str, pd.DataFrame]]


def read_inputs(results: Path, plan: Plan, summary_dir: Path) -> Inputs:
    def table(name: str) -> pd.DataFrame:
        return summary.read_csv(_require(summary_dir / name, "summary", f"summary table {name}"))

    record = _require(summary_dir / "provenance.json", "summary", "provenance record")
    return Inputs(
        summaries={d.name: table(f"{d.name}.csv") for d in plan.datasets},
        overall=table("overall.csv"),
        significance=table("significance.csv"),
        conventions=table("conventions.csv"),
        efficiency=table("efficiency.csv"),
        provenance=json.loads(record.read_text(encoding="utf-8")),
        scores={d.name: summary.scores(results, plan, d.name, plan.convention) for d in plan.datasets},
    )


def example_pairs(
    results: Path, dataset: str, methods: Sequence[str], modalities: tuple[str, str], count: int
) -> list[tuple[str, list[tuple[str, Path, str]]]]:
    """The first ``count`` pairs (by name) of the test sources: ``(pair, [(label, path, kind), ...])`` with the
    two sources (kind "data") and then each method's fused image (kind "fused"), all checked to exist."""
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


def _read(path: Path) -> np.ndarray:
    try:
        return read_uint8(path)
    except ImageReadError as exc:
        raise ValueError(str(exc)) from exc


# --------------------------------------------------------------------------- images


def _thumbnail(array: np.ndarray, target: Path) -> None:
    image = Image.fromarray(array)
    image.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="JPEG", quality=88, optimize=True)


def disagreement_region(fused: Sequence[np.ndarray], fraction: float = CROP_FRACTION) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square where the fused images differ most (largest summed per-pixel standard
    deviation across methods): where a reader should look. The whole image when it is smaller than the square."""
    gray = np.stack([f.mean(axis=2) if f.ndim == 3 else f for f in (x.astype(np.float64) for x in fused)])
    h, w = gray.shape[1:]
    side = max(16, int(min(h, w) * fraction))
    if side >= min(h, w):
        return 0, 0, min(h, w)
    spread = gray.std(axis=0)
    integral = np.pad(spread.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[side:, side:] - integral[:-side, side:] - integral[side:, :-side] + integral[:-side, :-side]
    top, left = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(top), int(left), side


def _crop(array: np.ndarray, region: tuple[int, int, int], target: Path) -> None:
    top, left, side = region
    image = Image.fromarray(array[top : top + side, left : left + side])
    image = image.resize((CROP_TILE, CROP_TILE), Image.Resampling.NEAREST)  # pixels, not smoothed detail
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, format="PNG", optimize=True)


def _examples(dataset: str, pairs: list[tuple[str, list[tuple[str, Path, str]]]], staging: Path) -> list[dict]:
    """Thumbnails of each example pair and zoomed crops of the region where its fused images differ most."""
    out = []
    for pair, images in pairs:
        arrays = [(role, _read(path), kind) for role, path, kind in images]
        region = disagreement_region([a for _, a, kind in arrays if kind == "fused"] or [arrays[0][1]])
        tiles, crops = [], []
        for role, array, kind in arrays:
            base = f"{ASSETS}/{slug(dataset)}/{slug(pair)}__{slug(role)}"
            _thumbnail(array, staging / f"{base}.jpg")
            _crop(array, region, staging / f"{base}__crop.png")
            tiles.append({"label": role, "src": f"{base}.jpg", "source": kind == "data"})
            crops.append({"label": role, "src": f"{base}__crop.png", "source": kind == "data"})
        top, left, side = region
        out.append({"pair": pair, "tiles": tiles, "crops": crops, "region": f"{side}x{side} px at ({left}, {top})"})
    return out


# --------------------------------------------------------------------------- page parts


@dataclass
class _DatasetSection:
    name: str
    anchor: str
    task: str
    modalities: tuple[str, str]
    n_images: int
    metrics: list[MetricMeta]
    rows: list[dict]
    runtime_unit: str = "s"
    figures: dict[str, str] = field(default_factory=dict)
    significance: list[dict] = field(default_factory=list)
    sensitivity: dict[str, Any] = field(default_factory=dict)
    drilldown: dict[str, Any] = field(default_factory=dict)
    examples: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _protocol_label(efficiency: pd.DataFrame, method: str) -> str:
    """The leaderboard's badge of a method: its test-time protocol and its non-default performance settings
    (``official · bf16``), from the efficiency table's ``protocol`` and ``settings`` (fusion.json)."""
    row = efficiency.loc[method]
    parts = [row.get(k) for k in ("protocol", "settings")]
    return " · ".join(str(p) for p in parts if isinstance(p, str) and p)


def _leaderboard(
    main: pd.DataFrame,
    metrics: Sequence[MetricMeta],
    methods: Sequence[str],
    runtime: Mapping[str, float],
    protocols: Mapping[str, str],
    palette: Mapping[str, tuple[float, float, float]],
) -> tuple[list[dict], str]:
    """Leaderboard rows: per metric mean, 95 % CI and rank (best marked), run time, average rank."""
    by = main.set_index(["method", "metric"])
    mean_rank = main.dropna(subset=["rank"]).groupby("method")["rank"].mean().reindex(methods)
    flags = {
        m.name: _best_flags({k: by.loc[(k, m.name), "mean"] for k in methods}, m.higher_is_better) for m in metrics
    }
    decimals = {m.name: decimals_for([by.loc[(k, m.name), "mean"] for k in methods]) for m in metrics}
    finite_times = [t for t in runtime.values() if math.isfinite(t)]
    unit, scale = ("ms", 1000.0) if finite_times and max(finite_times) < 1 else ("s", 1.0)
    time_flags = _best_flags(runtime, higher_is_better=False)
    rank_flags = _best_flags(mean_rank.to_dict(), higher_is_better=False)
    rows = []
    for k in methods:
        cells = []
        for m in metrics:
            r = by.loc[(k, m.name)]
            d = decimals[m.name]
            ci = f"[{_fmt(r['ci_low'], d)}, {_fmt(r['ci_high'], d)}]" if math.isfinite(r["ci_low"]) else ""
            cells.append(
                {
                    "metric": m.name,
                    "mean": _fmt(r["mean"], d),
                    "ci": ci,
                    "rank": _fmt(r["rank"], 1).removesuffix(".0") if math.isfinite(r["rank"]) else "",
                    "value": "" if not math.isfinite(r["mean"]) else repr(float(r["mean"])),
                    "flag": flags[m.name][k],
                    "title": f"{m.name} of {k}: mean over {int(r['n'])} images, 95% bootstrap CI, rank",
                }
            )
        rank = float(mean_rank[k])
        rows.append(
            {
                "method": k,
                "colour": _hex(palette[k]),
                "protocol": protocols.get(k, ""),
                "cells": cells,
                "runtime": _sig(runtime[k] * scale),
                "runtime_value": "" if not math.isfinite(runtime[k]) else repr(runtime[k]),
                "runtime_flag": time_flags[k],
                "rank": _fmt(rank, 2),
                "rank_value": "" if not math.isfinite(rank) else repr(rank),
                "rank_flag": rank_flags[k],
            }
        )
    return rows, unit


def _significance(
    dataset: str, main: pd.DataFrame, tests: pd.DataFrame, metrics: Sequence[MetricMeta], staging: Path
) -> tuple[list[dict], str]:
    """Friedman rows per metric and one figure of critical-difference diagrams (metrics with a Friedman test)."""
    from . import plots

    rows, panels = [], []
    tests = tests[tests["dataset"] == dataset].set_index("metric")
    for m in metrics:
        if m.name not in tests.index:
            continue
        t = tests.loc[m.name]
        p, cd = float(t["friedman_p"]), float(t["nemenyi_cd"])
        ranks = main[main["metric"] == m.name].set_index("method")["image_rank"].to_dict()
        groups = stats.tied_groups(ranks, cd) if math.isfinite(cd) else []
        significant = math.isfinite(p) and p < 0.05
        rows.append(
            {
                "metric": m.name,
                "chi2": _fmt(float(t["friedman_chi2"]), 2),
                "p": "n/a" if not math.isfinite(p) else f"{p:.2g}",
                "significant": significant,
                "cd": _fmt(cd, 2),
                "images": int(t["images"]),
                "tied": "; ".join(" = ".join(g) for g in groups),
            }
        )
        if math.isfinite(cd):
            verdict = f"Friedman p = {p:.2g}" if math.isfinite(p) else "no differences"
            panels.append((f"{m.name}  ({verdict})", ranks, cd, groups))
    figure = ""
    if panels:
        figure = f"{ASSETS}/{slug(dataset)}/cd.png"
        plots.cd_diagrams(panels, staging / figure)
    return rows, figure


def _sensitivity(dataset: str, summary_table: pd.DataFrame, taus: pd.DataFrame) -> dict[str, Any]:
    """Per metric: each convention's ranking (methods in rank order, changed ones marked) and Kendall's tau."""
    conventions = list(dict.fromkeys(summary_table["convention"]))
    if len(conventions) < 2:
        return {}
    taus = taus[taus["dataset"] == dataset]
    pairs = list(dict.fromkeys(zip(taus["convention_a"], taus["convention_b"], strict=True)))
    rows = []
    for metric, part in summary_table.dropna(subset=["rank"]).groupby("metric", sort=False):
        ranks = {c: dict(zip(g["method"], g["rank"], strict=True)) for c, g in part.groupby("convention", sort=False)}
        changed = {m for c in ranks for m in ranks[c] if len({ranks[o].get(m) for o in ranks}) > 1}
        rankings = []
        for c in conventions:
            order = sorted(ranks.get(c, {}).items(), key=lambda kv: (kv[1], kv[0]))
            rankings.append(
                [{"method": m, "rank": _fmt(r, 1).removesuffix(".0"), "changed": m in changed} for m, r in order]
            )
        mine = taus[taus["metric"] == metric].set_index(["convention_a", "convention_b"])["kendall_tau"]
        tau_cells = []
        for pair in pairs:
            tau = float(mine.get(pair, math.nan))
            tau_cells.append({"text": _fmt(tau, 2), "low": math.isfinite(tau) and tau < 1})
        same = ", ".join(f"{e['rank']}. {e['method']}" for e in rankings[0])
        rows.append({"metric": metric, "rankings": rankings, "taus": tau_cells, "changed": bool(changed), "same": same})
    return {"conventions": conventions, "pairs": [f"{a} / {b}" for a, b in pairs], "rows": rows}


def _drilldown(scores: Mapping[str, pd.DataFrame], metrics: Sequence[MetricMeta]) -> dict[str, Any]:
    """One row per (image, method) with every metric: the sortable per-image table."""
    rows = []
    images = sorted(set().union(*(t.index for t in scores.values())))
    decimals = {
        m.name: decimals_for([float(v) for t in scores.values() if m.name in t for v in t[m.name].dropna()])
        for m in metrics
    }
    for image in images:
        for method, table in scores.items():
            if image not in table.index:
                continue
            cells = []
            for m in metrics:
                value = float(table.at[image, m.name]) if m.name in table else math.nan
                cells.append(
                    {"text": _fmt(value, decimals[m.name]), "value": repr(value) if math.isfinite(value) else ""}
                )
            rows.append({"image": image, "method": method, "cells": cells})
    return {"rows": rows, "images": len(images)}


def _distributions(
    dataset: str, scores: Mapping[str, pd.DataFrame], metrics: Sequence[MetricMeta], palette: Mapping, staging: Path
) -> str:
    from . import plots

    frames = [
        pd.DataFrame({"method": k, "metric": m.name, "value": pd.to_numeric(t[m.name], errors="coerce").to_numpy()})
        for k, t in scores.items()
        for m in metrics
        if m.name in t
    ]
    long = pd.concat(frames, ignore_index=True).dropna(subset=["value"]) if frames else pd.DataFrame()
    if not len(long):
        return ""
    rel = f"{ASSETS}/{slug(dataset)}/metrics.png"
    plots.metric_distributions(
        long, [m.name for m in metrics], {m.name: m.arrow for m in metrics}, palette, staging / rel
    )
    return rel


def _heatmap(
    dataset: str, main: pd.DataFrame, metrics: Sequence[MetricMeta], methods: Sequence[str], staging: Path
) -> str:
    from . import plots

    ranked = [m.name for m in metrics if m.higher_is_better is not None]
    if not ranked:
        return ""
    table = main.pivot(index="method", columns="metric", values="rank").reindex(index=methods, columns=ranked)
    table["mean rank"] = table.mean(axis=1)
    table = table.sort_values("mean rank")
    rel = f"{ASSETS}/{slug(dataset)}/ranks.png"
    plots.rank_heatmap(table, staging / rel)
    return rel


def _dataset_section(
    plan: Plan,
    dataset: str,
    inputs: Inputs,
    examples: list[tuple[str, list[tuple[str, Path, str]]]],
    staging: Path,
    palette: Mapping[str, tuple[float, float, float]],
) -> _DatasetSection:
    d = plan.dataset(dataset)
    table = inputs.summaries[dataset]
    main = table[table["convention"] == plan.convention]
    metrics = [metric_meta(str(n)) for n in dict.fromkeys(main["metric"])]
    scores = inputs.scores[dataset]
    images = sorted(set().union(*(t.index for t in scores.values())))
    section = _DatasetSection(dataset, f"ds-{slug(dataset)}", d.task, d.modalities, len(images), metrics, rows=[])
    short = [f"{m} ({len(t.index)})" for m, t in scores.items() if len(t.index) < len(images)]
    if short:
        section.notes.append(f"Not every method has all {len(images)} images; fewer for: {', '.join(short)}.")
    efficiency = inputs.efficiency[inputs.efficiency["dataset"] == dataset].set_index("method")
    runtime = {m: float(efficiency.at[m, "seconds_per_pair"]) for m in d.methods}
    protocols = {m: _protocol_label(efficiency, m) for m in d.methods}
    section.rows, section.runtime_unit = _leaderboard(main, metrics, d.methods, runtime, protocols, palette)
    section.significance, cd = _significance(dataset, main, inputs.significance, metrics, staging)
    section.figures = {
        "cd": cd,
        "ranks": _heatmap(dataset, main, metrics, d.methods, staging),
        "box": _distributions(dataset, scores, metrics, palette, staging),
    }
    section.sensitivity = _sensitivity(dataset, table, inputs.conventions)
    section.drilldown = _drilldown(scores, metrics)
    section.examples = _examples(dataset, examples, staging)
    return section


def _overall(overall: pd.DataFrame, plan: Plan, palette: Mapping[str, tuple[float, float, float]]) -> list[dict]:
    """Per task: the methods run on every dataset of the task, ranked over those datasets; the others with their
    coverage."""
    out = []
    for task, part in overall.groupby("task", sort=False):
        datasets = [d.name for d in plan.datasets if d.task == task]
        n = int(part["mean_rank"].notna().sum())
        ranked, partial = [], []
        for _, r in part.sort_values(["position", "method"], na_position="last").iterrows():
            entry = {
                "method": r["method"],
                "colour": _hex(palette[r["method"]]),
                "coverage": f"{int(r['datasets_run'])}/{int(r['datasets_in_task'])}",
            }
            if math.isfinite(r["mean_rank"]):
                cells = [float(r[d]) if d in r and pd.notna(r[d]) else math.nan for d in datasets]
                entry.update(
                    position=_fmt(float(r["position"]), 1).removesuffix(".0"),
                    cells=[{"text": _fmt(v, 2), "style": _rank_colour(v, n)} for v in cells],
                    overall=_fmt(float(r["mean_rank"]), 2),
                    style=_rank_colour(float(r["mean_rank"]), n),
                    flag="best" if float(r["position"]) == 1 else "",
                )
                ranked.append(entry)
            else:
                partial.append(entry)
        out.append({"task": task, "datasets": datasets, "ranked": ranked, "partial": partial})
    return out


def _training(results: Path, plan: Plan, staging: Path) -> tuple[list[dict], list[str]]:
    """Loss curves and recipes of every model the benchmark used (read from the training outputs)."""
    from . import plots

    models = sorted({w["model"] for per in plan.weights.values() for w in per.values() if "model" in w})
    by_method: dict[str, list[str]] = {}
    for model in models:
        by_method.setdefault(model.split("/")[0], []).append(model)
    entries = []
    for method, runs in by_method.items():
        logs = {m.split("/", 1)[1]: paths.model_dir(results, m) / "loss.csv" for m in runs}
        frames = {t: pd.read_csv(p) for t, p in logs.items() if p.is_file() and p.stat().st_size}
        rel = ""
        if frames:
            rel = f"{ASSETS}/training/{slug(method)}.png"
            plots.loss_curves(frames, method, staging / rel)
        rows = []
        for model in runs:
            train = model.split("/", 1)[1]
            run = summary.training_run(results, model)
            frame = frames.get(train)
            terms = plots.loss_terms(frame) if frame is not None else []
            last = frame[terms].tail(max(1, len(frame) // 50)).mean() if terms else pd.Series(dtype=float)
            rows.append(
                {
                    "train_dataset": train,
                    "steps": _fmt(run["train_steps"], 0),
                    "seconds": _fmt(run["train_seconds"], 0),
                    "final": ", ".join(f"{t} = {v:.4g}" for t, v in last.items()),
                    "recipe": ", ".join(f"{k} = {_json_value(v)}" for k, v in run["recipe"].items())
                    or "no recipe.json",
                }
            )
        entries.append({"method": method, "plot": rel, "runs": rows})
    learned_official = sorted({m for per in plan.weights.values() for m, w in per.items() if "official" in w})
    return entries, learned_official


def _json_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _efficiency(efficiency: pd.DataFrame, plan: Plan) -> list[dict]:
    rows = []
    for method in plan.method_keys:
        part = efficiency[efficiency["method"] == method]
        if part.empty:
            continue
        first = part.iloc[0]
        params = float(first["parameters"])
        rows.append(
            {
                "method": method,
                "parameters": "n/a" if not math.isfinite(params) else f"{params:,.0f}",
                "weights": ", ".join(dict.fromkeys(str(w) for w in part["weights"] if pd.notna(w))),
                "device": ", ".join(sorted({str(v) for v in part["device"]})),
                "runtime": [
                    {"dataset": r["dataset"], "ms": _sig(float(r["seconds_per_pair"]) * 1000)}
                    for _, r in part.iterrows()
                ],
                "steps": _fmt(float(first["train_steps"]), 0) if pd.notna(first["train_steps"]) else "\u2013",
                "train_seconds": _fmt(float(first["train_seconds"]), 0)
                if pd.notna(first["train_seconds"])
                else "\u2013",
            }
        )
    return rows


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("fusebench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(results: Path, plan: Plan, summary_dir: Path, out: Path) -> Path:
    """Write the HTML report of ``plan`` to ``out`` (assets in ``out.parent/assets``) from the summary tables in
    ``summary_dir`` and the results tree. Raises :class:`MissingResultError` naming the file and the producing
    rule when an input is missing. Returns ``out``."""
    from . import plots

    results, out, summary_dir = Path(results), Path(out), Path(summary_dir)
    inputs = read_inputs(results, plan, summary_dir)
    examples = {d.name: example_pairs(results, d.name, d.methods, d.modalities, plan.examples) for d in plan.datasets}
    palette = plots.method_palette(plan.method_keys)
    colours = {m: _hex(c) for m, c in palette.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=out.parent))
    try:
        sections = [_dataset_section(plan, d.name, inputs, examples[d.name], staging, palette) for d in plan.datasets]
        training, official = _training(results, plan, staging)
        glossary = list({m.name: m for s in sections for m in s.metrics}.values())
        methods = []
        for m in plan.methods:
            description, learned = method_meta(m.key, m.method, m.description)
            kind = {True: "learned", False: "classical", None: "\u2013"}[learned if m.learned is None else m.learned]
            methods.append({"name": m.key, "description": description, "kind": kind, "colour": colours[m.key]})
        html = (
            _environment()
            .get_template("report.html.j2")
            .render(
                title=plan.title,
                provenance=inputs.provenance,
                convention=plan.convention,
                version=__version__,
                n_images=sum(s.n_images for s in sections),
                datasets=sections,
                methods=methods,
                colours=colours,
                glossary=glossary,
                training=training,
                official=official,
                efficiency=_efficiency(inputs.efficiency, plan),
                overall=_overall(inputs.overall, plan, palette),
                not_run=plan.skipped_notes(),
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
