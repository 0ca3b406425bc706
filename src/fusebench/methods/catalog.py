"""The method catalogue: what the workflow and the CLI know about a method without importing torch.

``catalog.yaml`` (validated by ``catalog.schema.yaml``) holds, per method, the module that implements it, whether
it is learned, its tasks and description, its declared options and its paper's training recipe. ``METHODS`` is
the registry of method classes: it knows every name from the catalogue and imports a method's module (and so
torch) only when :meth:`MethodRegistry.get` asks for its class. Adding a method is one module that registers its
class with ``@METHODS.register(name)`` plus one catalogue entry (docs/methods/README.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..registry import Registry, UnknownNameError

if TYPE_CHECKING:
    from .base import FusionMethod

CATALOG_FILE = Path(__file__).with_name("catalog.yaml")
SCHEMA_FILE = Path(__file__).with_name("catalog.schema.yaml")
#: the recipe's loop settings, besides its trainer ``options``
RECIPE_KEYS = ("steps", "batch_size", "patch_size")
#: class attributes that come from the catalogue and must not be set in a method's module
CATALOG_ATTRIBUTES = ("tasks", "description", "train_defaults")


class OptionError(TypeError, ValueError):
    """An unknown option or a bad option value; the message names the valid keys or values."""


@dataclass(frozen=True)
class Option:
    """One declared option; ``default=None`` means the method (or trainer) derives the value."""

    name: str
    type: str
    default: Any
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    length: int | None = None
    help: str = ""

    def check(self, where: str, value: Any) -> None:
        """Raise :class:`OptionError` unless ``value`` fits this option (None fits a derived option)."""
        if value is None and self.default is None:
            return
        if not self._has_type(value):
            listed = f"a list of {self.length} numbers" if self.length else "a list of numbers"
            kind = listed if self.type == "floats" else f"of type {self.type}"
            raise OptionError(f"{where}: option {self.name} must be {kind}, got {value!r}")
        if self.choices is not None and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise OptionError(f"{where}: option {self.name} must be one of {allowed}, got {value!r}")
        if self.min is not None and value < self.min:
            raise OptionError(f"{where}: option {self.name} must be >= {self.min:g}, got {value!r}")

    def _has_type(self, value: Any) -> bool:
        def number(x: Any) -> bool:
            return isinstance(x, int | float) and not isinstance(x, bool)

        if self.type in ("str", "path"):
            return isinstance(value, str)
        if self.type == "int":
            return isinstance(value, int) and not isinstance(value, bool)
        if self.type == "float":
            return number(value)
        if self.type == "bool":
            return isinstance(value, bool)
        if self.type == "dict":
            return isinstance(value, dict)
        # floats
        return (
            isinstance(value, list | tuple)
            and all(number(x) for x in value)
            and (self.length is None or len(value) == self.length)
        )


def check_options(where: str, given: Mapping[str, Any], declared: Mapping[str, Option]) -> None:
    """Raise :class:`OptionError` for a key of ``given`` not in ``declared`` (naming the valid keys) or a value
    that does not fit its declaration."""
    unknown = sorted(set(given) - set(declared))
    if unknown:
        valid = ", ".join(sorted(declared)) or "(none)"
        raise OptionError(f"{where}: unknown option(s) {', '.join(unknown)}; valid options: {valid}")
    for key, value in given.items():
        declared[key].check(where, value)


def _options(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Option]:
    return {
        name: Option(name, **{**spec, "choices": tuple(spec["choices"]) if "choices" in spec else None})
        for name, spec in raw.items()
    }


@dataclass(frozen=True)
class Recipe:
    """A paper's training: loop settings, every trainer option with its value, and where the numbers come from."""

    steps: int
    batch_size: int
    patch_size: int
    options: Mapping[str, Option]
    sources: Mapping[str, str]


@dataclass(frozen=True)
class MethodSpec:
    """One catalogue entry."""

    name: str
    module: str
    learned: bool
    tasks: tuple[str, ...]
    description: str
    options: Mapping[str, Option]
    weights_options: Mapping[str, Mapping[str, Any]]
    recipe: Recipe | None
    #: whether the method can run its authors' published test procedure (``fuse_official``, protocol official)
    official_protocol: bool = False

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`OptionError` for an unknown option key or a bad value (naming the valid ones)."""
        check_options(self.name, options, self.options)

    def training(self, *overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The recipe, overridden by each of ``overrides`` in turn (mappings of ``steps``, ``batch_size``,
        ``patch_size`` and ``options``): ``{steps, batch_size, patch_size, options}`` where ``options`` holds
        every trainer option that has a value (the trainer derives the others). Unknown keys or bad values raise
        :class:`OptionError` naming the valid ones."""
        if self.recipe is None:
            raise OptionError(f"{self.name} is not a learned method; it has no training recipe")
        recipe = self.recipe
        out: dict[str, Any] = {"steps": recipe.steps, "batch_size": recipe.batch_size, "patch_size": recipe.patch_size}
        options = {name: option.default for name, option in recipe.options.items()}
        for layer in overrides:
            unknown = sorted(set(layer) - {*RECIPE_KEYS, "options"})
            if unknown:
                valid = ", ".join((*RECIPE_KEYS, "options"))
                raise OptionError(f"{self.name} training: unknown key(s) {', '.join(unknown)}; valid keys: {valid}")
            for key in RECIPE_KEYS:
                if key in layer:
                    value = layer[key]
                    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                        raise OptionError(f"{self.name} training: {key} must be an integer >= 1, got {value!r}")
                    out[key] = value
            given = dict(layer.get("options", {}))
            check_options(f"{self.name} training", given, recipe.options)
            options.update(given)
        out["options"] = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items() if v is not None}
        return out

    def with_weights(self, weights: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` plus the options that registered weights ``weights`` imply (e.g. TarDAL's variant of
        ``tardal+.pt``); a given option that contradicts them raises :class:`OptionError`."""
        implied = self.weights_options.get(weights, {})
        for key, value in implied.items():
            if key in options and options[key] != value:
                raise OptionError(
                    f"{self.name}: weights {weights} are the {key}={value!r} model, but the options say "
                    f"{key}={options[key]!r}; drop the option or give {key}: {value!r}"
                )
        return {**options, **implied}

    def with_weights_file(self, path: Path, options: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`with_weights` for the registered weights whose file name ``path`` has (``options`` unchanged
        for other files and folders)."""
        from ..weights import registry as weights_registry

        names = [name for name in self.weights_options if weights_registry()[name].filename == Path(path).name]
        return self.with_weights(names[0], options) if len(names) == 1 else dict(options)


@cache
def catalog() -> dict[str, MethodSpec]:
    """The validated catalogue, name -> :class:`MethodSpec` (read once)."""
    import jsonschema

    from ..weights import registry as weights_registry

    raw = yaml.safe_load(CATALOG_FILE.read_text())
    try:
        jsonschema.validate(raw, yaml.safe_load(SCHEMA_FILE.read_text()))
    except jsonschema.ValidationError as exc:
        where = ".".join(map(str, exc.absolute_path)) or "(top)"
        raise ValueError(f"{CATALOG_FILE}: {where}: {exc.message}") from None
    specs = {}
    for name, entry in raw.items():
        recipe = None
        if "recipe" in entry:
            r = entry["recipe"]
            recipe = Recipe(r["steps"], r["batch_size"], r["patch_size"], _options(r["options"]), r["sources"])
            stray = set(recipe.sources) - {*RECIPE_KEYS, *recipe.options}
            if stray:
                raise ValueError(f"{CATALOG_FILE}: {name}.recipe.sources: {sorted(stray)} are not recipe keys")
        spec = MethodSpec(
            name,
            entry["module"],
            entry["learned"],
            tuple(entry["tasks"]),
            entry["description"],
            _options(entry["options"]),
            entry.get("weights_options", {}),
            recipe,
            entry.get("official_protocol", False),
        )
        for where, declared in (("options", spec.options), ("recipe.options", recipe.options if recipe else {})):
            for option in declared.values():
                option.check(f"{CATALOG_FILE}: {name}.{where}", option.default)
        for implied in spec.weights_options.values():
            spec.check_options(implied)
        unknown_weights = sorted(set(spec.weights_options) - set(weights_registry()))
        if unknown_weights:
            raise ValueError(f"{CATALOG_FILE}: {name}.weights_options: unregistered weights {unknown_weights}")
        specs[name] = spec
    return specs


class MethodRegistry(Registry["type[FusionMethod]"]):
    """Method classes by name. Names, tasks and options come from the catalogue; :meth:`get` imports the
    method's module on first use, which registers the class (``@METHODS.register(name)``)."""

    def __init__(self) -> None:
        super().__init__("method")

    def spec(self, name: str) -> MethodSpec:
        """The catalogue entry of ``name``; an unknown name lists the known ones."""
        try:
            return catalog()[name]
        except KeyError:
            raise UnknownNameError(f"unknown method {name!r}; known: {', '.join(self.names())}") from None

    def add(self, name: str, item: type[FusionMethod]) -> type[FusionMethod]:
        """Register class ``item`` as ``name``, giving it the catalogue's name, tasks and description."""
        if name not in catalog():
            raise ValueError(
                f"method {name!r} has no entry in {CATALOG_FILE}; add one (docs/methods/README.md says how)"
            )
        spec = catalog()[name]
        moved = [attr for attr in CATALOG_ATTRIBUTES if attr in vars(item)]
        if moved:
            raise ValueError(f"method {name!r} sets {', '.join(moved)} in its class; these live in {CATALOG_FILE}")
        if vars(item).get("name", name) != name:
            raise ValueError(f"method {name!r} is registered under another name than its class's {item.name!r}")
        if bool(item.learned) != spec.learned:
            raise ValueError(f"method {name!r}: catalogue says learned={spec.learned}, its class says {item.learned}")
        if hasattr(item, "fuse_official") != spec.official_protocol:
            raise ValueError(
                f"method {name!r}: catalogue says official_protocol={spec.official_protocol}, but its class "
                f"{'lacks' if spec.official_protocol else 'has'} fuse_official"
            )
        item.name, item.tasks, item.description = name, spec.tasks, spec.description
        return super().add(name, item)

    def get(self, name: str) -> type[FusionMethod]:
        spec = self.spec(name)
        if name not in self._items:
            importlib.import_module(f"{__package__}.{spec.module}")
        if name not in self._items:
            raise RuntimeError(f"module fusebench.methods.{spec.module} does not register method {name!r}")
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(catalog())

    def __contains__(self, name: object) -> bool:
        return name in catalog()

    def __len__(self) -> int:
        return len(catalog())


METHODS = MethodRegistry()
