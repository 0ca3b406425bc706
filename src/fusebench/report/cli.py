"""``fusebench report``: render the HTML report from a results tree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def parse_mapping(text: str, option: str, count: int | None = None) -> dict[str, list[str]]:
    """``"TNO=ir,vi;Harvard-MRI-CT=mri,ct"`` -> ``{"TNO": ["ir", "vi"], "Harvard-MRI-CT": ["mri", "ct"]}``;
    with ``count``, each dataset must list exactly that many names."""
    found: dict[str, list[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        dataset, sep, values = item.partition("=")
        names = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not dataset.strip() or not names or (count is not None and len(names) != count):
            example = "TNO=ir,vi" if count == 2 else "TNO=average,densefuse"
            message = f"{item!r}: expected DATASET=NAME,NAME,... (e.g. {example})"
            raise typer.BadParameter(message, param_hint=option)
        found[dataset.strip()] = names
    return found


def parse_modalities(text: str) -> dict[str, tuple[str, str]]:
    """``"TNO=ir,vi;Harvard-MRI-CT=mri,ct"`` -> ``{"TNO": ("ir", "vi"), "Harvard-MRI-CT": ("mri", "ct")}``."""
    return {d: (m[0], m[1]) for d, m in parse_mapping(text, "--modalities", count=2).items()}


def _names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise typer.BadParameter("give at least one name", param_hint=option)
    return names


def report_command(
    datasets: Annotated[str, typer.Option(help="Comma-separated datasets, as in results/metrics/<dataset>.")],
    methods: Annotated[str, typer.Option(help="Comma-separated method keys, as in results/fused/<d>/<method>.")],
    results: Annotated[Path, typer.Option(help="Results folder of the workflow.")] = Path("results"),
    out: Annotated[Path, typer.Option(help="HTML file to write; figures go to assets/ beside it.")] = Path(
        "results/report/index.html"
    ),
    modalities: Annotated[
        str,
        typer.Option(
            help="Source modalities per dataset, e.g. 'TNO=ir,vi;Harvard-MRI-CT=mri,ct'. Datasets left out "
            "use their registered modalities, else the two folders of results/data/<dataset>/test."
        ),
    ] = "",
    title: Annotated[str, typer.Option(help="Page title.")] = "fusebench report",
    convention: Annotated[str, typer.Option(help="Metric convention the scores follow (shown).")] = "vifb",
    examples: Annotated[int, typer.Option(min=0, help="Example pairs shown per dataset.")] = 3,
    methods_for: Annotated[
        str,
        typer.Option(
            help="Methods run on each dataset, e.g. 'TNO=average,densefuse;Harvard-MRI-CT=average'. Datasets "
            "left out get every method of --methods meant for their task."
        ),
    ] = "",
    descriptions: Annotated[
        str, typer.Option(help="JSON object method key -> description (default: the registry's).")
    ] = "{}",
) -> None:
    """Render the HTML report (leaderboards, plots, example images, training curves)."""
    from .render import render_report

    try:
        described = json.loads(descriptions)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--descriptions") from exc
    if not isinstance(described, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--descriptions")
    path = render_report(
        results,
        _names(datasets, "--datasets"),
        _names(methods, "--methods"),
        out,
        parse_modalities(modalities),
        title=title,
        descriptions={str(k): str(v) for k, v in described.items()},
        convention=convention,
        examples_per_dataset=examples,
        methods_for=parse_mapping(methods_for, "--methods-for"),
    )
    typer.echo(f"report -> {path}")
