"""``fusebench``: every workflow step as a command, so each also runs by hand outside Snakemake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .datasets.cli import download_command, list_command
from .metrics.cli import metrics_command
from .report.cli import report_command, summarize_command
from .weights import weights_command

app = typer.Typer(
    help="fusebench: a reproducible benchmark for deep image fusion. Each command is one workflow step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("datasets", help="List the registered datasets, their tasks, modalities and splits.")(list_command)
app.command("download", help="Fetch a dataset split (mirror first, then pinned upstream), sha256-checked.")(
    download_command
)
app.command("metrics", help="Score fused images against their sources; one CSV row per image.")(metrics_command)
app.command("fetch-weights", help="Fetch the authors' pinned weights (mirror first), verified by blob id.")(
    weights_command
)
app.command("summarize", help="Summary tables (mean, CI, ranks, significance, conventions) from the metrics.")(
    summarize_command
)
app.command("report", help="Render the HTML report from the summary tables and fused images.")(report_command)

JsonOption = Annotated[str, typer.Option(help="Method options as a JSON object (from the config).")]


def _json(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"{what} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise typer.BadParameter(f"{what} must be a JSON object, got {text!r}")
    return value


def _pairs(dataset: str, sources: Path) -> list[tuple[str, Path, Path]]:
    from .datasets import DATASETS, pairs

    return pairs(sources, DATASETS.get(dataset).modalities)


@app.command("methods")
def methods_command() -> None:
    """List the registered fusion methods."""
    from .methods import METHODS

    for name in METHODS:
        cls = METHODS.get(name)
        kind = "learned" if cls.learned else "classical"
        typer.echo(f"{name:<14} {kind:<9} {','.join(cls.tasks):<16} {cls.description}")


@app.command("patches")
def patches_command(
    dataset: Annotated[str, typer.Option(help="Registered dataset name (gives the modalities).")],
    sources: Annotated[Path, typer.Option(help="Downloaded split folder, e.g. results/data/MSRS/train.")],
    out: Annotated[Path, typer.Option(help="Output .npy (a .json with the parameters is written beside it).")],
    size: Annotated[int, typer.Option(help="Patch side in pixels.")] = 128,
    stride: Annotated[int, typer.Option(help="Grid step in pixels.")] = 200,
    min_contrast: Annotated[float, typer.Option(help="Drop patches with (p90-p10)/255 below this.")] = 0.1,
) -> None:
    """Crop training patches of a dataset split into one compact array."""
    from .patches import PatchSettings, make_patches

    count = make_patches(_pairs(dataset, sources), out, PatchSettings(size, stride, min_contrast))
    typer.echo(f"{count} patches -> {out}")


@app.command("train")
def train_command(
    method: Annotated[str, typer.Option(help="Registered method name.")],
    patches: Annotated[Path, typer.Option(help="Patch array from `fusebench patches`.")],
    out: Annotated[Path, typer.Option(help="Run folder: loss.csv, checkpoint.pt, model.pt.")],
    steps: Annotated[int, typer.Option(min=1)],
    batch_size: Annotated[int, typer.Option(min=1)],
    options: JsonOption = "{}",
    train_options: Annotated[str, typer.Option(help="Trainer options (lr, loss weights...) as JSON.")] = "{}",
    seed: int = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 100,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda[:N].")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a learned method; rerunning resumes from the last checkpoint in --out."""
    from .methods import LearnedMethod, create
    from .patches import load_patches
    from .training import TrainSettings, pick_device, seed_everything, train

    fusion = create(method, **_json(options, "--options"))
    if not isinstance(fusion, LearnedMethod):
        raise typer.BadParameter(f"{method} is not a learned method; it needs no training", param_hint="--method")
    dev = pick_device(device)
    data = load_patches(patches)
    seed_everything(seed)  # before the networks are built, so their initial weights follow the seed
    options_ = {"steps": steps, "patch_size": data.shape[-1], **_json(train_options, "--train-options")}
    trainer = fusion.trainer(dev, **options_)
    settings = TrainSettings(steps=steps, batch_size=batch_size, seed=seed, checkpoint_every=checkpoint_every)
    final = train(trainer, data, settings, out, progress=progress)
    typer.echo(f"trained {method} on {dev} -> {final}")


@app.command("fuse")
def fuse_command(
    method: Annotated[str, typer.Option(help="Registered method name.")],
    dataset: Annotated[str, typer.Option(help="Registered dataset name (gives the modalities).")],
    sources: Annotated[Path, typer.Option(help="Downloaded test split folder.")],
    out: Annotated[Path, typer.Option(help="Folder for <pair>.png and runtime.csv.")],
    options: JsonOption = "{}",
    weights: Annotated[Path | None, typer.Option(help="model.pt written by `fusebench train`.")] = None,
    official: Annotated[Path | None, typer.Option(help="The authors' published weights file.")] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda[:N].")] = "auto",
) -> None:
    """Fuse every pair of a test split with one method."""
    from .datasets import DATASETS
    from .fuse import fuse_pairs
    from .methods import LearnedMethod, create
    from .training import pick_device

    fusion = create(method, **{"task": DATASETS.get(dataset).task, **_json(options, "--options")})
    if isinstance(fusion, LearnedMethod):
        dev = pick_device(device)
        if (weights is None) == (official is None):
            raise typer.BadParameter(f"{method} is learned: give exactly one of --weights or --official")
        if weights is not None:
            fusion.load(weights, dev)
        else:
            fusion.load_official(official, dev)  # type: ignore[arg-type]
    fuse_pairs(fusion, _pairs(dataset, sources), out)
    typer.echo(f"fused {dataset} with {method} -> {out}")


if __name__ == "__main__":
    app()
