"""``fusebench download`` and ``fusebench datasets`` (registered in fusebench.cli)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..registry import UnknownNameError
from .download import MIRROR_ENV
from .spec import DatasetError

if TYPE_CHECKING:
    from ..registry import Registry
    from .spec import DatasetSpec

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A fusebench config: adds its `local_datasets` and `archives` (and its `mirror` unless --mirror).",
    ),
]


def _config(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DatasetError(f"cannot read the config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: a config is a mapping of keys (see config/config.yaml)")
    return data


def _registry(config: dict[str, Any], source: str) -> Registry[DatasetSpec]:
    from . import DATASETS, with_local

    return with_local(DATASETS, config.get("local_datasets"), source)


def download_command(
    dataset: Annotated[str, typer.Option(help="Dataset name (see `fusebench datasets`).")],
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
    config: ConfigOption = None,
    definition: Annotated[
        str | None,
        typer.Option(help="The dataset's definition as JSON (a config's local_datasets.<name>; the workflow's way)."),
    ] = None,
    archive: Annotated[
        Path | None, typer.Option(help="Your downloaded archive of an archive dataset (LLVIP, M3FD).")
    ] = None,
) -> None:
    """Fetch a dataset split (mirror first, then the pinned upstream commit), sha256-checked; a config-defined
    dataset is copied from its folders and verified the same way."""
    from ..atomic import DiskFullError
    from .download import download_split
    from .spec import local_spec

    target = out if out is not None else Path("results") / "data" / dataset / split
    try:
        settings = _config(config)
        if definition is not None:
            spec = local_spec(dataset, json.loads(definition), "--definition")
        else:
            spec = _registry(settings, str(config)).get(dataset)
        archive_path = archive if archive is not None else (settings.get("archives") or {}).get(dataset)
        mirror = mirror if mirror is not None else settings.get("mirror")
        paths = download_split(
            spec, split, target, mirror=mirror, max_pairs=max_pairs, progress=progress, archive=archive_path
        )
    except (DatasetError, UnknownNameError, ValueError, DiskFullError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{dataset}/{split}: {len(paths) // 2} pairs ({len(paths)} files) verified in {target}")


def list_command(config: ConfigOption = None) -> None:
    """Print the datasets (registered, plus a config's own): name, task, modalities and splits."""
    try:
        registry = _registry(_config(config), str(config))
    except DatasetError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    rows = [("dataset", "task", "modalities", "splits (pairs)")]
    for name in registry:
        spec = registry.get(name)
        rows.append((name, spec.task, ",".join(spec.modalities), ", ".join(_describe_splits(spec))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths, strict=True)) + "  " + row[3])


def _describe_splits(spec: DatasetSpec) -> list[str]:
    if spec.kind != "bundle":
        where = f"archive {spec.archive.file}" if spec.archive is not None else "folders of the config"
        return [f"{key}=? ({where}{'/' + split.split if split.split else ''})" for key, split in spec.splits.items()]
    described = []
    for key, split in spec.splits.items():
        source = f"{spec.folder}/{split.split}" + (" subset" if split.pairs is not None else "")
        try:
            count = str(len(spec.pair_names(key)))
        except DatasetError:
            # an entry whose files are not (yet) in files.csv is listed, not fatal
            count = "0, not in files.csv"
        described.append(f"{key}={count} ({source})")
    return described
