"""Fuse a test split with one method; the benchmark's colour handling lives here and only here.

* gray + gray: the method fuses the two images directly; the output is gray.
* gray + colour: the colour source is converted to YCbCr (BT.601 full range), its Y is fused with the gray
  source, and the colour source's Cb/Cr are put back; the output is colour.
* colour + colour (multi-focus, multi-exposure): Y channels are fused by the method; chroma is fused by the
  usual saturation weighting C = sum(C_i |C_i - 0.5|) / sum(|C_i - 0.5|) (mean where both are neutral).
* decision-map methods (multi-focus: F = A m + B (1 - m)) compute their map on Y and apply it to the RGB
  sources directly, as their authors do, so every pixel comes from one source in all channels.

That is the ``fusebench`` protocol. Under the ``official`` protocol a method with published weights runs its
authors' test-time procedure end to end instead (``fuse_official(path_a, path_b)``: their source reading, grey or
YCrCb conversion, scaling, output stretch, rounding and colour restoration; :mod:`fusebench.official`), so that
its output is what the authors' code writes. Either way ``fusion.json`` beside the images records the method,
the protocol, the weights files (names and sha256) and a learned method's performance settings (:mod:`.accel`).
"""

from __future__ import annotations

import csv
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, write_text_atomic
from .color import rgb_to_ycbcr, ycbcr_to_rgb
from .imageio import read_image, write_png
from .methods.base import DecisionMapMethod, FusionMethod, LearnedMethod, combine

RUNTIME_CSV = "runtime.csv"
FUSION_JSON = "fusion.json"
PROTOCOLS = ("fusebench", "official")


def has_official_procedure(method: FusionMethod) -> bool:
    """Whether ``method`` implements its authors' test-time procedure (``fuse_official``)."""
    return callable(getattr(method, "fuse_official", None))


def check_protocol(method: FusionMethod, protocol: str, official_weights: bool) -> None:
    """Refuse a protocol the method cannot run, with a message that says what to do."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if protocol != "official":
        return
    if not has_official_procedure(method):
        raise ValueError(
            f"{method.name} has no official test-time procedure in fusebench (no fuse_official); use protocol fusebench"
        )
    if not official_weights:
        raise ValueError(
            f"protocol official runs {method.name}'s published procedure with its authors' weights: "
            "give them (--official, or `official:` in the config entry), or use protocol fusebench"
        )


def fuse_chroma(c1: np.ndarray, c2: np.ndarray) -> np.ndarray:
    w1, w2 = np.abs(c1 - 0.5), np.abs(c2 - 0.5)
    total = w1 + w2
    mean = (c1 + c2) / 2.0
    safe = np.where(total > 0, total, 1.0)
    return np.where(total > 0, (c1 * w1 + c2 * w2) / safe, mean).astype(np.float32)


def fuse_images(method: FusionMethod, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Fuse two [0, 1] images (HxW or HxWx3) following the colour rules above."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"sources differ in size: {a.shape[:2]} vs {b.shape[:2]}")
    ycc_a = rgb_to_ycbcr(a) if a.ndim == 3 else None
    ycc_b = rgb_to_ycbcr(b) if b.ndim == 3 else None
    y_a = a if ycc_a is None else ycc_a[..., 0]
    y_b = b if ycc_b is None else ycc_b[..., 0]
    if isinstance(method, DecisionMapMethod) and (ycc_a is not None or ycc_b is not None):
        rgb_a, rgb_b = (img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2) for img in (a, b))
        return np.clip(combine(method.decision_map(y_a, y_b), rgb_a, rgb_b), 0.0, 1.0)
    fused_y = np.asarray(method.fuse(y_a, y_b), dtype=np.float32)
    if fused_y.shape != y_a.shape:
        raise RuntimeError(f"{method.name} returned shape {fused_y.shape} for inputs of shape {y_a.shape}")
    if ycc_a is None and ycc_b is None:
        return np.clip(fused_y, 0.0, 1.0)
    if ycc_a is not None and ycc_b is not None:
        chroma = np.stack([fuse_chroma(ycc_a[..., c], ycc_b[..., c]) for c in (1, 2)], axis=-1)
    else:
        chroma = (ycc_a if ycc_a is not None else ycc_b)[..., 1:]  # type: ignore[index]
    return ycbcr_to_rgb(np.concatenate([np.clip(fused_y, 0.0, 1.0)[..., None], chroma], axis=-1))


def fuse_pairs(
    method: FusionMethod,
    pairs: Sequence[tuple[str, Path, Path]],
    out_dir: Path,
    progress: bool = True,
    protocol: str = "fusebench",
    weights: Sequence[Path] = (),
) -> Path:
    """Fuse each (name, path_a, path_b) into ``out_dir/<name>.png`` under ``protocol``; per-image seconds go to
    runtime.csv, and ``fusion.json`` records the method, protocol and ``weights`` files (with their sha256)."""
    if protocol == "official" and not has_official_procedure(method):
        raise ValueError(f"{method.name} has no official test-time procedure (fuse_official)")
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, path_a, path_b in tqdm(pairs, desc=f"fuse {method.name}", disable=not progress, unit="pair"):
        if protocol == "official":
            start = time.perf_counter()
            fused = method.fuse_official(path_a, path_b)  # type: ignore[attr-defined]
        else:
            a, b = read_image(path_a), read_image(path_b)
            if a.shape[:2] != b.shape[:2]:
                raise ValueError(f"pair {name}: {path_a} is {a.shape[:2]} but {path_b} is {b.shape[:2]}")
            start = time.perf_counter()
            fused = fuse_images(method, a, b)
        rows.append((name, time.perf_counter() - start))
        write_png(out_dir / f"{name}.png", fused)
    runtime = out_dir / RUNTIME_CSV
    with atomic_path(runtime) as tmp, tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", "seconds"])
        writer.writerows((name, f"{sec:.6f}") for name, sec in rows)
    write_fusion_json(out_dir, method, protocol, weights)
    return runtime


def weights_files(path: Path) -> list[Path]:
    """The files of a weights argument: the file itself, plus the data shards of a TF1 checkpoint given by its
    ``.index`` (they sit beside it as ``<prefix>.data-*``)."""
    path = Path(path)
    if path.suffix != ".index":
        return [path]
    return [path, *sorted(path.parent.glob(f"{path.stem}.data-*"))]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _device_name(method: FusionMethod) -> str:
    """Where the fusion ran, as the report shows it next to the run time (e.g. "cpu (2 threads)", "cuda:0 (NVIDIA
    H100 80GB HBM3)")."""
    import torch

    device = torch.device(getattr(method, "device", "cpu"))
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def write_fusion_json(out_dir: Path, method: FusionMethod, protocol: str, weights: Sequence[Path]) -> Path:
    """``fusion.json``: which method, options, protocol and weights files produced the images, and for a learned
    method its performance settings (``accel``: precision, channels_last, compile); read by the report to label
    each row."""
    files = [f for w in weights for f in weights_files(Path(w))]
    record: dict[str, Any] = {
        "method": method.name,
        "options": method.options,
        "task": method.task,
        "protocol": protocol,
        "weights": [{"file": f.name, "sha256": _sha256(f)} for f in files],
        "device": _device_name(method),
    }
    if isinstance(method, LearnedMethod):
        record["accel"] = method.accel.record()
    path = out_dir / FUSION_JSON
    write_text_atomic(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return path
