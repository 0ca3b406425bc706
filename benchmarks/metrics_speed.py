"""Speed of fusebench's metrics against the reference evaluator, on real 640x480 triplets.

The triplets are the MSRS test pairs of the data bundle (../shared/datasets/MSRS/test), fused by averaging
(fused = round((ir + vi) / 2), an RGB image since the visible images are colour). Both sides score the same
triplets in one run:

* reference: ``benchmarks/reference_evaluator.py``, the straightforward port of MMIF-CDDFuse's
  utils/Evaluator.py, on the gray float32 arrays its image_read_cv2 would return (reading not timed);
* fusebench: ``fusebench.metrics.compute(..., convention="cddfuse")`` on the decoded uint8 arrays (its colour
  handling and preparation are timed), numpy backend, or the batched torch backend (``--backend torch``,
  ``--device cuda``, ``--batch N``).

Prints per-metric times (ms per triplet), the ratio per metric and in total, FMI time per triplet, and the
machine's load average. ``python benchmarks/metrics_speed.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_evaluator import PAPER_METRICS, Evaluator, bgr2gray_float32  # noqa: E402

from fusebench.metrics import clear_source_memo, compute  # noqa: E402
from fusebench.metrics.alloc import keep_freed_memory  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
REFERENCE_CALLS = {
    "EN": lambda f, a, b: Evaluator.EN(f),
    "SD": lambda f, a, b: Evaluator.SD(f),
    "SF": lambda f, a, b: Evaluator.SF(f),
    "MI": Evaluator.MI,
    "SCD": Evaluator.SCD,
    "VIF": Evaluator.VIFF,
    "Qabf": Evaluator.Qabf,
    "SSIM": Evaluator.SSIM,
}


def load_triplets(shared: Path, limit: int) -> list[dict]:
    folder = shared / "datasets" / "MSRS" / "test"
    names = sorted(p.name for p in (folder / "ir").iterdir())[:limit]
    triplets = []
    for name in names:
        ir = np.asarray(Image.open(folder / "ir" / name).convert("L"))
        vi = np.asarray(Image.open(folder / "vi" / name).convert("RGB"))
        fused = np.round((ir[..., None].astype(np.float64) + vi) / 2).astype(np.uint8)

        def gray(x: np.ndarray) -> np.ndarray:  # image_read_cv2(path, 'GRAY') of the image x
            rgb = np.repeat(x[..., None], 3, axis=2) if x.ndim == 2 else x
            return np.round(bgr2gray_float32(rgb))

        triplets.append({"name": name, "u8": (fused, ir, vi), "gray": (gray(fused), gray(ir), gray(vi))})
    return triplets


def timed(func, repeat: int, *args: object) -> tuple[float, object]:  # noqa: ANN001
    """Best wall time of ``func(*args)`` over ``repeat`` runs (fusebench's source memo cleared before each)."""
    best, value = float("inf"), None
    for _ in range(repeat):
        clear_source_memo()
        start = time.perf_counter()
        value = func(*args)
        best = min(best, time.perf_counter() - start)
    return best, value


def cpu_table(triplets: list[dict], repeat: int, skip_reference: bool) -> dict:
    metrics = list(PAPER_METRICS)
    ref_t = {m: [] for m in metrics}
    ours_t = {m: [] for m in metrics}
    ours_all = []
    for t in triplets:
        f, a, b = t["gray"]
        fu, iu, vu = t["u8"]
        for m in metrics:
            if not skip_reference:
                ref_t[m].append(timed(REFERENCE_CALLS[m], 1, f, a, b)[0])
            ours_t[m].append(timed(compute, repeat, fu, iu, vu, [m], "cddfuse")[0])
        ours_all.append(timed(compute, repeat, fu, iu, vu, metrics, "cddfuse")[0])
    rows = {}
    for m in metrics:
        ref = float(np.mean(ref_t[m])) * 1e3 if not skip_reference else float("nan")
        ours = float(np.mean(ours_t[m])) * 1e3
        rows[m] = {"reference_ms": ref, "fusebench_ms": ours, "ratio": ref / ours}
    ref_total = sum(r["reference_ms"] for r in rows.values())
    ours_total = float(np.mean(ours_all)) * 1e3
    rows["total (8 in one call)"] = {
        "reference_ms": ref_total,
        "fusebench_ms": ours_total,
        "ratio": ref_total / ours_total,
    }
    return rows


def fmi_times(triplets: list[dict], repeat: int) -> dict:
    out = {}
    for name in ("FMI_pixel", "FMI_dct", "FMI_w"):
        times = []
        for t in triplets:
            fu, iu, vu = t["u8"]
            times.append(timed(compute, repeat, fu, iu, vu, [name], "cddfuse")[0])
        out[name] = float(np.mean(times))
    return out


def torch_throughput(triplets: list[dict], device: str, batch: int, rounds: int) -> dict:
    import torch

    def stack(k: int) -> torch.Tensor:
        arrays = [t["u8"][k] for t in triplets]
        reps = -(-batch // len(arrays))
        arrays = (arrays * reps)[:batch]
        x = torch.from_numpy(np.stack(arrays))
        return x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x[:, None]

    fused, ir, vi = (stack(k).to(device) for k in range(3))
    metrics = list(PAPER_METRICS)

    def run() -> dict:
        out = compute(fused, ir, vi, metrics, "cddfuse", batch=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return out

    run()  # warm-up (kernels, caches)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    best = min(times)
    per_metric = {}
    for m in metrics:
        start = time.perf_counter()
        compute(fused, ir, vi, [m], "cddfuse", batch=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        per_metric[m] = (time.perf_counter() - start) / batch * 1e3
    return {
        "device": device,
        "batch": batch,
        "seconds_per_batch": best,
        "triplets_per_minute": 60.0 * batch / best,
        "ms_per_triplet_by_metric": per_metric,
    }


def markdown(rows: dict) -> str:
    lines = ["| metric | reference (ms/triplet) | fusebench (ms/triplet) | speed-up |", "|---|---:|---:|---:|"]
    for m, r in rows.items():
        lines.append(f"| {m} | {r['reference_ms']:.1f} | {r['fusebench_ms']:.2f} | {r['ratio']:.0f}x |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shared", type=Path, default=Path(os.environ.get("FUSEBENCH_SHARED", REPO.parent / "shared")))
    parser.add_argument("--pairs", type=int, default=22, help="MSRS test pairs to score (default: all 22)")
    parser.add_argument("--repeat", type=int, default=3, help="fusebench timings: best of N runs")
    parser.add_argument("--backend", choices=("numpy", "torch"), default="numpy")
    parser.add_argument("--device", default="cpu", help="torch device for --backend torch (cpu, cuda)")
    parser.add_argument("--batch", type=int, default=64, help="triplets per torch batch")
    parser.add_argument("--fmi-pairs", type=int, default=3, help="triplets for the FMI timing (0: skip)")
    parser.add_argument("--skip-reference", action="store_true", help="do not time the reference evaluator")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--default-malloc",
        action="store_true",
        help="leave glibc's allocator as it is (default: keep freed memory, as `fusebench metrics` does)",
    )
    args = parser.parse_args()
    tuned = False if args.default_malloc else keep_freed_memory()

    load_before = os.getloadavg()
    triplets = load_triplets(args.shared, args.pairs)
    h, w = triplets[0]["u8"][0].shape[:2]
    print(
        f"{len(triplets)} MSRS test triplets ({w}x{h}), fused by averaging; cpu count {os.cpu_count()}; "
        f"allocator keeps freed memory: {tuned}"
    )
    results: dict = {"pairs": len(triplets), "load_before": load_before, "keep_freed_memory": tuned}
    if args.backend == "numpy":
        rows = cpu_table(triplets, args.repeat, args.skip_reference)
        results["cpu"] = rows
        print(markdown(rows))
    else:
        info = torch_throughput(triplets, args.device, args.batch, args.repeat)
        results["torch"] = info
        print(json.dumps(info, indent=2))
    if args.fmi_pairs:
        fmi = fmi_times(triplets[: args.fmi_pairs], 1)
        results["fmi_seconds_per_triplet"] = fmi
        print("FMI, seconds per triplet: " + ", ".join(f"{k} {v:.2f}" for k, v in fmi.items()))
    results["load_after"] = os.getloadavg()
    print(f"load average before {load_before[0]:.2f} / after {results['load_after'][0]:.2f} (1-min)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
