"""Helpers shared by the end-to-end tests: a small real config pointing at the data bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]


def small_config(shared: Path, steps: int = 40, **overrides: Any) -> dict[str, Any]:
    """config/test.yaml with absolute bundle paths and a shorter training, for runs in a temp folder."""
    config = yaml.safe_load((REPO / "config" / "test.yaml").read_text())
    config["mirror"] = str(shared / "datasets")
    config["weights_mirror"] = str(shared / "weights" / "official")
    config["training"]["defaults"].update(steps=steps, checkpoint_every=max(1, steps // 2))
    config.update(overrides)
    # the convention-sensitivity scoring only on datasets the run keeps (none left: no sensitivity jobs)
    sensitivity = config["metrics"].get("sensitivity", {})
    kept = [d for d in sensitivity.get("datasets", []) if d in config["datasets"]]
    if "datasets" in sensitivity and not kept:
        del config["metrics"]["sensitivity"]
    elif "datasets" in sensitivity:
        sensitivity["datasets"] = kept
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path
