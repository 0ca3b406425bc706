"""``fusebench``: every workflow step as a command, so each also runs by hand outside Snakemake."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .datasets.cli import download_command, list_command
from .metrics.cli import metrics_command
from .report.cli import report_command, results_page_command, summarize_command
from .weights import weights_command

app = typer.Typer(
    help="fusebench: a reproducible benchmark for deep image fusion. Each command is one workflow step.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("datasets", help="List the datasets (registered, or a config's own), tasks, modalities, splits.")(
    list_command
)
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
app.command("results-page", help="Tables and a Markdown page to publish, with published numbers side by side.")(
    results_page_command
)

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
    from .datasets import describe, pairs

    return pairs(sources, describe(dataset, sources).modalities)


@app.command("methods")
def methods_command(
    name: Annotated[str | None, typer.Argument(help="Show this method's options and training recipe.")] = None,
) -> None:
    """List the registered fusion methods, or one method's options and recipe (read from the catalogue)."""
    from .methods import METHODS

    if name is None:
        for key in METHODS:
            spec = METHODS.spec(key)
            kind = "learned" if spec.learned else "classical"
            typer.echo(f"{key:<14} {kind:<9} {','.join(spec.tasks):<16} {spec.description}")
        return
    spec = METHODS.spec(name)
    typer.echo(f"{name}: {spec.description}\ntasks: {', '.join(spec.tasks)}\noptions:")
    for option in spec.options.values():
        choices = f" ({' | '.join(map(str, option.choices))})" if option.choices else ""
        typer.echo(f"  {option.name}: {option.type}{choices} = {option.default!r}  {option.help}".rstrip())
    if spec.recipe is not None:
        recipe, sources = spec.training(), spec.recipe.sources
        typer.echo("recipe (override in the config's `train` entry):")
        for key in ("steps", "batch_size", "patch_size"):
            typer.echo(f"  {key}: {recipe[key]}  {sources.get(key, '')}".rstrip())
        typer.echo("  options:")
        for key, option in spec.recipe.options.items():
            typer.echo(f"    {key}: {option.default!r}  {sources.get(key, option.help)}".rstrip())


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


ThreadsOption = Annotated[int, typer.Option(min=0, help="CPU threads for torch (0: torch's default, all cores).")]
PrecisionOption = Annotated[
    str,
    typer.Option(help="fp32, or bf16: networks under torch.autocast with bfloat16 (docs/performance.md)."),
]
ChannelsLastOption = Annotated[bool, typer.Option(help="Networks and their inputs in channels_last memory format.")]
CompileOption = Annotated[
    bool,
    typer.Option(
        help="torch.compile the networks (the first batch pays the compile time; on CPU needs a C++ compiler)."
    ),
]
TaskOption = Annotated[
    str | None,
    typer.Option(
        help="Task of the images (ivif, mif, mff, mef): methods with per-task behaviour, such as ReFusion's input "
        "order, use it. For training, the task of the train set (the workflow passes it)."
    ),
]


def _accel(precision: str, channels_last: bool, compile: bool) -> Any:
    """The :class:`~fusebench.accel.Accel` of the options, or a usage error naming the bad value."""
    from .accel import Accel

    try:
        return Accel(precision, channels_last, compile)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--precision") from None


@app.command("train")
def train_command(
    method: Annotated[str, typer.Option(help="Registered method name.")],
    patches: Annotated[Path, typer.Option(help="Patch array from `fusebench patches`.")],
    out: Annotated[Path, typer.Option(help="Run folder: loss.csv, checkpoint.pt, model.pt, recipe.json.")],
    task: TaskOption = None,
    options: JsonOption = "{}",
    steps: Annotated[int | None, typer.Option(min=1, help="Steps (default: the method's recipe).")] = None,
    batch_size: Annotated[int | None, typer.Option(min=1, help="Pairs per step (default: the recipe).")] = None,
    train_options: Annotated[
        str, typer.Option(help="Trainer options overriding the method's recipe (lr, loss weights...), as JSON.")
    ] = "{}",
    seed: int = 0,
    checkpoint_every: Annotated[int, typer.Option(min=1)] = 100,
    device: Annotated[str, typer.Option(help="auto (CUDA if available), cpu or cuda[:N].")] = "auto",
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    threads: ThreadsOption = 0,
    precision: PrecisionOption = "fp32",
    channels_last: ChannelsLastOption = False,
    compile: CompileOption = False,
) -> None:
    """Train a learned method with its paper's recipe (`fusebench methods NAME`) and the given overrides.
    Rerunning resumes from the last checkpoint in --out when the settings are the same, else starts over."""
    from .cpu import set_threads, use_fast_cpu_memory

    use_fast_cpu_memory()
    from .methods import METHODS, OptionError, create
    from .patches import load_patches
    from .training import TrainSettings, file_sha256, pick_device, seed_everything, train

    spec = METHODS.spec(method)
    if not spec.learned:
        raise typer.BadParameter(f"{method} is not a learned method; it needs no training", param_hint="--method")
    accel = _accel(precision, channels_last, compile)
    method_options = _json(options, "--options")
    data = load_patches(patches)
    overrides: dict[str, Any] = {"patch_size": int(data.shape[-1]), "options": _json(train_options, "--train-options")}
    overrides.update({k: v for k, v in (("steps", steps), ("batch_size", batch_size)) if v is not None})
    try:
        recipe = spec.training(overrides)
        fusion = create(method, task=task, **method_options)
    except OptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    set_threads(threads)
    dev = pick_device(device)
    seed_everything(seed)  # before the networks are built, so their initial weights follow the seed
    trainer = fusion.trainer(dev, steps=recipe["steps"], patch_size=recipe["patch_size"], **recipe["options"])
    settings = TrainSettings(recipe["steps"], recipe["batch_size"], seed=seed, checkpoint_every=checkpoint_every)
    run = {
        "method": method,
        "task": task,
        "options": method_options,
        "patch_size": recipe["patch_size"],
        "train_options": recipe["options"],
        "patches_sha256": file_sha256(patches),
    }
    final = train(trainer, data, settings, out, progress=progress, recipe=run, accel=accel)
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
    protocol: Annotated[
        str,
        typer.Option(
            help="fusebench: fusebench's colour rule for every method; official: the authors' published test "
            "procedure end to end (needs --official)."
        ),
    ] = "fusebench",
    threads: ThreadsOption = 0,
    precision: PrecisionOption = "fp32",
    channels_last: ChannelsLastOption = False,
    compile: CompileOption = False,
) -> None:
    """Fuse every pair of a test split with one method (the performance options apply to learned methods)."""
    from .cpu import set_threads, use_fast_cpu_memory

    use_fast_cpu_memory()
    from .datasets import describe
    from .fuse import check_protocol, fuse_pairs
    from .methods import METHODS, LearnedMethod, OptionError, create
    from .training import pick_device

    given = _json(options, "--options")
    accel = _accel(precision, channels_last, compile)
    try:
        if official is not None:  # e.g. tardal+.pt implies variant tardal+ (its BatchNorm mode)
            given = METHODS.spec(method).with_weights_file(official, given)
        learned = {"accel": accel} if METHODS.spec(method).learned else {}
        fusion = create(method, **{"task": describe(dataset, sources).task, **given, **learned})
    except OptionError as exc:
        raise typer.BadParameter(str(exc)) from None
    try:
        check_protocol(fusion, protocol, official is not None)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--protocol") from None
    set_threads(threads)
    if isinstance(fusion, LearnedMethod):
        dev = pick_device(device)
        if (weights is None) == (official is None):
            raise typer.BadParameter(f"{method} is learned: give exactly one of --weights or --official")
        if weights is not None:
            fusion.load(weights, dev)
        else:
            fusion.load_official(official, dev)  # type: ignore[arg-type]
    used = [path for path in (weights, official) if path is not None]
    fuse_pairs(fusion, _pairs(dataset, sources), out, protocol=protocol, weights=used)
    typer.echo(f"fused {dataset} with {method} ({protocol} protocol) -> {out}")


if __name__ == "__main__":
    app()
