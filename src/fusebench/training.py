"""One training loop for every learned method: seeded, logged, checkpointed, resumable.

A method supplies a :class:`Trainer` (its networks, optimisers and one ``train_step``); this module owns
everything around it, so that every method gets the same guarantees:

* batches are drawn with a generator seeded by ``(seed, step)``, so a resumed run sees exactly the
  batches the uninterrupted run would have seen;
* the loss of every step goes to ``loss.csv``;
* ``checkpoint.pt`` (networks, optimisers, step, torch RNG) is written atomically every
  ``checkpoint_every`` steps; a restarted run continues from it, and the log is cut back to that step;
* the final weights go to ``model.pt`` (what :meth:`LearnedMethod.load` reads).
"""

from __future__ import annotations

import csv
import os
import random
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from .atomic import atomic_path, remove_stale_temps
from .torchfile import load_torch, save_torch

CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
LOSS_LOG = "loss.csv"
#: TrainSettings / data options that arrive in ``train_options`` and are not a trainer's business
LOOP_KEYS: frozenset[str] = frozenset({"steps", "batch_size", "checkpoint_every", "patch_size"})

T = TypeVar("T")


class Trainer(ABC):
    """What a learned method provides to the shared loop."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks and optimisers (tensors, numbers, dicts only)."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    @abstractmethod
    def train_step(self, batch: torch.Tensor, step: int) -> dict[str, float]:
        """One optimisation step on ``batch`` (Bx2xHxW float in [0, 1], sources a and b); returns losses."""

    @abstractmethod
    def export(self) -> dict[str, Any]:
        """The weights used for fusion, as saved in ``model.pt``."""


def check_options(method: str, options: Mapping[str, Any], allowed: frozenset[str] = LOOP_KEYS) -> None:
    """Raise ``TypeError`` for trainer options that are neither the trainer's nor the loop's."""
    unknown = set(options) - set(allowed)
    if unknown:
        raise TypeError(f"{method} trainer: unknown option(s) {', '.join(sorted(unknown))}")


def seeded(seed: int | None, build: Callable[[], T]) -> T:
    """``build()`` under a forked torch RNG seeded with ``seed`` (or on the global RNG when ``seed=None``): two
    trainers built with one seed start from the same weights whatever the global RNG state."""
    if seed is None:
        return build()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build()


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch_size: int
    seed: int = 0
    checkpoint_every: int = 100

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "checkpoint_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainSettings.{name} must be >= 1, got {getattr(self, name)}")


def pick_device(requested: str = "auto") -> str:
    """Resolve a device name: "auto" means CUDA when available, else CPU."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return requested


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def batch_indices(n_patches: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The patch indices of batch ``step``: a pure function of (seed, step), hence resumable."""
    rng = np.random.default_rng([seed, step])
    return np.sort(rng.choice(n_patches, size=min(batch_size, n_patches), replace=False))


def train(
    trainer: Trainer,
    patches: np.ndarray,
    settings: TrainSettings,
    out_dir: Path,
    progress: bool = True,
) -> Path:
    """Train until ``settings.steps`` (resuming from ``out_dir/checkpoint.pt``); return ``model.pt``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for target in (CHECKPOINT, FINAL, LOSS_LOG):  # temporary files of a run killed while writing them
        remove_stale_temps(out_dir / target)
    if patches.ndim != 4 or patches.shape[1] != 2:
        raise ValueError(f"patches must be Nx2xHxW, got shape {patches.shape}")
    start = _resume(trainer, out_dir / CHECKPOINT)
    if start > settings.steps:
        raise ValueError(
            f"{out_dir / CHECKPOINT} is at step {start}, beyond the {settings.steps} steps asked for; "
            "delete the run folder to train a shorter run"
        )
    if start == 0:
        seed_everything(settings.seed)
    else:
        print(f"resuming {out_dir} from its checkpoint at step {start}", file=sys.stderr, flush=True)
    _truncate_log(out_dir / LOSS_LOG, start)

    log_file = (out_dir / LOSS_LOG).open("a", newline="")
    writer: csv.writer | None = None  # type: ignore[valid-type]
    header_written = (out_dir / LOSS_LOG).stat().st_size > 0
    bar = tqdm(total=settings.steps, initial=start, desc=f"train {out_dir.name}", disable=not progress, unit="step")
    try:
        for step in range(start, settings.steps):
            idx = batch_indices(len(patches), settings.batch_size, settings.seed, step)
            batch = torch.from_numpy(np.asarray(patches[idx], dtype=np.float32) / 255.0).to(trainer.device)
            losses = trainer.train_step(batch, step)
            if writer is None:
                writer = csv.writer(log_file)
                if not header_written:
                    writer.writerow(["step", *losses])
            writer.writerow([step + 1, *(f"{v:.6g}" for v in losses.values())])
            bar.update(1)
            bar.set_postfix({k: f"{v:.4g}" for k, v in list(losses.items())[:3]})
            done = step + 1
            if done % settings.checkpoint_every == 0 or done == settings.steps:
                log_file.flush()
                os.fsync(log_file.fileno())
                save_checkpoint(trainer, done, out_dir / CHECKPOINT)
    finally:
        bar.close()
        log_file.close()
    final = out_dir / FINAL
    save_torch(trainer.export(), final)
    return final


def save_checkpoint(trainer: Trainer, step: int, path: Path) -> None:
    state = {"step": step, "trainer": trainer.state_dict(), "torch_rng": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_torch(state, path)


def _resume(trainer: Trainer, path: Path) -> int:
    if not path.exists():
        return 0
    state = load_torch(path, trainer.device, advice=f"delete it to train {path.parent} from step 0")
    trainer.load_state_dict(state["trainer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return int(state["step"])


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows written after the checkpoint we resume from (they will be recomputed)."""
    if not path.exists():
        path.touch()
        return
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header = rows[0]
    # A killed run can leave a torn last line (e.g. "1" from "15,0.3,..."): keep only complete rows.
    kept = [header] + [r for r in rows[1:] if len(r) == len(header) and r[0].isdigit() and int(r[0]) <= step]
    with atomic_path(path) as tmp, tmp.open("w", newline="") as f:
        csv.writer(f).writerows(kept if step > 0 else [])
