"""What produced the numbers: code version and commit, config hash, test-set hashes, weights ids, date.

The same record heads every summary CSV (``# key: value`` lines, read back with ``pd.read_csv(comment="#")``)
and the report page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .. import __version__
from . import paths
from .plan import Plan


def now() -> dt.datetime:
    """Build time; ``SOURCE_DATE_EPOCH`` pins it for reproducible outputs."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return dt.datetime.fromtimestamp(int(epoch), tz=dt.timezone.utc)
    return dt.datetime.now(tz=dt.timezone.utc)


def git_commit(folder: Path | None = None) -> str:
    """Commit of the fusebench code that runs (``+dirty`` with uncommitted changes), or "unknown" outside a
    git checkout (an installed wheel)."""
    folder = folder or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}+dirty" if dirty else head


def folder_sha256(folder: Path) -> str:
    """sha256 over the sorted ``<relative path> <sha256 of the file>`` lines of every file under ``folder``: a
    hash of the test set exactly as scored (changes with any image, name or file added)."""
    lines = []
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        lines.append(f"{path.relative_to(folder).as_posix()} {digest}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def weights_ids(plan: Plan, results: Path) -> dict[str, dict[str, str]]:
    """Every official weights file used: name -> repo, commit, path, git blob id and sha256 (from the registry,
    else from the ``.sha256`` sidecar the fetch wrote beside the file)."""
    from ..weights import SIDECAR_SUFFIX, registry

    known = registry()
    used = sorted({n for per in plan.weights.values() for w in per.values() for n in w.get("official", [])})
    out = {}
    for name in used:
        entry = known.get(name)
        if entry is None:
            out[name] = {"note": "not in fusebench's weights registry"}
            continue
        ids = {
            k: str(getattr(entry, k))
            for k in ("repo", "commit", "path", "git_blob_sha1", "sha256")
            if getattr(entry, k)
        }
        sidecar = Path(results) / "weights" / f"{entry.local_path}{SIDECAR_SUFFIX}"
        if "sha256" not in ids and sidecar.is_file():
            ids["sha256"] = sidecar.read_text(encoding="utf-8").split()[0]
        out[name] = ids
    return out


def collect(plan: Plan, results: Path) -> dict[str, Any]:
    """The provenance record of a benchmark run (JSON-ready)."""
    test_sets = {}
    for d in plan.datasets:
        folder = Path(results) / "data" / d.name / "test"
        test_sets[d.name] = folder_sha256(folder) if folder.is_dir() else "missing"
    return {
        "fusebench": __version__,
        "git_commit": git_commit(),
        "config_sha256": plan.config_sha256 or "unknown",
        "metric_convention": plan.convention,
        "date": now().strftime("%Y-%m-%d %H:%M UTC"),
        "test_set_sha256": test_sets,
        "weights": weights_ids(plan, results),
    }


def header_lines(record: Mapping[str, Any], dataset: str | None = None) -> list[str]:
    """``# key: value`` lines for a CSV; with ``dataset`` only that test set and the weights it used."""
    lines = [f"# {k}: {record[k]}" for k in ("fusebench", "git_commit", "config_sha256", "metric_convention", "date")]
    sets = record["test_set_sha256"]
    for name in [dataset] if dataset else list(sets):
        lines.append(f"# test_set_sha256 {name}: {sets.get(name, 'missing')}")
    for name, ids in record["weights"].items():
        lines.append(f"# weights {name}: " + ", ".join(f"{k}={v}" for k, v in ids.items()))
    return [line.replace("\n", " ") for line in lines]


def json_record(path: Path) -> dict[str, Any]:
    """The JSON object a step wrote beside its outputs (``fusion.json``, ``recipe.json``); empty when absent or
    unreadable (the report then says "not recorded")."""
    import json

    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def runs_of(results: Path, dataset: str, method: str) -> dict[str, Any]:
    """What the fuse step recorded beside the fused images (``fusion.json``: method, protocol, weights, ...),
    empty when it wrote none."""
    return json_record(paths.fused_dir(results, dataset, method) / "fusion.json")
