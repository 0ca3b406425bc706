"""Scoring entry points: arrays (:func:`compute`) and folders of images (:func:`score_folders`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from ..imageio import list_images, read_uint8
from .base import CONVENTIONS, METRICS, Convention, Metric


class PairingError(ValueError):
    """The fused and source folders do not hold the same images; the message names the offending files."""


def resolve_convention(convention: str | Convention) -> Convention:
    return convention if isinstance(convention, Convention) else CONVENTIONS.get(convention)


def resolve_metrics(metrics: Sequence[str] | None) -> list[Metric]:
    """The requested metrics in registry order (all for ``None``); an unknown name raises, listing all."""
    if isinstance(metrics, str):
        raise TypeError("metrics must be a list of names, not a string")
    wanted = METRICS.names() if metrics is None else list(metrics)
    for name in wanted:
        METRICS.get(name)
    if not wanted:
        raise ValueError(f"no metrics requested; known: {', '.join(METRICS.names())}")
    return [METRICS.get(name) for name in METRICS.names() if name in set(wanted)]


def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _infer_batched(x: Any, tensor: bool) -> bool:
    """numpy: (N, H, W) or (N, H, W, 3) are batches; torch: (N, H, W) or (N, C, H, W)."""
    if x.ndim == 4:
        return True
    if x.ndim == 3:
        return (x.shape[0] not in (1, 3)) if tensor else (x.shape[2] not in (1, 3))
    return False


def _to_numpy_layout(x: Any, batched: bool) -> np.ndarray:
    """A torch tensor in torch layout ((N,) (C,) H, W) as a numpy array in numpy layout ((N,) H, W (, C))."""
    array = x.detach().cpu().numpy()
    lead = 1 if batched else 0
    if array.ndim == lead + 3:  # channels first -> last
        array = np.moveaxis(array, lead, -1)
    return array


def compute(
    fused: Any,
    source_a: Any,
    source_b: Any,
    metrics: Sequence[str] | None = None,
    convention: str | Convention = "vifb",
    *,
    batch: bool | None = None,
    backend: str | None = None,
    device: str | None = None,
) -> dict[str, float] | dict[str, np.ndarray]:
    """Score fused images against their two sources; ``{metric: value}`` in registry order.

    Images are numpy arrays (HxW gray or HxWx3 RGB; three equal channels count as gray) or torch tensors
    (HxW or CxHxW, C = 1 or 3), on any device. uint8 holds 0-255 values; floats are read on the
    convention's ``input_range`` - 0-255 for ``vifb`` and ``cddfuse`` (pass ``fusebench.imageio.read_uint8``
    output, not ``read_image``'s [0, 1] floats: those trigger a warning), [0, 1] for ``fusebench``.

    A leading batch dimension ((N, H, W[, 3]) numpy, (N[, C], H, W) torch; ``batch`` forces or forbids it,
    by default 4-D arrays and 3-D ones whose channel axis is not 1 or 3 are batches) gives one value per image:
    ``{metric: float64 array (N,)}``. A source may be one image shared by the whole batch: numpy, with fewer
    dimensions than the fused batch; torch, a 2-D tensor; both, a batch of 1 (e.g. a colour numpy source
    (1, H, W, 3) for a gray fused batch, a colour tensor (1, 3, H, W)).

    ``backend`` "numpy" (the reference implementations, image by image) or "torch" (batched torch
    implementations on the tensors' device where a metric has one, see ``Metric.has_torch``; the others
    run in numpy image by image). Default: "torch" for tensor input, else "numpy". ``device`` (torch
    backend only, e.g. "cpu", "cuda"): where the torch metrics run; default the tensors' device, else the CPU.
    """
    conv = resolve_convention(convention)
    chosen = resolve_metrics(metrics)
    tensor = any(_is_tensor(x) for x in (fused, source_a, source_b))
    backend = backend or ("torch" if tensor else "numpy")
    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', not {backend!r}")
    batched = _infer_batched(fused, _is_tensor(fused)) if batch is None else batch
    if device is not None and backend != "torch":
        raise ValueError(f"device={device!r} applies to the torch backend only (backend is {backend!r})")
    if backend == "torch":
        return _compute_torch(fused, source_a, source_b, chosen, conv, batched, device)
    if tensor:
        fused, source_a, source_b = (
            _to_numpy_layout(x, batched and x.ndim == fused.ndim) if _is_tensor(x) else x
            for x in (fused, source_a, source_b)
        )
    if not batched:
        images = conv.prepare(fused, source_a, source_b)
        return {m.name: m(images, **conv.metric_params(m.name)) for m in chosen}
    fused = np.asarray(fused)
    rows = []
    for i in range(len(fused)):
        a, b = (_item(x, i, fused.ndim) for x in (source_a, source_b))
        images = conv.prepare(fused[i], a, b)
        rows.append([m(images, **conv.metric_params(m.name)) for m in chosen])
    table = np.asarray(rows, dtype=np.float64).reshape(len(fused), len(chosen))
    return {m.name: table[:, k] for k, m in enumerate(chosen)}


def _item(source: Any, i: int, batch_ndim: int) -> Any:
    """Image i of a batched source (as many dimensions as the fused batch; a batch of 1 is shared), or the
    source itself when it is a single image."""
    if np.ndim(source) != batch_ndim:
        return source
    return source[0] if len(source) == 1 else source[i]


def _compute_torch(
    fused: Any,
    source_a: Any,
    source_b: Any,
    chosen: list[Metric],
    conv: Convention,
    batched: bool,
    device_name: str | None = None,
) -> dict[str, float] | dict[str, np.ndarray]:
    import torch

    from . import _torch

    if device_name is not None:
        device = torch.device(device_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {device_name!r}: CUDA is not available here; use device 'cpu'")
    else:
        device = next((x.device for x in (fused, source_a, source_b) if _is_tensor(x)), torch.device("cpu"))

    def tensor(x: Any) -> torch.Tensor:
        if _is_tensor(x):
            return x.to(device)
        array = np.asarray(x)
        lead = 1 if batched and array.ndim == np.ndim(fused) else 0
        if array.ndim == lead + 3:  # numpy channels last -> torch channels first
            array = np.moveaxis(array, -1, lead)
        return torch.from_numpy(np.require(array, requirements=["C", "W"])).to(device)  # decoded files are read-only

    tensors = [tensor(x) for x in (fused, source_a, source_b)]
    # batched: 4-D (N, C, H, W), 3-D (N, H, W), 2-D (H, W) shared; a batch of 1 is shared by all images
    shared = [t[None] if not batched or t.ndim == 2 else t for t in tensors]
    images = _torch.prepare(conv, *shared, batched=True)
    out: dict[str, np.ndarray] = {}
    fallback = [m for m in chosen if not m.has_torch]
    for m in chosen:
        if m.has_torch:
            out[m.name] = _torch.run(m.name, images, conv.metric_params(m.name))
    if fallback:
        numpy_inputs = [_to_numpy_layout(t, True) for t in shared]
        n = images.fused.shape[0]
        for i in range(n):
            images_i = conv.prepare(*(x[i] if len(x) > 1 else x[0] for x in numpy_inputs))
            for m in fallback:
                out.setdefault(m.name, np.empty(n))[i] = m(images_i, **conv.metric_params(m.name))
    ordered = {m.name: out[m.name] for m in chosen}
    if batched:
        return ordered
    return {name: float(values[0]) for name, values in ordered.items()}


def _pair_files(source_a: Path, source_b: Path, fused: Path) -> list[tuple[str, Path, Path, Path]]:
    files_a, files_b, files_f = list_images(source_a), list_images(source_b), list_images(fused)
    problems = []
    for stem in sorted(set(files_a) - set(files_b)):
        problems.append(f"{files_a[stem]} has no counterpart named {stem}.* in {source_b}")
    for stem in sorted(set(files_b) - set(files_a)):
        problems.append(f"{files_b[stem]} has no counterpart named {stem}.* in {source_a}")
    sources = sorted(set(files_a) & set(files_b))
    for stem in sources:
        if stem not in files_f:
            problems.append(f"missing fused image {fused / stem}.* for sources {files_a[stem]}, {files_b[stem]}")
    for stem in sorted(set(files_f) - set(files_a) - set(files_b)):
        problems.append(f"fused image {files_f[stem]} has no source pair named {stem}.*")
    if problems:
        raise PairingError(f"{len(problems)} unpaired image(s):\n  " + "\n  ".join(problems))
    if not sources:
        raise PairingError(f"no images to score in {source_a}, {source_b} and {fused}")
    return [(stem, files_a[stem], files_b[stem], files_f[stem]) for stem in sources]


def score_folders(
    source_a: str | os.PathLike[str],
    source_b: str | os.PathLike[str],
    fused: str | os.PathLike[str],
    convention: str | Convention = "vifb",
    metrics: Sequence[str] | None = None,
    *,
    progress: bool = False,
    backend: str = "numpy",
    device: str | None = None,
) -> pd.DataFrame:
    """Score every fused image of a folder against the same-stem images of two source folders.

    Files are paired by stem (``fused/<stem>.png`` with ``source_a/<stem>.jpg`` ...); any image without its
    counterparts, or a size mismatch, is an error naming the files. Images are decoded with
    :func:`fusebench.imageio.read_uint8`. Returns one row per image (index "image", sorted) and one column
    per metric in registry order. ``backend`` and ``device`` as in :func:`compute` (torch: image by image on
    ``device``, the metrics without a torch implementation in numpy).
    """
    conv = resolve_convention(convention)
    chosen = resolve_metrics(metrics)
    names = [m.name for m in chosen]
    pairs = _pair_files(Path(source_a), Path(source_b), Path(fused))
    rows = []
    for stem, path_a, path_b, path_f in tqdm(pairs, desc="metrics", unit="image", disable=not progress):
        image_a, image_b, image_f = read_uint8(path_a), read_uint8(path_b), read_uint8(path_f)
        sizes = {p: im.shape[:2] for p, im in ((path_a, image_a), (path_b, image_b), (path_f, image_f))}
        if len(set(sizes.values())) != 1:
            detail = ", ".join(f"{p} is {h}x{w}" for p, (h, w) in sizes.items())
            raise ValueError(f"image {stem}: sizes differ: {detail}")
        rows.append(compute(image_f, image_a, image_b, names, conv, backend=backend, device=device))
    frame = pd.DataFrame(rows, index=pd.Index([p[0] for p in pairs], name="image"), columns=names)
    return frame
