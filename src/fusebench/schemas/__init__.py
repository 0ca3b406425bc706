"""JSON schemas of fusebench's YAML files: the dataset registry, the weights registry and a config-defined
dataset (also referenced by the workflow's config schema), and one validator that names the bad entry."""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml


class SchemaError(ValueError):
    """A YAML document does not match its schema; the message names the entry and the key."""


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    """The schema ``<name>.schema.yaml`` of this package (registry, weights, dataset)."""
    text = resources.files(__package__).joinpath(f"{name}.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def validate(data: Any, name: str, source: str, at: str = "") -> None:
    """Raise :class:`SchemaError` naming ``source``, the entry (its ``name`` where it has one; ``at`` is
    where ``data`` itself sits in ``source``) and the problem, for the first violation of schema ``name``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema(name))
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    if not errors:
        return
    error = jsonschema.exceptions.best_match(errors)
    where = ".".join(part for part in (at, _where(data, list(error.absolute_path))) if part)
    raise SchemaError(f"{source}: {where + ': ' if where else ''}{_message(error)}")


def _where(data: Any, path: list[Any]) -> str:
    """``datasets[3] (LLVIP).archive.sha256``: the path, with each list item's name where it has one."""
    parts: list[str] = []
    node = data
    for key in path:
        if isinstance(key, int):
            parts.append(f"[{key}]")
            node = node[key]
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                parts.append(f" ({node['name']})")
        else:
            parts.append(f".{key}" if parts else str(key))
            node = node[key] if isinstance(node, dict) else None
    return "".join(parts)


def _message(error: Any) -> str:
    if error.validator == "anyOf" and all(sub.get("required") for sub in error.validator_value):
        options = [name for sub in error.validator_value for name in sub["required"]]
        return f"needs one of: {', '.join(options)}"
    if error.validator == "type":
        hint = f" ({error.schema['description']})" if "description" in error.schema else ""
        got = f"{type(error.instance).__name__} {_short(error.instance)}"
        return f"must be of type {error.validator_value}, got {got}{hint}"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        return f"{error.message}; allowed: {', '.join(allowed)}" if allowed else error.message
    return _short(error.message, 300)


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
