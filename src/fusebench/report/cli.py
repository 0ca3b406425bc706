"""``fusebench summarize`` and ``fusebench report``: summary tables, then the HTML page, from a results tree.

Both read the run's plan (``results/summary/plan.json``, written by the workflow; see
:mod:`fusebench.report.plan`): datasets, methods run on each, modalities, conventions, title.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .paths import MissingResultError
from .plan import Plan, PlanError, read_plan

PlanOption = Annotated[
    Path, typer.Option(help="The run's plan (JSON: datasets, methods per dataset, conventions, title).")
]
ResultsOption = Annotated[Path, typer.Option(help="Results folder of the workflow.")]
SummaryOption = Annotated[Path, typer.Option(help="Folder of the summary tables.")]


def _plan(path: Path) -> Plan:
    try:
        return read_plan(path)
    except PlanError as exc:
        raise typer.BadParameter(str(exc), param_hint="--plan") from None


def _fail(exc: Exception) -> typer.Exit:
    typer.echo(f"Error: {exc}", err=True)
    return typer.Exit(code=1)


def summarize_command(
    plan: PlanOption = Path("results/summary/plan.json"),
    results: ResultsOption = Path("results"),
    out: SummaryOption = Path("results/summary"),
) -> None:
    """Summary tables: per dataset mean/std/median/95% CI/rank, ranks, significance, conventions, efficiency."""
    from .summary import summarize

    try:
        written = summarize(results, _plan(plan), out)
    except (MissingResultError, ValueError) as exc:
        raise _fail(exc) from None
    typer.echo(f"{len(written)} summary files -> {out}")


def report_command(
    plan: PlanOption = Path("results/summary/plan.json"),
    results: ResultsOption = Path("results"),
    summary: SummaryOption = Path("results/summary"),
    out: Annotated[Path, typer.Option(help="HTML file to write; figures go to assets/ beside it.")] = Path(
        "results/report/index.html"
    ),
) -> None:
    """Render the HTML report from the summary tables (run `fusebench summarize` first)."""
    from .render import render_report

    try:
        path = render_report(results, _plan(plan), summary, out)
    except (MissingResultError, ValueError) as exc:
        raise _fail(exc) from None
    typer.echo(f"report -> {path}")


def results_page_command(
    plan: PlanOption = Path("results/summary/plan.json"),
    summary: SummaryOption = Path("results/summary"),
    tables: Annotated[Path, typer.Option(help="Folder for the committed per-dataset tables.")] = Path("docs/results"),
    page: Annotated[Path, typer.Option(help="The Markdown results page to write.")] = Path("docs/results.md"),
    note: Annotated[
        list[str] | None, typer.Option(help="A line for the page's header (repeatable), e.g. what the run left out.")
    ] = None,
) -> None:
    """The results to publish: per-dataset tables (convention, method, metric, n, mean, std), the published vs
    reproduced comparison, and a Markdown page with leaderboards and provenance."""
    from .results_page import write_results_page

    try:
        written = write_results_page(summary, _plan(plan), tables, page, note or [])
    except (OSError, KeyError, ValueError) as exc:
        raise _fail(exc) from None
    typer.echo(f"{len(written)} files -> {tables}, {page}")
