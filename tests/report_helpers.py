"""A small real results tree for the report tests: real test pairs from the bundle, fused by simple rules and
scored by fusebench's metrics under two conventions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusebench.imageio import list_images, read_image, write_png
from fusebench.metrics.api import score_folders
from fusebench.report import Plan, plan_from_dict

#: dataset -> (task, modalities); two IVIF datasets so that a method run on only one of them shows coverage
DATASETS = {"TNO": ("ivif", ("ir", "vi")), "MSRS": ("ivif", ("ir", "vi")), "Harvard-MRI-CT": ("mif", ("mri", "ct"))}
SCRIPT = "<script>"
METHODS = ["average", "max", SCRIPT, "minimum"]
NOT_RUN = "cddfuse-official"  # in the config, but its weights were absent (if_weights_present)
#: methods run on each dataset ("minimum" only on TNO)
RUN_ON = {d: (METHODS if d == "TNO" else METHODS[:3]) for d in DATASETS}
FUSE = {
    "average": lambda a, b: (a + b) / 2,
    "max": np.maximum,
    SCRIPT: lambda a, b: 0.7 * a + 0.3 * b,
    "minimum": np.minimum,
}
SECONDS = {"average": 0.02, "max": 0.01, SCRIPT: 0.03, "minimum": 0.015}
METRICS = ["EN", "SD", "SSIM", "Qabf", "RMSE"]
CONVENTIONS = ["vifb", "cddfuse"]
TITLE = 'Lee\'s <fusion> benchmark $(touch hacked) "quoted"'


def _gray(path: Path) -> np.ndarray:
    image = read_image(path)
    return image.mean(axis=2) if image.ndim == 3 else image


def plan_dict(examples: int = 1) -> dict[str, Any]:
    return {
        "title": TITLE,
        "examples": examples,
        "config_sha256": "0" * 64,
        "convention": CONVENTIONS[0],
        "datasets": [
            {
                "name": d,
                "task": task,
                "modalities": list(mods),
                "methods": RUN_ON[d],
                "conventions": CONVENTIONS[1:],
            }
            for d, (task, mods) in DATASETS.items()
        ],
        "methods": [
            *(
                {"key": m, "method": m, "learned": m == "max", "description": f"{m} of the sources & co"}
                for m in METHODS
            ),
            {"key": NOT_RUN, "method": "cddfuse", "learned": True},  # its weights were not here: ran nowhere
        ],
        "weights": {
            "TNO": {"max": {"model": "max/MSRS"}, SCRIPT: {"official": ["densefuse-gray"]}},
        },
        "skipped": [{"key": NOT_RUN, "datasets": list(DATASETS)[:2], "missing": ["cddfuse-ivf", "cddfuse-mif"]}],
    }


def build_results(root: Path, mirror: Path, pairs: int = 2) -> tuple[Path, Plan]:
    """results/ with sources, fused images, runtime and per-convention metrics CSVs, one training run; and the
    plan describing them (also written to results/summary/plan.json)."""
    results = root / "results"
    for dataset, (_, (mod_a, mod_b)) in DATASETS.items():
        found = {m: list_images(mirror / dataset / "test" / m) for m in (mod_a, mod_b)}
        names = sorted(set(found[mod_a]) & set(found[mod_b]))[:pairs]
        for name in names:
            for mod in (mod_a, mod_b):
                target = results / "data" / dataset / "test" / mod / found[mod][name].name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(found[mod][name], target)
        for method in RUN_ON[dataset]:
            folder = results / "fused" / dataset / method
            for name in names:
                a, b = _gray(found[mod_a][name]), _gray(found[mod_b][name])
                write_png(folder / f"{name}.png", np.clip(FUSE[method](a, b), 0, 1).astype(np.float32))
            pd.DataFrame({"image": names, "seconds": SECONDS[method]}).to_csv(folder / "runtime.csv", index=False)
            sources = [results / "data" / dataset / "test" / m for m in (mod_a, mod_b)]
            for convention in CONVENTIONS:
                table = score_folders(*sources, folder, convention=convention, metrics=METRICS)
                sub = ["metrics"] if convention == CONVENTIONS[0] else ["metrics-by-convention", convention]
                target = results.joinpath(*sub, dataset, f"{method}.csv")
                target.parent.mkdir(parents=True, exist_ok=True)
                table.to_csv(target)
    fusion = {
        "method": SCRIPT,
        "protocol": "official",
        "weights": [{"file": "x.model", "sha256": "0" * 64}],
        "device": "cpu",
        "accel": {"precision": "bf16", "channels_last": True, "compile": False},
    }
    (results / "fused" / "TNO" / SCRIPT / "fusion.json").write_text(json.dumps(fusion))
    model = results / "models" / "max" / "MSRS"
    model.mkdir(parents=True)
    steps = np.arange(1, 201)
    pd.DataFrame({"step": steps, "loss": 1 / np.sqrt(steps), "ssim": 0.5 / steps**0.3}).to_csv(
        model / "loss.csv", index=False
    )
    recipe = {"steps": 200, "batch_size": 8, "seed": 0, "options": {"lr": 1e-3}, "train_seconds": 12.5}
    (model / "recipe.json").write_text(json.dumps(recipe))
    plan = plan_from_dict(plan_dict())
    plan.write(results / "summary" / "plan.json")
    return results, plan
