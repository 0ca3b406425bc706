"""The method catalogue (catalog.yaml): torch-free names and options, declared options checked on creation and in the
CLI, every trainer option declared with the paper's value, options implied by registered weights."""

from __future__ import annotations

import inspect
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fusebench.cli import app
from fusebench.methods import METHODS, OptionError, create
from fusebench.methods.catalog import MethodRegistry
from fusebench.methods.classical import Average

#: trainer arguments that are not recipe options: the loop and the CLI give them
LOOP = {"self", "device", "seed", "steps", "patch_size"}


def test_names_tasks_options_and_recipes_without_torch() -> None:
    """What the workflow reads to build its DAG (methods, datasets, metrics, weights) imports no torch."""
    code = (
        "import sys\n"
        "from fusebench.methods import METHODS\n"
        "import fusebench.datasets, fusebench.metrics, fusebench.weights\n"
        "for name in METHODS:\n"
        "    spec = METHODS.spec(name)\n"
        "    spec.check_options({})\n"
        "    spec.learned and spec.training({'steps': 2})\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print(len(METHODS))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) >= 12


def test_each_class_takes_its_identity_from_the_catalogue() -> None:
    for name in METHODS:
        cls, spec = METHODS.get(name), METHODS.spec(name)
        assert (cls.name, cls.tasks, cls.description, cls.learned) == (name, spec.tasks, spec.description, spec.learned)


def test_a_class_without_entry_or_with_its_own_identity_is_refused() -> None:
    registry = MethodRegistry()
    with pytest.raises(ValueError, match="no entry in .*catalog.yaml"):
        registry.register("average2")(type("Average2", (Average,), {}))
    with pytest.raises(ValueError, match="sets tasks.* live in"):
        registry.register("average")(type("Average3", (Average,), {"tasks": ("ivif",)}))


def required_files(tmp_path: Path) -> dict[str, dict[str, str]]:
    """Trainer options that name a file the recipe cannot default (random weights stand in)."""
    from fusebench.methods.u2fusion import VGG16Features

    vgg = tmp_path / "vgg16.pth"
    torch.save(VGG16Features().state_dict(), vgg)
    return {"u2fusion": {"vgg_weights": str(vgg)}}


def test_every_trainer_option_is_declared_with_the_recipe_value(tmp_path: Path) -> None:
    """The catalogue's recipe is the one source: each trainer accepts exactly the declared options, and the trainer's
    own keyword defaults, where it has them, are the recipe's values (the pipeline passes the recipe anyway)."""
    torch.set_num_threads(1)
    learned = [name for name in METHODS if METHODS.spec(name).learned]
    assert len(learned) >= 10
    files = required_files(tmp_path)
    for name in learned:
        recipe = METHODS.spec(name).training({"options": files.get(name, {})})
        declared = METHODS.spec(name).recipe.options  # type: ignore[union-attr]
        trainer = create(name).trainer(
            "cpu", steps=recipe["steps"], patch_size=recipe["patch_size"], **recipe["options"]
        )
        parameters = inspect.signature(type(trainer).__init__).parameters.values()
        named = {p.name: p.default for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in LOOP}
        assert set(named) <= set(declared), (name, set(named) - set(declared))
        for key, default in named.items():
            value = declared[key].default
            if default is not inspect.Parameter.empty and value is not None:
                assert (list(default) if isinstance(default, tuple) else default) == value, (name, key)
        with pytest.raises(TypeError, match="unknown option"):
            create(name).trainer("cpu", not_an_option=1)


def test_unknown_options_and_bad_values_name_the_valid_ones() -> None:
    with pytest.raises(OptionError, match=r"densefuse: unknown option\(s\) stratgy; valid options: strategy"):
        create("densefuse", stratgy="l1")
    with pytest.raises(OptionError, match="strategy must be one of addition, sum, l1, got 'max'"):
        create("densefuse", strategy="max")
    with pytest.raises(OptionError, match="levels must be >= 1"):
        create("laplacian", levels=0)
    with pytest.raises(OptionError, match="levels must be of type int"):
        create("laplacian", levels="4")
    with pytest.raises(OptionError, match="unknown option.*valid options: \\(none\\)"):
        create("average", levels=2)
    with pytest.raises(OptionError, match=r"valid options: .*\blr\b"):
        METHODS.spec("densefuse").training({"options": {"learning_rate": 1e-3}})
    with pytest.raises(OptionError, match="weight must be a list of 3 numbers"):
        METHODS.spec("tardal").training({"options": {"weight": [1.0, 2.0]}})
    with pytest.raises(OptionError, match="unknown key.*valid keys: steps, batch_size, patch_size, options"):
        METHODS.spec("densefuse").training({"lr": 1e-3})


def run_cli(*args: str) -> tuple[int, str]:
    """Exit code and output of ``fusebench ARGS``, the output's lines and box drawing joined into one line."""
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def test_cli_refuses_bad_options(tmp_path: Path) -> None:
    patches = tmp_path / "p.npy"
    np.save(patches, np.zeros((2, 2, 16, 16), np.uint8))
    train = [
        "train",
        "--method",
        "densefuse",
        "--patches",
        str(patches),
        "--out",
        str(tmp_path / "run"),
        "--steps",
        "1",
    ]
    code, output = run_cli(*train, "--train-options", '{"learning_rate": 1}')
    assert code == 2 and "unknown option(s) learning_rate; valid options: lr, ssim, ssim_weight" in output
    code, output = run_cli(*train, "--options", '{"strategy": "max"}')
    assert code == 2 and "must be one of addition, sum, l1, got 'max'" in output
    assert not (tmp_path / "run").exists()
    fuse = [
        "fuse",
        "--method",
        "laplacian",
        "--dataset",
        "TNO",
        "--sources",
        str(tmp_path),
        "--out",
        str(tmp_path / "f"),
    ]
    code, output = run_cli(*fuse, "--options", '{"level": 3}')
    assert code == 2 and "unknown option(s) level; valid options: levels" in output


def test_weights_imply_options_and_a_mismatch_is_refused() -> None:
    spec = METHODS.spec("tardal")
    assert spec.with_weights("tardal-v0-plus", {}) == {"variant": "tardal+"}
    assert spec.with_weights_file(Path("x/tardal++.pt"), {"flush_denormal": False}) == {
        "variant": "tardal++",
        "flush_denormal": False,
    }
    assert spec.with_weights_file(Path("x/other.pt"), {}) == {}
    with pytest.raises(OptionError, match="tardal-v0-plus are the variant='tardal\\+' model.*variant='tardal'"):
        spec.with_weights("tardal-v0-plus", {"variant": "tardal"})


def test_fuse_with_tardal_plus_weights_runs_the_tardal_plus_model(shared: Path, tmp_path: Path) -> None:
    """`--official tardal+.pt` without a variant used to run tardal's BatchNorm mode (train): now it is the
    tardal+ model (eval mode), the same output as with the variant given, and a contradicting variant is refused."""
    torch.set_num_threads(1)
    weights = shared / "weights" / "official" / "tardal-v0" / "tardal+.pt"
    sources = tmp_path / "TNO"
    for modality in ("ir", "vi"):
        (sources / modality).mkdir(parents=True)
        with Image.open(shared / "datasets" / "TNO" / "test" / modality / "05.png") as image:
            image.crop((0, 0, 96, 80)).save(sources / modality / "05.png")

    def fuse(out: str, *options: str) -> tuple[int, str]:
        args = ["--dataset", "TNO", "--sources", str(sources), "--out", str(tmp_path / out), "--device", "cpu"]
        return run_cli("fuse", "--method", "tardal", *args, "--official", str(weights), *options)

    assert fuse("inferred")[0] == 0
    assert fuse("explicit", "--options", '{"variant": "tardal+"}')[0] == 0
    code, output = fuse("wrong", "--options", '{"variant": "tardal"}')
    assert code == 2 and "variant='tardal+' model" in output
    inferred, explicit = (np.asarray(Image.open(tmp_path / d / "05.png")) for d in ("inferred", "explicit"))
    np.testing.assert_array_equal(inferred, explicit)
    renamed = tmp_path / "w" / "weights.pt"  # an unregistered file name implies nothing: the default variant
    renamed.parent.mkdir()
    shutil.copy(weights, renamed)
    weights = renamed
    assert fuse("default")[0] == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "default" / "05.png")), inferred)
