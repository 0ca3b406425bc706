"""Scoring entry points: arrays (:func:`compute`) and folders of images (:func:`score_folders`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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


def compute(
    fused: np.ndarray,
    source_a: np.ndarray,
    source_b: np.ndarray,
    metrics: Sequence[str] | None = None,
    convention: str | Convention = "vifb",
) -> dict[str, float]:
    """Score one fused image against its two sources; ``{metric: value}`` in registry order.

    Images are HxW (gray) or HxWx3 (RGB; three equal channels count as gray) numpy arrays of equal size.
    uint8 arrays hold 0-255 values; float arrays are read on the convention's ``input_range`` - for ``vifb``
    that is 0-255 too (VIFB scores the decoded 8-bit files), so pass ``fusebench.imageio.read_uint8`` output,
    not ``read_image``'s [0, 1] floats (those trigger a warning).
    """
    conv = resolve_convention(convention)
    chosen = resolve_metrics(metrics)
    images = conv.prepare(fused, source_a, source_b)
    return {m.name: m(images, **conv.metric_params(m.name)) for m in chosen}


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
            problems.append(
                f"missing fused image {fused / stem}.* for sources {files_a[stem]}, {files_b[stem]}"
            )
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
) -> pd.DataFrame:
    """Score every fused image of a folder against the same-stem images of two source folders.

    Files are paired by stem (``fused/<stem>.png`` with ``source_a/<stem>.jpg`` ...); any image without its
    counterparts, or a size mismatch, is an error naming the files. Images are decoded with
    :func:`fusebench.imageio.read_uint8`. Returns one row per image (index "image", sorted) and one column
    per metric in registry order.
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
        rows.append(compute(image_f, image_a, image_b, names, conv))
    frame = pd.DataFrame(rows, index=pd.Index([p[0] for p in pairs], name="image"), columns=names)
    return frame
