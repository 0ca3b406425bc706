"""``fusebench results-page``: the committed results of a benchmark run, as tables and one Markdown page.

From a run's ``results/summary`` (``fusebench summarize``) it writes, into a folder of the repository:

* ``<dataset>.csv``: per convention, method and metric: n, mean, std (the numbers people cite), headed by the
  run's provenance record; these are the tables a reproduction is checked against;
* ``published-vs-reproduced.csv``: every published number (:mod:`fusebench.reference`) next to fusebench's value
  for the same method, test set, weights task and convention, with the difference and a flag;
* the page (e.g. ``docs/results.md``): per dataset a leaderboard of the paper metrics in the main convention, the
  published-vs-reproduced table, and the provenance of the run.

Nothing here is written by hand: rerunning the command on the same summary gives the same files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ..atomic import write_text_atomic
from ..reference import RELATIVE_TOLERANCE, compare
from .plan import Plan
from .summary import read_csv, write_csv

#: the metrics of the papers' tables (CDDFuse's, and most IVIF/MIF papers since), shown on the page
PAGE_METRICS = ("EN", "SD", "SF", "MI", "SCD", "VIF", "Qabf", "SSIM")
TABLE_COLUMNS = ["convention", "method", "metric", "n", "mean", "std"]


def dataset_table(summary: Path, dataset: str) -> pd.DataFrame:
    """The citable columns of ``summary/<dataset>.csv``, in a stable order."""
    table = read_csv(summary / f"{dataset}.csv")[TABLE_COLUMNS]
    return table.sort_values(["convention", "method", "metric"], kind="stable").reset_index(drop=True)


def reproduced(summary: Path, plan: Plan) -> pd.DataFrame:
    """fusebench's mean per (registered method, dataset, weights task, metric, convention) for the entries that ran
    official weights under the official protocol (the procedure the papers' numbers come from)."""
    efficiency = read_csv(summary / "efficiency.csv")
    official = efficiency[efficiency["protocol"] == "official"]
    method_of = {m.key: m.method for m in plan.methods}
    task_of = {d.name: d.task for d in plan.datasets}
    frames = []
    for dataset, key in zip(official["dataset"], official["method"], strict=True):
        table = dataset_table(summary, dataset)
        rows = table[table["method"] == key].assign(
            entry=key, method=method_of[key], dataset=dataset, weights_task=task_of[dataset]
        )
        frames.append(rows)
    columns = ["entry", "method", "dataset", "weights_task", "convention", "metric", "mean"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


def published_vs_reproduced(summary: Path, plan: Plan) -> pd.DataFrame:
    ours = reproduced(summary, plan)
    frames = [
        compare(rows, str(convention)).assign(entry=entry, convention=convention)
        for (entry, convention), rows in ours.groupby(["entry", "convention"])
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame()
    table = pd.concat(frames, ignore_index=True)
    first = ["dataset", "entry", "published_name", "weights_task", "convention", "metric"]
    return table[first + [c for c in table.columns if c not in first and c != "method"]]


def _markdown(table: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines)


def leaderboard(table: pd.DataFrame, convention: str, metrics: Sequence[str]) -> pd.DataFrame:
    main = table[(table["convention"] == convention) & table["metric"].isin(metrics)]
    wide = main.pivot(index="method", columns="metric", values="mean")
    return wide[[m for m in metrics if m in wide.columns]].reset_index()


def write_results_page(summary: Path, plan: Plan, tables: Path, page: Path, notes: Sequence[str] = ()) -> list[Path]:
    """Write the per-dataset tables and the comparison into ``tables`` and the Markdown page ``page``; ``notes``
    (e.g. how to add what this run left out) are listed under the provenance."""
    from ..metrics import METRICS

    summary, tables, page = Path(summary), Path(tables), Path(page)
    record = json.loads((summary / "provenance.json").read_text(encoding="utf-8"))
    header = [f"# {k}: {record[k]}" for k in ("fusebench", "git_commit", "config_sha256", "date")]
    written = []
    sections = []
    comparison = published_vs_reproduced(summary, plan)
    if not comparison.empty:
        path = tables / "published-vs-reproduced.csv"
        write_csv(comparison, path, header)
        written.append(path)
    scored: set[str] = set()
    for d in plan.datasets:
        table = dataset_table(summary, d.name)
        scored |= set(table["metric"])
        path = tables / f"{d.name}.csv"
        write_csv(table, path, [*header, f"# test_set_sha256 {d.name}: {record['test_set_sha256'].get(d.name)}"])
        written.append(path)
        section = [f"## {d.name} ({d.task}, {int(table['n'].max())} pairs)", ""]
        section += [
            f"Mean over the test set, `{plan.convention}` convention ([all metrics and conventions]"
            f"({path.relative_to(page.parent).as_posix()})).",
            "",
        ]
        section += [_markdown(leaderboard(table, plan.convention, PAGE_METRICS)), ""]
        rows = comparison[comparison["dataset"] == d.name] if not comparison.empty else comparison
        if len(rows):
            shown = rows[
                ["entry", "published_name", "metric", "published", "reproduced", "difference", "agrees", "note"]
            ]
            section += [
                "Published vs reproduced (official weights, official protocol, same convention; agrees: "
                f"within {RELATIVE_TOLERANCE:.0%} or the published rounding):",
                "",
            ]
            section += [_markdown(shown), ""]
        sections.append("\n".join(section))
    weights = "\n".join(
        f"- `{name}`: " + ", ".join(f"{k} `{v}`" for k, v in ids.items()) for name, ids in record["weights"].items()
    )
    text = "\n".join(
        [
            f"# {plan.title}",
            "",
            "Generated by `fusebench results-page` from the run's summary tables; do not edit by hand.",
            "",
            f"- fusebench {record['fusebench']}, commit `{record['git_commit']}`, {record['date']}",
            f"- config sha256 `{record['config_sha256']}`; metric convention `{plan.convention}`",
            "- test sets (sha256 of the files as scored): "
            + ", ".join(f"{k} `{v[:12]}`" for k, v in record["test_set_sha256"].items()),
            *(
                [f"- metrics not scored in this run: {', '.join(unscored)}"]
                if (unscored := [m for m in METRICS.names() if m not in scored])
                else []
            ),
            *(f"- {note}" for note in notes),
            "",
            *sections,
            *(["## Not run", "", *(f"- {note}." for note in plan.skipped_notes()), ""] if plan.skipped else []),
            "## Weights used",
            "",
            weights or "(none)",
            "",
        ]
    )
    write_text_atomic(page, text)
    written.append(page)
    return written
