"""``fusebench metrics``: score a folder of fused images against two source folders into one CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..atomic import atomic_path
from ..imageio import ImageReadError
from ..registry import UnknownNameError
from .alloc import keep_freed_memory
from .api import PairingError, score_folders


def metrics_command(
    sources: Annotated[
        tuple[Path, Path],
        typer.Option("--sources", help="The two source folders (e.g. .../ir .../vi), images paired by stem."),
    ],
    fused: Annotated[Path, typer.Option("--fused", help="Folder of fused images named <stem>.png etc.")],
    out: Annotated[Path, typer.Option("--out", help="Output CSV: one row per image, one column per metric.")],
    convention: Annotated[str, typer.Option("--convention", help="Metric convention, e.g. vifb.")] = "vifb",
    metrics: Annotated[
        str | None, typer.Option("--metrics", help="Comma-separated metric names (default: all).")
    ] = None,
    backend: Annotated[
        str,
        typer.Option(
            "--backend",
            help="numpy (the reference implementations) or torch (batched implementations where a metric has "
            "one, on --device; the others in numpy).",
        ),
    ] = "numpy",
    device: Annotated[
        str | None, typer.Option("--device", help="torch device for --backend torch: cpu (default), cuda, cuda:1.")
    ] = None,
) -> None:
    """Score fused images against their sources; one CSV row per image."""
    if len(sources) != 2:
        raise typer.BadParameter(f"give exactly two source folders, got {len(sources)}", param_hint="--sources")
    if backend not in ("numpy", "torch"):
        raise typer.BadParameter(f"must be numpy or torch, not {backend!r}", param_hint="--backend")
    if device is not None and backend != "torch":
        raise typer.BadParameter("--device applies to --backend torch only", param_hint="--device")
    if backend == "torch" and device is None:
        device = "cpu"
    keep_freed_memory()  # many short-lived arrays: reuse their memory (see fusebench.metrics.alloc)
    names = None
    if metrics is not None:
        names = [name.strip() for name in metrics.split(",") if name.strip()]
        if not names:
            raise typer.BadParameter("no metric names given", param_hint="--metrics")
    try:
        table = score_folders(
            sources[0], sources[1], fused, convention, names, progress=True, backend=backend, device=device
        )
    except UnknownNameError as exc:
        hint = "--convention" if "convention" in str(exc) else "--metrics"
        raise typer.BadParameter(str(exc), param_hint=hint) from None
    except (PairingError, ImageReadError, FileNotFoundError, ValueError) as exc:
        typer.echo(f"Error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    with atomic_path(out) as tmp:
        table.to_csv(tmp, float_format="%.10g")
    where = f"torch on {device}" if backend == "torch" else "numpy"
    typer.echo(f"{len(table)} images x {len(table.columns)} metrics ({convention}, {where}) -> {out}")
