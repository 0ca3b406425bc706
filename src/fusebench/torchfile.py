"""Reading and writing PyTorch files (weights, checkpoints) with errors that name the file and say what to do.

Reading is always ``torch.load(..., weights_only=True)``: a file that needs arbitrary pickled objects is
refused and never executed. Writing goes through :func:`fusebench.atomic.atomic_path` (fsynced, renamed into
place), through a Python file object so that a full disk surfaces as ENOSPC (torch's own file writer
reports it as an opaque "enforce fail at inline_container.cc").
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from .atomic import atomic_path


class TorchFileError(ValueError):
    """A PyTorch file that cannot be loaded safely (truncated, corrupt, or not plain tensors)."""


def load_torch(
    path: str | os.PathLike[str],
    map_location: str | torch.device = "cpu",
    advice: str = "delete it and write or fetch it again",
) -> Any:
    """``torch.load(path, weights_only=True)``; a truncated, corrupt or pickled-object file raises
    :class:`TorchFileError` naming ``path`` and ending with ``advice`` (what to do)."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" in str(exc).lower():
            raise TorchFileError(
                f"{path} is not a plain state dict: it holds pickled Python objects besides tensors, which "
                f"fusebench does not execute, so it was not loaded. Use a file of tensors only (e.g. written "
                f"with torch.save(model.state_dict(), ...)); {advice}"
            ) from None
        raise TorchFileError(f"{path} is not a PyTorch file or is corrupt ({_first_line(exc)}); {advice}") from None
    except (RuntimeError, EOFError, OSError) as exc:
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError):
            raise
        size = path.stat().st_size
        raise TorchFileError(
            f"{path} ({size} bytes) is truncated or corrupt and was not loaded ({_first_line(exc) or 'ends early'}); "
            f"{advice}"
        ) from None


def save_torch(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to ``path`` atomically; a full disk raises :class:`fusebench.atomic.DiskFullError`
    naming ``path`` (the previous file, if any, is kept)."""
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        torch.save(obj, f)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].split(". This is an internal")[0] if text else ""
