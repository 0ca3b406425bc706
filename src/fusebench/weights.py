"""Pinned upstream weights: a small registry (``weights.yaml``) and a verifying fetcher.

Official weights that cannot ship with fusebench (licence, size) are pinned to one file of one commit of the
authors' repository and identified by its **git blob id**, ``sha1(b"blob <size>\\0" + data)``, the id
``git hash-object FILE`` prints, which the commit fixes publicly. :func:`fetch_weights` puts a file at
``<dest>/<folder>/<file>`` (the layout of the data bundle's ``weights/official``, so a fetched folder can
serve as the ``official_weights`` folder or as a mirror) from, in order:

1. a local mirror folder (argument ``mirror``, else the environment variable ``FUSEBENCH_WEIGHTS_MIRROR``)
   laid out the same way; a URL base (``file://``, ``https://``) works too;
2. ``<upstream>/<repo>/<commit>/<path>`` with ``upstream`` = ``https://raw.githubusercontent.com`` unless
   the environment variable ``FUSEBENCH_UPSTREAM`` (or the ``upstream`` argument) says otherwise.

The fetch is :func:`fusebench.fetch.fetch_pinned`, shared with the datasets: every candidate is written to a
temporary file beside the target (transient HTTP failures retried, short transfers rejected), verified
(size, git blob id and/or sha256, whichever the registry knows) and only then renamed into place, so a
rejected file never appears under the final name. After a verified download the file's sha256 is recorded in a sidecar
``<file>.sha256`` (``sha256sum`` format) and checked whenever the file is used again.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import typer
import yaml

from .atomic import DiskFullError, write_text_atomic
from .fetch import FetchFailed, Pin, Source, fetch_pinned, file_digests
from .fetch import git_blob_sha1 as git_blob_sha1  # the one implementation, re-exported
from .schemas import validate

log = logging.getLogger(__name__)

MIRROR_ENV = "FUSEBENCH_WEIGHTS_MIRROR"
UPSTREAM_ENV = "FUSEBENCH_UPSTREAM"
DEFAULT_UPSTREAM = "https://raw.githubusercontent.com"
SIDECAR_SUFFIX = ".sha256"


class WeightsError(RuntimeError):
    """A weights file could not be found, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class WeightsEntry:
    """One pinned upstream file. ``folder/file`` (``local_path``) is where it lives in a mirror / dest."""

    name: str
    repo: str
    commit: str
    path: str
    git_blob_sha1: str | None = None
    sha256: str | None = None
    size: int | None = None
    folder: str | None = None
    method: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        where = f"weights entry {self.name!r}"
        if self.repo.count("/") != 1 or not all(self.repo.split("/")):
            raise ValueError(f"{where}: repo must be 'owner/name', got {self.repo!r}")
        if not _is_hex(self.commit) or not 7 <= len(self.commit) <= 40:
            raise ValueError(f"{where}: commit must be 7-40 hex digits, got {self.commit!r}")
        if not self.path or self.path.startswith("/") or ".." in PurePosixPath(self.path).parts:
            raise ValueError(f"{where}: path must be relative inside the repository, got {self.path!r}")
        if self.git_blob_sha1 is None and self.sha256 is None:
            raise ValueError(f"{where}: needs git_blob_sha1 or sha256 (a file that cannot be verified)")
        for key, length in (("git_blob_sha1", 40), ("sha256", 64)):
            value = getattr(self, key)
            if value is not None and (len(value) != length or not _is_hex(value)):
                raise ValueError(f"{where}: {key} must be {length} hex digits, got {value!r}")
        if self.size is not None and int(self.size) < 0:
            raise ValueError(f"{where}: size must be >= 0, got {self.size}")
        if self.folder is not None and (
            not self.folder or self.folder.startswith("/") or ".." in PurePosixPath(self.folder).parts
        ):
            raise ValueError(f"{where}: folder must be a relative folder name, got {self.folder!r}")

    @property
    def filename(self) -> str:
        return PurePosixPath(self.path).name

    @property
    def local_path(self) -> str:
        """``<folder>/<file>``: the place in a mirror or destination folder (folder defaults to the name)."""
        return f"{self.folder or self.name}/{self.filename}"

    def url(self, upstream: str = DEFAULT_UPSTREAM) -> str:
        return f"{upstream.rstrip('/')}/{self.repo}/{self.commit}/{self.path}"


def _is_hex(value: str) -> bool:
    return bool(value) and all(c in "0123456789abcdef" for c in value)


# ------------------------------------------------------------------------------------------------ registry
@lru_cache(maxsize=1)
def registry() -> dict[str, WeightsEntry]:
    """The shipped ``weights.yaml``: name -> entry."""
    text = resources.files("fusebench").joinpath("weights.yaml").read_text(encoding="utf-8")
    return parse_registry(yaml.safe_load(text), "fusebench/weights.yaml")


def parse_registry(data: Any, source: str = "registry") -> dict[str, WeightsEntry]:
    """Entries of a weights registry, checked against fusebench/schemas/weights.schema.yaml (a SchemaError,
    a ValueError, names the bad entry and key)."""
    validate(data, "weights", source)
    entries = {}
    for name, item in data["weights"].items():
        fields = {
            k: (str(v) if k in {"commit", "git_blob_sha1", "sha256"} and v is not None else v) for k, v in item.items()
        }
        entries[str(name)] = WeightsEntry(name=str(name), **fields)
    return entries


def get_entry(name: str) -> WeightsEntry:
    entries = registry()
    if name not in entries:
        raise WeightsError(f"unknown weights {name!r}; known: {', '.join(sorted(entries))}")
    return entries[name]


# ------------------------------------------------------------------------------------------------- hashing
def sidecar(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    return path.with_name(path.name + SIDECAR_SUFFIX)


def read_sidecar(path: str | os.PathLike[str]) -> str | None:
    """The sha256 recorded next to ``path``, or None when there is no sidecar."""
    side = sidecar(path)
    if not side.is_file():
        return None
    fields = side.read_text(encoding="utf-8").split()
    if not fields or len(fields[0]) != 64 or not _is_hex(fields[0].lower()):
        raise WeightsError(
            f"{side} is not a sha256 sidecar (expected '<64 hex>  {Path(path).name}'); delete it, fetch again"
        )
    return fields[0].lower()


def _problems(digests: Mapping[str, Any], entry: WeightsEntry | None, recorded: str | None) -> list[str]:
    found = []
    if entry is not None and entry.size is not None and digests["size"] != entry.size:
        found.append(f"size {digests['size']} bytes, expected {entry.size}")
    if entry is not None and entry.git_blob_sha1 and digests["git_blob_sha1"] != entry.git_blob_sha1:
        found.append(f"git blob id {digests['git_blob_sha1']}, expected {entry.git_blob_sha1}")
    if entry is not None and entry.sha256 and digests["sha256"] != entry.sha256:
        found.append(f"sha256 {digests['sha256']}, expected {entry.sha256}")
    if recorded is not None and digests["sha256"] != recorded:
        found.append(f"sha256 {digests['sha256']}, expected {recorded} (recorded in its .sha256 sidecar)")
    return found


def verify_file(path: str | os.PathLike[str], entry: WeightsEntry | None = None) -> dict[str, Any]:
    """Check ``path`` against ``entry``'s ids and its sidecar (if any); return its digests or raise."""
    return _verify(Path(path), [entry] if entry is not None else [])


def _verify(path: Path, entries: list[WeightsEntry]) -> dict[str, Any]:
    """``path``'s digests if it passes its sidecar and (when ``entries`` is not empty) the ids of one of
    ``entries``; else a WeightsError naming the file, what differs and what to do."""
    if not path.is_file():
        raise WeightsError(f"no weights file at {path}")
    digests = _digests_cached(path)
    recorded = read_sidecar(path)
    problems = [_problems(digests, entry, recorded) for entry in entries] or [_problems(digests, None, recorded)]
    if all(problems):
        entry = entries[0] if len(entries) == 1 else None
        what = f" ({entry.name}: {entry.repo}@{entry.commit}:{entry.path})" if entry else ""
        if len(entries) > 1:
            what = f" (named like the registered weights {', '.join(e.name for e in entries)})"
        raise WeightsError(
            f"{path}{what} failed verification: {'; '.join(min(problems, key=len))}. The file is corrupt or not "
            f"the pinned one: delete it (and its {SIDECAR_SUFFIX} sidecar) and fetch it again"
            + (f" with `fusebench fetch-weights {entry.name}`" if entry else "")
        )
    return digests


#: (path, inode, size, mtime in ns) -> digests: a file loaded again in the same process is not hashed again
_DIGEST_CACHE: dict[tuple[str, int, int, int], dict[str, Any]] = {}


def _digests_cached(path: Path) -> dict[str, Any]:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    if key not in _DIGEST_CACHE:
        _DIGEST_CACHE[key] = file_digests(path)
    return _DIGEST_CACHE[key]


def registered_entries(path: str | os.PathLike[str]) -> list[WeightsEntry]:
    """The registered files ``path`` claims to be: the entries whose ``<folder>/<file>`` ends its path (where
    fetch-weights, the workflow and the data bundle put them), else those whose file name it has."""
    posix = "/" + Path(path).as_posix()
    entries = list(registry().values())
    placed = [e for e in entries if posix.endswith("/" + e.local_path)]
    return placed or [e for e in entries if e.filename == Path(path).name]


def check_known_file(path: str | os.PathLike[str]) -> None:
    """Verify a weights file before every load: its ``.sha256`` sidecar if present, and, when it is a registered
    upstream file (see :func:`registered_entries`), that entry's ids. Other files pass unchecked; a missing file
    is left to the loader to report."""
    path = Path(path)
    entries = registered_entries(path)
    if path.is_file() and (entries or sidecar(path).is_file()):
        _verify(path, entries)


# -------------------------------------------------------------------------------------------------- fetch
def mirror_location(entry: WeightsEntry, mirror: str) -> str:
    """Where a weights mirror (a folder, or a URL when it contains ``://``) keeps ``entry``."""
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{urllib.parse.quote(entry.local_path)}"
    return str(Path(mirror).expanduser() / entry.local_path)


def _sources(entry: WeightsEntry, mirror: str | None, upstream: str | None) -> list[Source]:
    found: list[Source] = []
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if mirror:
        found.append(Source("mirror", mirror_location(entry, mirror)))
    base = upstream or os.environ.get(UPSTREAM_ENV) or DEFAULT_UPSTREAM
    found.append(Source("upstream", entry.url(base)))
    return found


def _write_sidecar(path: Path, sha256: str) -> None:
    try:
        write_text_atomic(sidecar(path), f"{sha256}  {path.name}\n")
    except OSError as exc:  # a read-only folder still gives a usable, verified file
        log.warning("could not record %s: %s", sidecar(path), exc)


def fetch_weights(
    name: str | WeightsEntry,
    dest_dir: str | os.PathLike[str],
    mirror: str | None = None,
    upstream: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Make the verified file of ``name`` available at ``dest_dir/<folder>/<file>`` and return that path.

    An existing file that passes verification is kept (no download). Otherwise the mirror, then upstream
    are tried; the first candidate that verifies wins. Raises :class:`WeightsError` naming every attempt.
    """
    entry = name if isinstance(name, WeightsEntry) else get_entry(name)
    target = Path(dest_dir) / entry.local_path
    existing = ""
    if target.exists():
        try:
            digests = verify_file(target, entry)
        except WeightsError as exc:
            log.warning("%s; fetching it again", exc)
            existing = f"\nThe file already at {target} failed verification ({exc}); it was left as it was."
        else:
            if read_sidecar(target) is None:
                _write_sidecar(target, digests["sha256"])
            return target
    pin = Pin(sha256=entry.sha256, git_blob_sha1=entry.git_blob_sha1, size=entry.size)
    try:
        digests, _ = fetch_pinned(target, pin, _sources(entry, mirror, upstream), timeout=timeout)
    except FetchFailed as exc:
        attempts = [f"  {attempt}" for attempt in exc.attempts]
    else:
        sidecar(target).unlink(missing_ok=True)
        _write_sidecar(target, digests["sha256"])
        log.info("weights %s verified (git blob %s) -> %s", entry.name, digests["git_blob_sha1"], target)
        return target
    ids = ", ".join(f"{k} {v}" for k, v in (("git blob id", entry.git_blob_sha1), ("sha256", entry.sha256)) if v)
    raise WeightsError(
        f"could not get a verified {entry.filename} for weights {entry.name!r} "
        f"({entry.repo}@{entry.commit}:{entry.path}; expected {ids}); nothing new was written to {target}.\n"
        + "\n".join(attempts)
        + existing
        + f"\nWhat to do: check the network, or download {entry.url()} yourself and put it at "
        f"<mirror>/{entry.local_path}, then pass --mirror <mirror> (or set {MIRROR_ENV})."
    )


# ---------------------------------------------------------------------------------------------------- CLI
def weights_command(
    name: Annotated[str, typer.Argument(help="Registered weights name, e.g. cddfuse-ivf; 'list' lists them.")],
    out: Annotated[Path, typer.Option(help="Destination folder; the file goes to <out>/<folder>/<file>.")] = Path(
        "weights"
    ),
    mirror: Annotated[
        str | None,
        typer.Option(help=f"Folder (or URL base) laid out <folder>/<file>, tried first; default ${MIRROR_ENV}."),
    ] = None,
) -> None:
    """Fetch pinned official weights and verify them (git blob id / sha256)."""
    if name == "list":
        for entry in registry().values():
            typer.echo(f"{entry.name:24s} {entry.repo}@{entry.commit[:12]}:{entry.path}")
        return
    try:
        path = fetch_weights(name, out, mirror)
    except (WeightsError, DiskFullError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    typer.echo(str(path))
