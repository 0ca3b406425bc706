"""One fetcher for pinned files (dataset images, archives, official weights).

A pinned file is known by some of: its size, its sha256 and its git blob id (``git hash-object``, fixed
publicly by a commit). :func:`fetch_pinned` tries its sources in order (typically a mirror, then the
upstream URL), copies each candidate to a temporary file beside the target (``fusebench.atomic``),
retries transient HTTP failures, rejects a transfer shorter than its ``Content-Length``, checks every
known id, and only then renames the file into place. A source that lacks the file is skipped; a source
whose copy fails verification is skipped too unless ``fallback_on_mismatch`` is False (a corrupt
mirror is then reported instead of silently bypassed).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from .atomic import atomic_path, is_disk_full

log = logging.getLogger(__name__)

#: attempts per http(s) URL (network errors, 5xx, 408, 429 and truncated bodies are retried)
HTTP_ATTEMPTS = 3
RETRY_DELAY_S = 1.0
TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_LFS_MAGIC = b"version https://git-lfs.github.com/spec"


class Digests(TypedDict):
    size: int
    sha256: str
    git_blob_sha1: str


def git_blob_sha1(data: bytes | str | os.PathLike[str]) -> str:
    """The git object id (``git hash-object``) of a file with these bytes, or of the file at this path."""
    if isinstance(data, bytes):
        return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()
    return file_digests(data)["git_blob_sha1"]


def file_digests(path: str | os.PathLike[str]) -> Digests:
    """Size, sha256 and git blob id of a file, in one pass."""
    path = Path(path)
    size = path.stat().st_size
    blob = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
    sha = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            blob.update(chunk)
            sha.update(chunk)
    return {"size": size, "sha256": sha.hexdigest(), "git_blob_sha1": blob.hexdigest()}


@dataclass(frozen=True)
class Pin:
    """What a file must be: any of size, sha256, git blob id (at least one id)."""

    sha256: str | None = None
    git_blob_sha1: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        if self.sha256 is None and self.git_blob_sha1 is None:
            raise ValueError("a pinned file needs a sha256 or a git blob id")

    def problems(self, digests: Digests) -> list[str]:
        """What differs, e.g. ``['truncated: 10 of 20 bytes', 'sha256 ab.., expected cd..']``; empty if none."""
        found = []
        if self.size is not None and digests["size"] != self.size:
            kind = "truncated: " if digests["size"] < self.size else "wrong size: "
            found.append(f"{kind}{digests['size']} bytes, expected {self.size}")
        if self.git_blob_sha1 and digests["git_blob_sha1"] != self.git_blob_sha1:
            found.append(f"git blob id {digests['git_blob_sha1']}, expected {self.git_blob_sha1}")
        if self.sha256 and digests["sha256"] != self.sha256:
            found.append(f"sha256 {digests['sha256']}, expected {self.sha256}")
        return found

    def describe(self) -> str:
        ids = (("sha256", self.sha256), ("git blob id", self.git_blob_sha1), ("bytes", self.size))
        return ", ".join(f"{key} {value}" for key, value in ids if value is not None)


@dataclass(frozen=True)
class Source:
    kind: str  # 'mirror', 'upstream', ...: named in messages
    location: str  # a local path or a file:// / http(s):// URL


class Unavailable(Exception):
    """The source does not have the file or cannot be reached (the next source is tried)."""


class Rejected(Exception):
    """A candidate was fetched but is not the pinned file; nothing was written."""

    def __init__(self, source: Source, digests: Digests, problems: list[str]) -> None:
        self.source = source
        self.digests = digests
        self.problems = problems
        super().__init__(f"{source.kind} {source.location}: " + "; ".join(problems))


class FetchFailed(Exception):
    """No source gave the pinned file; ``attempts`` says, per source, why."""

    def __init__(self, attempts: list[str]) -> None:
        self.attempts = attempts
        super().__init__("; ".join(attempts))


def fetch_pinned(
    target: str | os.PathLike[str],
    pin: Pin,
    sources: Sequence[Source],
    fallback_on_mismatch: bool = True,
    timeout: float = TIMEOUT_S,
) -> tuple[Digests, Source]:
    """Put the verified pinned file at ``target`` from the first source that has it.

    Raises :class:`Rejected` for a failed check when ``fallback_on_mismatch`` is False, else
    :class:`FetchFailed` listing every source tried. Nothing is ever left at ``target`` on failure.
    """
    attempts: list[str] = []
    for source in sources:
        try:
            with atomic_path(target) as tmp:
                copy_to(source.location, tmp, timeout)
                digests = file_digests(tmp)
                problems = pin.problems(digests)
                if problems:
                    if _is_lfs_pointer(tmp):
                        problems.append("it is a git-lfs pointer, not the file")
                    raise Rejected(source, digests, problems)
        except Unavailable as exc:
            attempts.append(f"{source.kind} {source.location}: {exc}")
            log.info("%s: not available from %s (%s)", target, source.location, exc)
            continue
        except Rejected as exc:
            if not fallback_on_mismatch:
                raise
            attempts.append(str(exc))
            log.warning("%s rejected: %s", target, exc)
            continue
        return digests, source
    raise FetchFailed(attempts)


def copy_to(location: str, dest: Path, timeout: float = TIMEOUT_S) -> None:
    """Copy ``location`` (a local path or URL) to ``dest``; raise :class:`Unavailable` when it cannot be had."""
    if "://" not in location:
        try:
            shutil.copyfile(location, dest)
        except FileNotFoundError:
            raise Unavailable("no such file") from None
        except IsADirectoryError:
            raise Unavailable("it is a folder, not a file") from None
        except OSError as exc:
            if is_disk_full(exc):  # writing our copy failed, not reading the source: no other source helps
                raise
            raise Unavailable(f"cannot read it ({exc})") from None
        return
    retry = location.startswith(("http://", "https://"))
    attempts = HTTP_ATTEMPTS if retry else 1
    for attempt in range(1, attempts + 1):
        try:
            _copy_url(location, dest, timeout)
            return
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
            transient = exc.code >= 500 or exc.code in (408, 429)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, FileNotFoundError):
                raise Unavailable("no such file") from None
            error = f"cannot connect ({exc.reason})"
            transient = True
        except (http.client.HTTPException, TimeoutError, ConnectionError, _Truncated) as exc:
            error = f"transfer failed ({type(exc).__name__}: {exc})"
            transient = True
        if not (retry and transient) or attempt == attempts:
            raise Unavailable(error + (f" after {attempt} attempts" if attempt > 1 else ""))
        log.warning("%s: %s; retrying (%d/%d)", location, error, attempt, attempts - 1)
        time.sleep(RETRY_DELAY_S * attempt)


class _Truncated(Exception):
    pass


def _copy_url(url: str, dest: Path, timeout: float) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fusebench"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:  # noqa: S310
        shutil.copyfileobj(response, out, _CHUNK)
        length = response.headers.get("Content-Length")
        written = out.tell()
    if length is not None and length.isdigit() and int(length) != written:
        raise _Truncated(f"got {written} of {length} bytes")


def _is_lfs_pointer(path: Path) -> bool:
    with path.open("rb") as fh:
        return fh.read(len(_LFS_MAGIC)) == _LFS_MAGIC
