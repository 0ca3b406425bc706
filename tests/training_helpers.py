"""Helpers shared by the learned methods' tests: real training patches cropped from the data bundle, a trainer
that crashes at a chosen step, the crash-and-restart check against an uninterrupted run, and the errors every
untrained method raises."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytest
import torch

from fusebench.color import luminance
from fusebench.imageio import read_image, to_uint8
from fusebench.training import CHECKPOINT, FINAL, LOSS_LOG, Trainer, TrainSettings, train

#: where :func:`real_patches` crops the MSRS train pairs unless told otherwise
MSRS_OFFSETS = ((200, 240), (280, 400))


def torch_threads(n: int, scope: Literal["function", "module"] = "module") -> Any:
    """An autouse fixture running the tests of a module with ``n`` intra-op threads (the test machine's cores
    are shared: one thread per test process avoids oversubscription, 10x slower); assign it to a name."""

    @pytest.fixture(autouse=True, scope=scope)
    def fixture() -> Any:
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        yield
        torch.set_num_threads(before)

    return fixture


# ---------------------------------------------------------------------------------------- real patches
def read_gray8(path: Path, gray: Callable[[np.ndarray], np.ndarray] = luminance) -> np.ndarray:
    """An image of the bundle as 8-bit gray: ``to_uint8(gray(read_image(path)))`` (gray files as stored)."""
    image = to_uint8(gray(read_image(path)))
    assert image.ndim == 2, path
    return image


def _image(mirror: Path, stem: str) -> Path:
    (path,) = (mirror / stem).parent.glob(f"{Path(stem).name}.*")
    return path


def bundle_pairs(
    mirror: Path,
    pairs: Iterable[tuple[str, str]] | None = None,
    limit: int | None = None,
    gray: Callable[[np.ndarray], np.ndarray] = luminance,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """8-bit gray source pairs of the bundle. ``pairs``: (A, B) paths below ``mirror`` without extension, e.g.
    ``("TNO/test/ir/05", "TNO/test/vi/05")``; None: every MSRS train pair (ir, vi luma) in name order.
    ``limit``: only the first pairs."""
    if pairs is None:
        stems = sorted(p.stem for p in (mirror / "MSRS" / "train" / "ir").glob("*.png"))
        pairs = [(f"MSRS/train/ir/{s}", f"MSRS/train/vi/{s}") for s in stems]
    out = []
    for a, b in list(pairs)[:limit]:
        image_a, image_b = read_gray8(_image(mirror, a), gray), read_gray8(_image(mirror, b), gray)
        assert image_a.shape == image_b.shape, (a, b)
        out.append((image_a, image_b))
    return out


def crop_patches(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], size: int, offsets: Sequence[tuple[int, int]]
) -> np.ndarray:
    """``size`` x ``size`` crops at each (y, x) of ``offsets`` of each pair, pair by pair: uint8 N x 2 x S x S.
    Float images (in [0, 1]) are rounded to 8 bits."""
    out = []
    for a, b in pairs:
        a, b = (to_uint8(x) if x.dtype != np.uint8 else x for x in (a, b))
        for y, x in offsets:
            out.append(np.stack([a[y : y + size, x : x + size], b[y : y + size, x : x + size]]))
    patches = np.ascontiguousarray(np.stack(out))
    assert patches.shape[-2:] == (size, size), "a crop runs over the image border"
    return patches


def real_patches(
    mirror: Path,
    size: int,
    offsets: Sequence[tuple[int, int]] = MSRS_OFFSETS,
    pairs: Iterable[tuple[str, str]] | None = None,
    limit: int | None = None,
    gray: Callable[[np.ndarray], np.ndarray] = luminance,
) -> np.ndarray:
    """Real patch pairs, uint8 N x 2 x S x S: :func:`crop_patches` of :func:`bundle_pairs` (by default every
    MSRS train pair, ir and vi luma, at :data:`MSRS_OFFSETS`)."""
    return crop_patches(bundle_pairs(mirror, pairs, limit, gray), size, offsets)


# ---------------------------------------------------------------------------------------- crash, resume
class Killed(Exception):
    """Stands in for a crash in the middle of training."""


class CrashAt(Trainer):
    """Wraps a trainer: records the steps it runs and raises :class:`Killed` when asked for step ``crash_at``."""

    def __init__(self, inner: Trainer, crash_at: int | None = None) -> None:
        super().__init__(str(inner.device))
        self.inner, self.crash_at, self.steps = inner, crash_at, []

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.inner.load_state_dict(state)

    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        if step == self.crash_at:
            raise Killed(f"killed before step {step}")
        self.steps.append(step)
        return self.inner.train_step(batch, step)

    def export(self) -> dict[str, Any]:
        return self.inner.export()


def log_rows(run: Path) -> list[list[str]]:
    with (run / LOSS_LOG).open(newline="") as f:
        return list(csv.reader(f))


def logged_steps(run: Path) -> list[int]:
    return [int(row[0]) for row in log_rows(run)[1:]]


def checkpoint_step(run: Path) -> int:
    return int(torch.load(run / CHECKPOINT, map_location="cpu", weights_only=True)["step"])


def assert_equal_nested(a: Any, b: Any, where: str = "") -> None:
    """Bitwise equality of nested dicts / lists of tensors and numbers (NaN equals NaN)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            assert_equal_nested(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), where  # NaN == NaN here


def assert_same_weights(a: Path, b: Path) -> None:
    """Two saved weight files (state dicts, or dicts of them) are bitwise equal."""
    assert_equal_nested(torch.load(a, weights_only=True), torch.load(b, weights_only=True), a.name)


def check_resume(
    make_trainer: Callable[[], Trainer],
    patches: np.ndarray,
    tmp_path: Path,
    steps: int = 4,
    checkpoint_every: int = 2,
    crash_at: int = 2,
    *,
    batch_size: int = 2,
    seed: int = 3,
    reference: Path | None = None,
    torn_line: bool = False,
) -> tuple[Path, Path]:
    """Train ``steps`` steps uninterrupted (in ``tmp_path / "straight"``; or take ``reference``, such a run
    already trained with these settings), then the same run (in ``tmp_path / "resumed"``) crashing before step
    ``crash_at`` and restarted. Asserts that the crash left the last checkpoint and one log row per step run,
    but no ``model.pt``; that the restart continued from that checkpoint (not from 0); and that the finished
    run has every step once in its log, and its log, ``model.pt`` and final checkpoint (networks, optimisers,
    schedulers) equal the uninterrupted run's bitwise. ``torn_line``: append a partial row to the log after
    the crash, as a kill in the middle of a write leaves it. Returns (uninterrupted, resumed) run folders."""
    settings = TrainSettings(steps=steps, batch_size=batch_size, seed=seed, checkpoint_every=checkpoint_every)
    straight = reference if reference is not None else tmp_path / "straight"
    if reference is None:
        train(make_trainer(), patches, settings, straight, progress=False)
    run = tmp_path / "resumed"
    with pytest.raises(Killed):
        train(CrashAt(make_trainer(), crash_at), patches, settings, run, progress=False)
    done = crash_at // checkpoint_every * checkpoint_every
    assert checkpoint_step(run) == done
    assert not (run / FINAL).exists()
    assert logged_steps(run) == list(range(1, crash_at + 1))  # the rows after the checkpoint too
    if torn_line:
        with (run / LOSS_LOG).open("a") as f:
            f.write("1")

    again = CrashAt(make_trainer())
    train(again, patches, settings, run, progress=False)
    assert again.steps == list(range(done, steps))  # continued from the checkpoint, not from 0
    assert logged_steps(run) == list(range(1, steps + 1))  # no duplicates, no torn line
    assert (run / LOSS_LOG).read_text() == (straight / LOSS_LOG).read_text()  # even the logged losses
    assert_same_weights(run / FINAL, straight / FINAL)
    final, expected = (torch.load(r / CHECKPOINT, weights_only=True) for r in (run, straight))
    assert final["step"] == expected["step"] == steps
    assert_equal_nested(final["trainer"], expected["trainer"], "trainer")
    return straight, run


# ---------------------------------------------------------------------------------------- options
def recipe(method: str) -> dict[str, Any]:
    """The catalogue's paper recipe of ``method``, flat: steps, batch_size, patch_size and the trainer options."""
    from fusebench.methods import METHODS

    resolved = METHODS.spec(method).training()
    return {**resolved.pop("options"), **resolved}


def check_untrained_errors(make_method: Callable[[], Any], tmp_path: Path, size: int = 8, **unknown: Any) -> None:
    """What every learned method raises before training: fusing without weights, a trainer given the options
    ``unknown`` (at least one of them not the trainer's), loading a ``model.pt`` that does not exist."""
    blank = np.zeros((size, size), np.float32)
    with pytest.raises(RuntimeError, match="no weights"):
        make_method().fuse(blank, blank)
    with pytest.raises(TypeError, match="unknown option"):
        make_method().trainer("cpu", **unknown)
    with pytest.raises(FileNotFoundError):
        make_method().load(tmp_path / "missing.pt")
