"""The shared training loop (fusebench.training), exercised with DenseFuse on real patches.

What every learned method relies on: one log row per step, checkpoints, and a resume after a crash or a kill
that continues from the last checkpoint and ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from training_helpers import CrashAt, assert_same_weights, check_resume, checkpoint_step, log_rows, real_patches
from typer.testing import CliRunner

from fusebench.cli import app
from fusebench.datasets import DATASETS
from fusebench.methods import create
from fusebench.methods import refusion as refusion_module
from fusebench.methods.densefuse import DenseFuse
from fusebench.training import CHECKPOINT, FINAL, RECIPE, Trainer, TrainSettings, batch_indices, train

SEED = 3
SIZE = 32


@pytest.fixture(scope="module")
def patches(mirror: Path) -> np.ndarray:
    """8 real 32x32 uint8 pairs (TNO 05 ir/vi and Harvard MRI-CT 16009), N x 2 x 32 x 32."""
    pairs = [("TNO/test/ir/05", "TNO/test/vi/05"), ("Harvard-MRI-CT/test/mri/16009", "Harvard-MRI-CT/test/ct/16009")]
    return real_patches(mirror, SIZE, ((40, 40), (40, 120), (120, 40), (120, 120)), pairs)


def densefuse_trainer() -> Trainer:
    return create("densefuse").trainer("cpu", seed=SEED)  # type: ignore[attr-defined]


SETTINGS = TrainSettings(10, 2, SEED, checkpoint_every=3)


@pytest.fixture(scope="module")
def reference_run(patches: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 10-step run, the target of the resume tests."""
    run = tmp_path_factory.mktemp("uninterrupted")
    train(densefuse_trainer(), patches, SETTINGS, run, progress=False)
    return run


def test_log_has_one_row_per_step_and_model_loads(reference_run: Path, patches: np.ndarray) -> None:
    rows = log_rows(reference_run)
    assert rows[0] == ["step", "loss", "mse", "ssim"]
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 11))
    assert all(np.isfinite([float(v) for v in r[1:]]).all() for r in rows[1:])
    assert checkpoint_step(reference_run) == 10  # the last step is always checkpointed
    method = DenseFuse()
    method.load(reference_run / FINAL)
    fused = method.fuse(patches[0, 0] / np.float32(255), patches[0, 1] / np.float32(255))
    assert fused.shape == (SIZE, SIZE) and fused.dtype == np.float32


def test_batches_depend_only_on_seed_and_step() -> None:
    assert np.array_equal(batch_indices(50, 4, 1, 7), batch_indices(50, 4, 1, 7))
    assert not np.array_equal(batch_indices(50, 4, 1, 7), batch_indices(50, 4, 1, 8))
    assert len(batch_indices(3, 8, 0, 0)) == 3


def test_same_seed_same_weights(reference_run: Path, patches: np.ndarray, tmp_path: Path) -> None:
    torch.manual_seed(12345)  # the global RNG state must not matter: the trainer seeds its own init
    train(densefuse_trainer(), patches, SETTINGS, tmp_path, progress=False)
    assert_same_weights(tmp_path / FINAL, reference_run / FINAL)
    assert log_rows(tmp_path) == log_rows(reference_run)


def test_resume_after_crash(reference_run: Path, patches: np.ndarray, tmp_path: Path) -> None:
    # a crash at step 7: the checkpoint is at step 6, row 7 made it to the log, plus a torn line as a kill
    # in the middle of a write leaves it; the restart drops both and ends as the uninterrupted run
    _, run = check_resume(
        densefuse_trainer, patches, tmp_path, 10, 3, crash_at=7, seed=SEED, reference=reference_run, torn_line=True
    )

    # a finished run is not trained again; asking for fewer steps starts over (a shorter run is another run)
    again = CrashAt(densefuse_trainer())
    train(again, patches, SETTINGS, run, progress=False)
    assert again.steps == []
    shorter = CrashAt(densefuse_trainer())
    train(shorter, patches, TrainSettings(8, 2, SEED, checkpoint_every=3), run, progress=False)
    assert shorter.steps == list(range(8)) and checkpoint_step(run) == 8


def test_changed_settings_start_over(patches: np.ndarray, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Rerunning into a finished run's folder with another learning rate trains again from step 0, as a fresh run
    with that rate does, instead of resuming at the end and keeping the old model (the log says what changed)."""

    def run(folder: Path, lr: float, sha: str = "0" * 64) -> Path:
        trainer = create("densefuse").trainer("cpu", seed=SEED, lr=lr)
        recipe = {"train_options": {"lr": lr}, "patches_sha256": sha}
        return train(trainer, patches, SETTINGS, folder, progress=False, recipe=recipe)

    first = run(tmp_path / "run", 1e-4)
    shutil.copy(first, tmp_path / "first.pt")
    capsys.readouterr()
    changed = run(tmp_path / "run", 1e-3)
    assert "settings changed (train_options.lr: 0.0001 -> 0.001)" in capsys.readouterr().err
    assert_same_weights(changed, run(tmp_path / "fresh", 1e-3))
    with pytest.raises(AssertionError):
        assert_same_weights(changed, tmp_path / "first.pt")
    assert log_rows(tmp_path / "run") == log_rows(tmp_path / "fresh")
    assert json.loads((tmp_path / "run" / RECIPE).read_text())["train_options"] == {"lr": 1e-3}

    capsys.readouterr()  # another patch file: start over too
    again = CrashAt(create("densefuse").trainer("cpu", seed=SEED, lr=1e-3))
    train(again, patches, SETTINGS, tmp_path / "run", progress=False, recipe={"train_options": {"lr": 1e-3}})
    assert "patches_sha256: '000" in capsys.readouterr().err and again.steps == list(range(10))


def test_cli_trains_with_the_task_and_writes_the_recipe(
    patches: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`fusebench train --task mif` gives ReFusion the input order it fuses medical images with (the order fusion
    derives from the dataset's task), and recipe.json holds the recipe used: catalogue values plus overrides."""
    seen: dict[str, object] = {}
    build = refusion_module.ReFusionTrainer.__init__

    def spy(self: refusion_module.ReFusionTrainer, device: str, **options: object) -> None:
        seen.update(options)
        build(self, device, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(refusion_module.ReFusionTrainer, "__init__", spy)
    np.save(tmp_path / "p.npy", patches)
    run = tmp_path / "run"
    args = ["--patches", str(tmp_path / "p.npy"), "--out", str(run), "--steps", "2", "--batch-size", "4"]
    options = ["--train-options", '{"meta_steps": 1, "fusion_steps": 1}', "--device", "cpu", "--no-progress"]
    result = CliRunner().invoke(app, ["train", "--method", "refusion", "--task", "mif", *args, *options])
    assert result.exit_code == 0, result.output
    fusing = create("refusion", task=DATASETS.get("Harvard-MRI-CT").task)  # as `fusebench fuse` builds it
    assert seen["input_order"] == fusing.input_order == "ba"

    recipe = json.loads((run / RECIPE).read_text())
    assert (recipe["method"], recipe["task"], recipe["options"]) == ("refusion", "mif", {})
    assert (recipe["steps"], recipe["batch_size"], recipe["patch_size"], recipe["seed"]) == (2, 4, SIZE, 0)
    assert recipe["train_options"]["meta_steps"] == 1 and recipe["train_options"]["lr"] == 1e-4  # the paper's
    assert recipe["patches_sha256"] == hashlib.sha256((tmp_path / "p.npy").read_bytes()).hexdigest()
    assert recipe["checkpoint_every"] == 100 and not list(run.glob(".*part*"))


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    import torch
    from fusebench.methods import create
    from fusebench.training import TrainSettings, train

    threads, seed, patches, run = int(sys.argv[1]), int(sys.argv[2]), np.load(sys.argv[3]), Path(sys.argv[4])
    torch.set_num_threads(threads)
    trainer = create("densefuse").trainer("cpu", seed=seed)
    step_once = trainer.train_step

    def slow_step(batch, step):
        if step >= 3:  # after the first checkpoint: slow enough for the parent to kill us mid-run
            time.sleep(2.0)
        return step_once(batch, step)

    trainer.train_step = slow_step
    train(trainer, patches, TrainSettings(10, 2, seed, checkpoint_every=3), run, progress=False)
    """
)


def test_resume_after_sigkill(reference_run: Path, patches: np.ndarray, tmp_path: Path) -> None:
    """A real kill (SIGKILL, no cleanup at all) of a training process, then a restart."""
    np.save(tmp_path / "patches.npy", patches)
    run = tmp_path / "run"
    args = [str(torch.get_num_threads()), str(SEED), str(tmp_path / "patches.npy"), str(run)]
    child = subprocess.Popen([sys.executable, "-c", CHILD, *args], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / CHECKPOINT).exists():
            if child.poll() is not None:
                pytest.fail(f"training process exited early: {child.stderr.read().decode()}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint after 120 s")
            time.sleep(0.05)
        child.kill()
    finally:
        child.kill()
        child.wait()
    assert child.returncode != 0  # killed, not finished
    done = checkpoint_step(run)
    assert 0 < done < 10 and not (run / FINAL).exists()

    spy = CrashAt(densefuse_trainer())
    train(spy, patches, SETTINGS, run, progress=False)
    assert spy.steps[0] == done  # resumed from the checkpoint, not from 0
    rows = log_rows(run)
    assert [int(r[0]) for r in rows[1:]] == list(range(1, 11))
    assert rows == log_rows(reference_run)
    assert_same_weights(run / FINAL, reference_run / FINAL)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="checkpoint_every"):
        TrainSettings(10, 2, checkpoint_every=0)
    with pytest.raises(ValueError, match="steps"):
        TrainSettings(0, 2)
