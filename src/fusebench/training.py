"""One training loop for every learned method: seeded, logged, checkpointed, resumable.

A method supplies a :class:`Trainer` (its networks, optimisers and one ``train_step``); this module owns
everything around it, so that every method gets the same guarantees:

* batches are drawn with a generator seeded by ``(seed, step)``, so a resumed run sees exactly the
  batches the uninterrupted run would have seen;
* the loss of every step goes to ``loss.csv``;
* ``checkpoint.pt`` (networks, optimisers, step, torch RNG, and the run's recipe) is written atomically every
  ``checkpoint_every`` steps; a restarted run continues from it, and the log is cut back to that step;
* a checkpoint written with other settings (steps, batch size, seed, learning rate or any other trainer option,
  another patch file...) is never resumed: the run starts over from step 0 and the log says what changed;
* the final weights go to ``model.pt`` (what :meth:`LearnedMethod.load` reads), the recipe to ``recipe.json``;
* optional performance settings (:class:`~fusebench.accel.Accel`: bf16 autocast, channels_last, torch.compile)
  apply to every trainer's networks alike; on CUDA the patch array is moved to the GPU once when it fits.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm import tqdm

from .accel import Accel
from .atomic import atomic_path, remove_stale_temps
from .torchfile import load_torch, save_torch

CHECKPOINT = "checkpoint.pt"
FINAL = "model.pt"
LOSS_LOG = "loss.csv"
RECIPE = "recipe.json"
#: TrainSettings / data options that arrive in ``train_options`` and are not a trainer's business
LOOP_KEYS: frozenset[str] = frozenset({"steps", "batch_size", "checkpoint_every", "patch_size"})
#: on CUDA the patch array moves to the GPU once when it takes less than this fraction of its free memory
DEVICE_PATCHES_FRACTION = 0.25

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

    def networks(self) -> list[torch.nn.Module]:
        """The trainer's networks, for :meth:`Accel.train_networks`: its ``nn.Module`` attributes, also those in
        a dict, list or tuple attribute (e.g. a GAN's discriminators)."""
        found: list[torch.nn.Module] = []
        for value in vars(self).values():
            items = (
                value.values() if isinstance(value, Mapping) else value if isinstance(value, list | tuple) else [value]
            )
            found += [v for v in items if isinstance(v, torch.nn.Module) and not any(v is f for f in found)]
        return found


class NetTrainer(Trainer):
    """A trainer of one network ``net`` with one optimiser ``optimizer``: its resume state is theirs."""

    net: torch.nn.Module
    optimizer: torch.optim.Optimizer

    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])


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


class PatchBatches:
    """Batches of a uint8 patch array as float32 in [0, 1] on ``device``. ``resident`` (default: on CUDA when
    the array takes less than :data:`DEVICE_PATCHES_FRACTION` of the free GPU memory) keeps the whole array on
    the device, moved once, and indexes it there; the values are the same either way (one lookup table of
    ``v / 255`` computed as the host path computes it)."""

    def __init__(self, patches: np.ndarray, device: str | torch.device, resident: bool | None = None) -> None:
        self.patches, self.device = patches, torch.device(device)
        if resident is None:
            resident = self.device.type == "cuda" and (
                patches.nbytes < DEVICE_PATCHES_FRACTION * torch.cuda.mem_get_info(self.device)[0]
            )
        self.resident: torch.Tensor | None = None
        if resident:
            self.resident = torch.from_numpy(np.ascontiguousarray(patches)).to(self.device)
            self.scale = torch.from_numpy(np.arange(256, dtype=np.float32) / 255.0).to(self.device)

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        if self.resident is None:
            return torch.from_numpy(np.asarray(self.patches[idx], dtype=np.float32) / 255.0).to(self.device)
        return self.scale[self.resident[torch.from_numpy(idx).to(self.device)].long()]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def train(
    trainer: Trainer,
    patches: np.ndarray,
    settings: TrainSettings,
    out_dir: Path,
    progress: bool = True,
    recipe: Mapping[str, Any] | None = None,
    accel: Accel | None = None,
) -> Path:
    """Train until ``settings.steps`` (resuming from ``out_dir/checkpoint.pt``); return ``model.pt``.

    ``recipe`` (JSON values) is what defines the run besides ``settings``: method, options, every trainer
    option, the patch file's sha256. With ``settings.steps``, ``batch_size`` and ``seed`` it is stored in every
    checkpoint; a checkpoint with another recipe is not resumed but the run starts over (the log names what
    changed). It is written to ``recipe.json`` beside ``model.pt``, with ``checkpoint_every`` and the ``accel``
    settings; settings other than the default ones are part of the recipe (a bf16 checkpoint does not resume
    an fp32 run), the default ones are not (checkpoints of earlier fusebench versions still resume).
    """
    accel = accel or Accel()
    out_dir.mkdir(parents=True, exist_ok=True)
    for target in (CHECKPOINT, FINAL, LOSS_LOG):  # temporary files of a run killed while writing them
        remove_stale_temps(out_dir / target)
    if patches.ndim != 4 or patches.shape[1] != 2:
        raise ValueError(f"patches must be Nx2xHxW, got shape {patches.shape}")
    run = {"steps": settings.steps, "batch_size": settings.batch_size, "seed": settings.seed, **(recipe or {})}
    if not accel.is_default:
        run["accel"] = accel.record()
    accel.train_networks(trainer.networks(), trainer.device)
    batches = PatchBatches(patches, trainer.device)
    start, seconds = _resume(trainer, out_dir / CHECKPOINT, run)
    began = time.perf_counter() - seconds  # training time over every resumed part (for the report)
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
            with accel.autocast(trainer.device):  # forward and loss; bf16 needs no loss scaling
                losses = trainer.train_step(accel.layout(batches(idx)), step)
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
                save_checkpoint(trainer, done, out_dir / CHECKPOINT, run, time.perf_counter() - began)
    finally:
        bar.close()
        log_file.close()
    with atomic_path(out_dir / RECIPE) as tmp:
        seconds = round(time.perf_counter() - began, 3)
        used = {**run, "accel": accel.record(), "checkpoint_every": settings.checkpoint_every, "train_seconds": seconds}
        tmp.write_text(json.dumps(used, indent=2) + "\n")
    final = out_dir / FINAL
    save_torch(trainer.export(), final)
    return final


def save_checkpoint(trainer: Trainer, step: int, path: Path, run: Mapping[str, Any], seconds: float = 0.0) -> None:
    """Write the resume point: ``trainer``'s state after ``step`` steps, the RNG, the ``run`` recipe and the
    ``seconds`` of training so far."""
    state = {
        "step": step,
        "seconds": seconds,
        "trainer": trainer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "recipe": json.dumps(run, sort_keys=True),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state_all()
    save_torch(state, path)


def _resume(trainer: Trainer, path: Path, run: Mapping[str, Any]) -> tuple[int, float]:
    """The step to continue from and the training seconds spent so far: the checkpoint's, when it was written with
    the same ``run`` recipe; else (0, 0), after removing that checkpoint and the outputs of the old run."""
    if not path.exists():
        return 0, 0.0
    state = load_torch(path, trainer.device, advice=f"delete it to train {path.parent} from step 0")
    stored = state.get("recipe")
    if stored != json.dumps(run, sort_keys=True):
        changed = _changes(json.loads(stored), run) if stored else "the checkpoint records no settings"
        print(
            f"not resuming {path}: the run's settings changed ({changed}); training starts over from step 0",
            file=sys.stderr,
            flush=True,
        )
        for old in (path, path.parent / FINAL, path.parent / RECIPE):
            old.unlink(missing_ok=True)
        return 0, 0.0
    trainer.load_state_dict(state["trainer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return int(state["step"]), float(state.get("seconds", 0.0))


def _changes(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> str:
    """``key: old -> new`` for each differing (nested) key, comma-separated."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "(unset)"), new.get(key, "(unset)")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            if inner := _changes(a, b, f"{prefix}{key}."):
                out.append(inner)
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return ", ".join(out)


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
