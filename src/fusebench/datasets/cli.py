"""``fusebench download`` and ``fusebench datasets`` (registered in fusebench.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..registry import UnknownNameError
from .download import MIRROR_ENV
from .spec import DatasetError


def download_command(
    dataset: Annotated[str, typer.Option(help="Registered dataset name (see `fusebench datasets`).")],
    split: Annotated[str, typer.Option(help="train or test.")] = "test",
    out: Annotated[
        Path | None,
        typer.Option(help="Output folder (<out>/<modality>/<pair>.<ext>); default results/data/DATASET/SPLIT."),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror",
            envvar=MIRROR_ENV,
            help="Mirror root laid out like the data bundle (folder, file:// or http(s) URL); tried first.",
        ),
    ] = None,
    max_pairs: Annotated[int | None, typer.Option("--max-pairs", min=1, help="Keep the first N pairs.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Fetch a dataset split (mirror first, then the pinned upstream commit), sha256-checked."""
    from ..atomic import DiskFullError
    from .download import download_split

    target = out if out is not None else Path("results") / "data" / dataset / split
    try:
        paths = download_split(dataset, split, target, mirror=mirror, max_pairs=max_pairs, progress=progress)
    except (DatasetError, UnknownNameError, ValueError, DiskFullError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{dataset}/{split}: {len(paths) // 2} pairs ({len(paths)} files) verified in {target}")


def list_command() -> None:
    """Print the registered datasets: name, task, modalities and splits with their pair counts."""
    from . import DATASETS

    rows = [("dataset", "task", "modalities", "splits (pairs)")]
    for name in DATASETS:
        spec = DATASETS.get(name)
        splits = []
        for key, split in spec.splits.items():
            source = f"{spec.folder}/{split.split}" + (" subset" if split.pairs is not None else "")
            splits.append(f"{key}={len(spec.pair_names(key))} ({source})")
        rows.append((name, spec.task, ",".join(spec.modalities), ", ".join(splits)))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
