"""``fusebench summarize``: the per-image results turned into the tables other tools (and the report) read.

Written to ``results/summary/`` (every CSV headed by the provenance record as ``# key: value`` lines; read with
``pd.read_csv(path, comment="#")``):

* ``<dataset>.csv``: per convention, method and metric: n, mean, std, median, 95 % bootstrap CI of the mean
  (fixed seed), rank of the mean (1 = best, ties averaged) and mean per-image rank;
* ``ranks.csv``: task, dataset, convention, method, metric, rank (metric ``mean`` = average over the metrics);
* ``overall.csv``: per task, the methods run on every dataset of the task ranked over those datasets; the
  others listed with their coverage and no rank;
* ``significance.csv``: per dataset and metric, the Friedman test over images and the Nemenyi critical difference;
* ``conventions.csv``: per dataset and metric, Kendall's tau between the rankings of each pair of conventions
  and the methods whose rank changes;
* ``efficiency.csv``: per dataset and method, fusion time per pair (and the device), parameters, training steps
  actually run and training time;
* ``provenance.json``: the provenance record.
"""

from __future__ import annotations

import io
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import write_text_atomic
from . import paths, provenance, stats
from .paths import MissingResultError
from .plan import Plan

MEAN_RANK = "mean"


def metric_directions(names: Sequence[str]) -> dict[str, bool | None]:
    """metric -> higher_is_better from :data:`fusebench.metrics.METRICS` (None for unknown columns: not ranked)."""
    from ..metrics import METRICS

    return {n: (bool(METRICS.get(n).higher_is_better) if n in METRICS else None) for n in names}


def read_scores(path: Path, what: str, kind: str = "metrics") -> pd.DataFrame:
    """A per-image metrics CSV (index image, numeric metric columns)."""
    if not path.is_file():
        raise MissingResultError(path, kind, what)
    table = pd.read_csv(path, dtype={"image": str})
    if "image" not in table.columns:
        raise ValueError(f"{path}: no 'image' column (expected columns: image, <metric>...)")
    table = table.set_index("image")
    return table[[c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]]


def scores(results: Path, plan: Plan, dataset: str, convention: str) -> dict[str, pd.DataFrame]:
    """method -> per-image table of ``dataset`` under ``convention``, for the methods run on it."""
    out = {}
    for m in plan.dataset(dataset).methods:
        path = paths.convention_metrics_csv(results, dataset, m, convention, plan.convention)
        kind = "metrics" if convention == plan.convention else "convention_metrics"
        out[m] = read_scores(path, f"{convention} metrics of method '{m}' on dataset '{dataset}'", kind)
    return out


def metric_names(tables: Mapping[str, pd.DataFrame]) -> list[str]:
    return list(dict.fromkeys(c for t in tables.values() for c in t.columns))


def dataset_summary(results: Path, plan: Plan, dataset: str) -> pd.DataFrame:
    """The rows of ``<dataset>.csv``: :data:`stats.SUMMARY_COLUMNS` per convention scored on ``dataset``."""
    frames = []
    for convention in [plan.convention, *plan.dataset(dataset).conventions]:
        tables = scores(results, plan, dataset, convention)
        described = stats.describe(tables, metric_directions(metric_names(tables)))
        frames.append(described.assign(convention=convention))
    summary = pd.concat(frames, ignore_index=True)
    return summary[["convention", *stats.SUMMARY_COLUMNS]]


def ranks_table(summaries: Mapping[str, pd.DataFrame], tasks: Mapping[str, str]) -> pd.DataFrame:
    """Long table task, dataset, convention, method, metric, rank; metric ``mean`` averages a method's ranks."""
    frames = []
    for dataset, summary in summaries.items():
        ranked = summary.dropna(subset=["rank"])
        mean = ranked.groupby(["convention", "method"], sort=False)["rank"].mean().reset_index()
        part = pd.concat([ranked[["convention", "method", "metric", "rank"]], mean.assign(metric=MEAN_RANK)])
        frames.append(part.assign(task=tasks[dataset], dataset=dataset))
    columns = ["task", "dataset", "convention", "method", "metric", "rank"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def overall_table(
    summaries: Mapping[str, pd.DataFrame], plan: Plan, tasks: Mapping[str, str]
) -> tuple[pd.DataFrame, list[stats.TaskRanking]]:
    """Per task: position (1 = best) and mean rank of the methods run on all its datasets, their mean rank on each
    dataset (one column per dataset), and every method's coverage (partial ones get no rank)."""
    means = pd.concat(
        [s[s["convention"] == plan.convention].assign(dataset=d) for d, s in summaries.items()], ignore_index=True
    )
    directions = metric_directions(list(dict.fromkeys(means["metric"])))
    rankings = stats.task_rankings(means[["dataset", "method", "metric", "mean"]], tasks, directions)

    def per_columns(per: Mapping[str, float]) -> list[float]:
        return [per.get(d, math.nan) for d in tasks]

    rows = []
    for r in rankings:
        positions = stats.rank_values(pd.Series(r.overall, dtype=float), higher_is_better=False)
        for m, score in sorted(r.overall.items(), key=lambda kv: kv[1]):
            per = r.per_dataset[m]
            rows.append([r.task, m, len(r.datasets), len(r.datasets), score, float(positions[m]), *per_columns(per)])
        for m, run in r.partial.items():
            rows.append([r.task, m, len(run), len(r.datasets), math.nan, math.nan, *per_columns({})])
    columns = ["task", "method", "datasets_run", "datasets_in_task", "mean_rank", "position", *tasks]
    return pd.DataFrame(rows, columns=columns), rankings


def significance_table(results: Path, plan: Plan, dataset: str) -> pd.DataFrame:
    """Friedman test over the images of ``dataset`` for each ranked metric (main convention)."""
    tables = scores(results, plan, dataset, plan.convention)
    rows = []
    for metric, higher in metric_directions(metric_names(tables)).items():
        if higher is None:
            continue
        matrix = pd.DataFrame({m: stats.column(t, metric) for m, t in tables.items()})
        test = stats.friedman(matrix)
        rows.append(
            {
                "dataset": dataset,
                "metric": metric,
                "methods": test.methods if test else matrix.shape[1],
                "images": test.images if test else int(matrix.dropna().shape[0]),
                "friedman_chi2": test.statistic if test else math.nan,
                "friedman_p": test.p_value if test else math.nan,
                "nemenyi_cd": test.cd if test else math.nan,
            }
        )
    return pd.DataFrame(rows)


def conventions_table(summary: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Kendall's tau between the rankings of every pair of conventions, per metric, and the methods whose rank
    differs between the two."""
    rows = []
    conventions = list(dict.fromkeys(summary["convention"]))
    for metric, part in summary.dropna(subset=["rank"]).groupby("metric", sort=False):
        ranks = {c: dict(zip(g["method"], g["rank"], strict=True)) for c, g in part.groupby("convention", sort=False)}
        for a, b in itertools.combinations([c for c in conventions if c in ranks], 2):
            changed = sorted(m for m in ranks[a] if m in ranks[b] and ranks[a][m] != ranks[b][m])
            rows.append(
                {
                    "dataset": dataset,
                    "metric": metric,
                    "convention_a": a,
                    "convention_b": b,
                    "kendall_tau": stats.kendall_tau(ranks[a], ranks[b]),
                    "changed": " ".join(changed),
                }
            )
    columns = ["dataset", "metric", "convention_a", "convention_b", "kendall_tau", "changed"]
    return pd.DataFrame(rows, columns=columns)


# --------------------------------------------------------------------------- efficiency


def read_runtime(results: Path, dataset: str, method: str) -> pd.Series:
    path = paths.runtime_csv(results, dataset, method)
    if not path.is_file():
        raise MissingResultError(path, "runtime", f"run times of method '{method}' on dataset '{dataset}'")
    table = pd.read_csv(path, dtype={"image": str})
    if "seconds" not in table.columns:
        raise ValueError(f"{path}: no 'seconds' column (expected columns: image, seconds)")
    return pd.to_numeric(table["seconds"], errors="coerce")


def read_recipe(model_dir: Path) -> dict[str, Any]:
    """``recipe.json`` beside ``model.pt`` (the training settings actually used), empty when absent."""
    return provenance.json_record(Path(model_dir) / paths.RECIPE)


def training_run(results: Path, model: str) -> dict[str, Any]:
    """Steps actually run (the last step of loss.csv), training seconds (``train_seconds`` of recipe.json, when
    the training step recorded it) and the recipe of the model folder ``<method>/<train set>``."""
    folder = paths.model_dir(results, model)
    recipe = read_recipe(folder)
    log = folder / "loss.csv"
    steps = math.nan
    if log.is_file() and log.stat().st_size:
        frame = pd.read_csv(log)
        steps = int(frame["step"].max()) if "step" in frame and len(frame) else len(frame)
    seconds = pd.to_numeric(pd.Series([recipe.get("train_seconds")]), errors="coerce").iloc[0]
    return {"train_steps": steps, "train_seconds": float(seconds), "recipe": recipe}


def parameter_count(plan: Plan, results: Path, method_key: str, weights: Mapping[str, Any]) -> float:
    """Parameters of the network that fused: the tensors of the trained ``model.pt`` (BatchNorm statistics left
    out), else the method's registered network; 0 for classical methods; NaN when unknown."""
    import torch

    from ..methods import METHODS

    name = next(m.method for m in plan.methods if m.key == method_key)
    cls = METHODS.get(name) if name in METHODS else None
    if cls is None:
        return math.nan
    if not cls.learned:
        return 0.0
    if "model" in weights:
        model = paths.model_dir(results, weights["model"]) / "model.pt"
        if model.is_file():
            state = torch.load(model, map_location="cpu", weights_only=True)
            return float(_count(state))
    network = getattr(cls, "network", None)
    if network is None:
        return math.nan
    return float(sum(p.numel() for p in network().parameters()))


def _count(state: Any) -> int:
    import torch

    if isinstance(state, torch.Tensor):
        return state.numel() if state.is_floating_point() else 0
    if isinstance(state, Mapping):
        return sum(_count(v) for k, v in state.items() if not str(k).endswith(("running_mean", "running_var")))
    if isinstance(state, (list, tuple)):
        return sum(_count(v) for v in state)
    return 0


def accel_label(fusion: Mapping[str, Any]) -> str:
    """A fuse step's performance settings that are not the defaults (``fusion.json``'s ``accel``), e.g.
    ``"bf16, channels_last"``; empty for fp32 without channels_last or compile, and for classical methods."""
    accel = fusion.get("accel") or {}
    precision = str(accel.get("precision", "fp32"))
    flags = [k for k in ("channels_last", "compile") if accel.get(k)]
    return ", ".join(([] if precision == "fp32" else [precision]) + flags)


def efficiency_table(results: Path, plan: Plan) -> pd.DataFrame:
    rows = []
    for d in plan.datasets:
        for m in d.methods:
            seconds = read_runtime(results, d.name, m)
            weights = plan.weights.get(d.name, {}).get(m, {})
            fusion = provenance.runs_of(results, d.name, m)
            run = training_run(results, weights["model"]) if "model" in weights else {}
            rows.append(
                {
                    "dataset": d.name,
                    "method": m,
                    "images": int(seconds.notna().sum()),
                    "seconds_per_pair": float(seconds.mean()),
                    "median_seconds": float(seconds.median()),
                    "device": str(fusion.get("device", "not recorded")),
                    "protocol": str(fusion.get("protocol", "")),
                    "settings": accel_label(fusion),
                    "parameters": parameter_count(plan, results, m, weights),
                    "weights": " ".join(weights.get("official", [])) or weights.get("model", ""),
                    "train_steps": run.get("train_steps", math.nan),
                    "train_seconds": run.get("train_seconds", math.nan),
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- writing


def write_csv(table: pd.DataFrame, path: Path, header: Sequence[str]) -> None:
    buffer = io.StringIO()
    buffer.write("".join(f"{line}\n" for line in header))
    table.to_csv(buffer, index=False, float_format="%.10g")
    write_text_atomic(path, buffer.getvalue())


def read_csv(path: Path) -> pd.DataFrame:
    """A summary CSV, its provenance header skipped."""
    return pd.read_csv(path, comment="#", keep_default_na=True)


def summarize(results: Path, plan: Plan, out: Path) -> list[Path]:
    """Write every summary table of ``plan`` to ``out`` (see the module doc); returns the files written."""
    results, out = Path(results), Path(out)
    tasks = {d.name: d.task for d in plan.datasets}
    summaries = {d.name: dataset_summary(results, plan, d.name) for d in plan.datasets}
    efficiency = efficiency_table(results, plan)  # reads every run-time log: fails early when one is missing
    record = provenance.collect(plan, results)
    header = provenance.header_lines(record)
    written = []
    for dataset, summary in summaries.items():
        path = out / f"{dataset}.csv"
        write_csv(summary, path, provenance.header_lines(record, dataset))
        written.append(path)
    overall, _ = overall_table(summaries, plan, tasks)
    tables = {
        "ranks.csv": ranks_table(summaries, tasks),
        "overall.csv": overall,
        "significance.csv": pd.concat([significance_table(results, plan, d) for d in tasks], ignore_index=True),
        "conventions.csv": pd.concat([conventions_table(s, d) for d, s in summaries.items()], ignore_index=True),
        "efficiency.csv": efficiency,
    }
    for name, table in tables.items():
        write_csv(table, out / name, header)
        written.append(out / name)
    write_text_atomic(out / "provenance.json", json.dumps(record, indent=2) + "\n")
    written.append(out / "provenance.json")
    return written
