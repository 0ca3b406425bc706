"""The report plan: what the benchmark ran, as one JSON file the workflow writes for `summarize` and `report`.

::

    {
      "title": "...", "examples": 2, "config_sha256": "...",
      "convention": "vifb",                 # the convention of results/metrics (the leaderboards)
      "conventions": ["cddfuse"],           # also scored, on the datasets that list them (sensitivity)
      "datasets": [{"name": "TNO", "task": "ivif", "modalities": ["ir", "vi"],
                    "methods": ["average", "densefuse"], "conventions": ["cddfuse"]}],
      "methods": [{"key": "densefuse", "method": "densefuse", "learned": true, "description": "..."}],
      "weights": {"TNO": {"densefuse": {"model": "densefuse/MSRS"},
                          "tardal-official": {"official": ["tardal-v0"]}}},
      "skipped": [{"key": "cddfuse-official", "datasets": ["TNO"], "missing": ["cddfuse-ivf"]}]
    }

``skipped`` lists entries the config asked for but that did not run on some datasets because their weights
were not here (``if_weights_present``); the report and the results page say so.

Mappings travel as JSON instead of hand-parsed strings, so any name or title (quotes, spaces, ``$()``)
arrives unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic


class PlanError(ValueError):
    """A plan file is unreadable or lacks a key; the message names the file and the key."""


@dataclass(frozen=True)
class DatasetPlan:
    name: str
    task: str
    modalities: tuple[str, str]
    methods: list[str]
    #: conventions scored besides the main one on this dataset (the sensitivity section)
    conventions: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class MethodPlan:
    key: str
    method: str
    learned: bool | None = None
    description: str = ""


@dataclass(frozen=True)
class Plan:
    datasets: list[DatasetPlan]
    methods: list[MethodPlan]
    convention: str
    title: str = "fusebench report"
    examples: int = 3
    config_sha256: str = ""
    #: dataset -> method -> {"official": [weights names]} or {"model": "<method>/<train set>"}
    weights: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    #: [{"key": entry, "datasets": [...], "missing": [weights names]}]: entries left out for want of weights
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skipped_notes(self) -> list[str]:
        """One sentence per entry left out: which datasets, which weights were missing, how to get them."""
        return [
            f"{s['key']} did not run on {', '.join(s['datasets'])}: its weights {', '.join(s['missing'])} were "
            "neither fetched nor in the weights mirror (`fusebench fetch-weights NAME --out results/weights`, "
            "where upstream can be reached, then rerun)"
            for s in self.skipped
        ]

    @property
    def method_keys(self) -> list[str]:
        return [m.key for m in self.methods]

    def dataset(self, name: str) -> DatasetPlan:
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(name)

    def to_json(self) -> str:
        def encode(obj: Any) -> Any:
            if hasattr(obj, "__dataclass_fields__"):
                return {k: encode(getattr(obj, k)) for k in obj.__dataclass_fields__}
            if isinstance(obj, (list, tuple)):
                return [encode(v) for v in obj]
            if isinstance(obj, dict):
                return {k: encode(v) for k, v in obj.items()}
            return obj

        return json.dumps(encode(self), indent=2, sort_keys=False) + "\n"

    def write(self, path: Path) -> Path:
        write_text_atomic(Path(path), self.to_json())
        return Path(path)


def plan_from_dict(data: dict[str, Any], source: str = "plan") -> Plan:
    """Build and check a :class:`Plan`; errors name ``source`` and the key."""

    def need(obj: dict[str, Any], key: str, where: str) -> Any:
        if not isinstance(obj, dict) or key not in obj:
            raise PlanError(f"{source}: missing key {where}{key!r}")
        return obj[key]

    try:
        datasets = [
            DatasetPlan(
                name=str(need(d, "name", "datasets[].")),
                task=str(need(d, "task", "datasets[].")),
                modalities=tuple(need(d, "modalities", "datasets[].")),  # type: ignore[arg-type]
                methods=[str(m) for m in need(d, "methods", "datasets[].")],
                conventions=[str(c) for c in d.get("conventions", [])],
            )
            for d in need(data, "datasets", "")
        ]
        methods = [
            MethodPlan(
                key=str(need(m, "key", "methods[].")),
                method=str(m.get("method", m["key"])),
                learned=m.get("learned"),
                description=str(m.get("description", "")),
            )
            for m in need(data, "methods", "")
        ]
    except TypeError as exc:
        raise PlanError(f"{source}: malformed plan ({exc})") from None
    plan = Plan(
        datasets=datasets,
        methods=methods,
        convention=str(need(data, "convention", "")),
        title=str(data.get("title", "fusebench report")),
        examples=int(data.get("examples", 3)),
        config_sha256=str(data.get("config_sha256", "")),
        weights=dict(data.get("weights", {})),
        skipped=[dict(s) for s in data.get("skipped", [])],
    )
    _check(plan, source)
    return plan


def _check(plan: Plan, source: str) -> None:
    if not plan.datasets:
        raise PlanError(f"{source}: 'datasets' is empty")
    if not plan.methods:
        raise PlanError(f"{source}: 'methods' is empty")
    keys = plan.method_keys
    names = [d.name for d in plan.datasets]
    if len(set(keys)) != len(keys) or len(set(names)) != len(names):
        raise PlanError(f"{source}: datasets and methods must not repeat")
    for d in plan.datasets:
        if len(d.modalities) != 2:
            raise PlanError(f"{source}: datasets[{d.name!r}].modalities must name two modalities")
        unknown = sorted(set(d.methods) - set(keys))
        if unknown:
            raise PlanError(f"{source}: datasets[{d.name!r}].methods names methods not in 'methods': {unknown}")


def read_plan(path: Path) -> Plan:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanError(f"{path}: no plan file; the workflow rule 'report_plan' writes it") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}: not valid JSON ({exc})") from None
    return plan_from_dict(data, str(path))
