"""Safe extraction of dataset archives (zip, tar[.gz|.bz2|.xz], rar).

Nothing is handed to the archive library's own ``extract``: every member is checked, then regular files
are streamed into the target one by one. Refused (the whole archive, with the member named): absolute
names, names with ``..`` parts, links that point outside the target, device files and fifos, more
members than ``max_members``, more unpacked bytes than ``max_bytes`` (counted as written, not as declared,
so a lying header does not help). A link inside the target becomes a copy of the file it points to.
"""

from __future__ import annotations

import gzip
import lzma
import posixpath
import shutil
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..atomic import atomic_path
from .spec import DatasetError

_CHUNK = 1 << 20
#: what reading a member of a damaged archive raises (bad CRC, cut stream, corrupt compression)
_DAMAGED = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)


@dataclass(frozen=True)
class Member:
    name: str  # as stored, '/'-separated
    kind: str  # file, dir, symlink, hardlink, other
    size: int
    linkname: str = ""


def safe_extract(
    archive: Path,
    dest: Path,
    select: Callable[[str], bool] = lambda name: True,
    max_bytes: int = 64 << 30,
    max_members: int = 200_000,
) -> list[Path]:
    """Extract the selected regular files (and links resolved to copies) of ``archive`` below ``dest``.

    Returns the written files. Raises DatasetError naming the archive and the offending member.
    """
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with _open(archive) as (members, read):
            return _extract(archive, members, read, dest, select, max_bytes, max_members)
    except _DAMAGED as exc:
        raise DatasetError(
            f"{archive} cannot be unpacked ({type(exc).__name__}: {exc}); the archive is damaged or incomplete: "
            "download it again"
        ) from None


def _extract(
    archive: Path,
    members: list[Member],
    read: Reader,
    dest: Path,
    select: Callable[[str], bool],
    max_bytes: int,
    max_members: int,
) -> list[Path]:
    if len(members) > max_members:
        raise DatasetError(f"{archive}: {len(members)} members, more than the limit of {max_members}; refused")
    # every member is checked before anything is written
    files: list[tuple[Member, str]] = []
    links: list[tuple[Member, str, str]] = []
    for member in members:
        name = _safe_name(archive, member.name)
        if member.kind in ("symlink", "hardlink"):
            links.append((member, name, _link_target(archive, member, name)))
        elif member.kind not in ("file", "dir"):
            raise DatasetError(f"{archive}: member {member.name!r} is a device file or fifo; refused")
        elif member.kind == "file":
            files.append((member, name))
    written: list[Path] = []
    total = 0
    for member, name in files:
        if not select(name):
            continue
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with read(member) as source, atomic_path(target) as tmp, open(tmp, "wb") as out:
            while chunk := source.read(_CHUNK):
                total += len(chunk)
                if total > max_bytes:
                    raise DatasetError(
                        f"{archive}: unpacks to more than {max_bytes} bytes (at member {member.name!r}); "
                        "refused (a damaged or hostile archive?)"
                    )
                out.write(chunk)
        written.append(target)
    for member, name, source_name in links:
        if not select(name):
            continue
        source = dest / source_name
        if not source.is_file():
            raise DatasetError(
                f"{archive}: link {member.name!r} points to {member.linkname!r}, which is not an extracted "
                "file of the archive; refused"
            )
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        total += source.stat().st_size
        if total > max_bytes:
            raise DatasetError(f"{archive}: unpacks to more than {max_bytes} bytes; refused")
        with atomic_path(target) as tmp:
            shutil.copyfile(source, tmp)
        written.append(target)
    return written


def _safe_name(archive: Path, raw: str) -> str:
    """The member's relative path, or DatasetError for an absolute name or one with '..'."""
    name = raw.replace("\\", "/")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in parts or not parts:
        raise DatasetError(f"{archive}: member {raw!r} would be written outside the target folder; refused")
    return "/".join(parts)


def _link_target(archive: Path, member: Member, name: str) -> str:
    """Where a link points, relative to the target folder; DatasetError if that is outside it."""
    link = member.linkname.replace("\\", "/")
    # a symlink is relative to its own folder, a tar hard link to the archive root
    base = posixpath.dirname(name) if member.kind == "symlink" else ""
    resolved = posixpath.normpath(posixpath.join(base, link))
    if link.startswith("/") or resolved == ".." or resolved.startswith("../"):
        raise DatasetError(
            f"{archive}: link {member.name!r} -> {member.linkname!r} points outside the target folder; refused"
        )
    return resolved


Reader = Callable[[Member], Any]


def _read_link(handle: IO[bytes]) -> str:
    """A zip/rar symlink's target (stored as the member's content; a real one is short)."""
    with handle:
        return handle.read(4096).decode("utf-8", "replace")


@contextmanager
def _open(archive: Path) -> Iterator[tuple[list[Member], Reader]]:
    """The members of ``archive`` and a function opening one of them for reading."""
    if not archive.is_file():
        raise DatasetError(f"{archive}: no such archive file")
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = {}
            for info in zf.infolist():
                mode = info.external_attr >> 16
                kind = "dir" if info.is_dir() else "symlink" if (mode & 0o170000) == 0o120000 else "file"
                linkname = _read_link(zf.open(info)) if kind == "symlink" else ""
                members[info.filename] = (info, Member(info.filename, kind, info.file_size, linkname))
            yield [m for _, m in members.values()], lambda m: zf.open(members[m.name][0])
        return
    if archive.name.lower().endswith(".rar"):
        with _open_rar(archive) as opened:
            yield opened
        return
    try:
        tf = tarfile.open(archive, "r:*")  # noqa: SIM115 (closed below)
    except tarfile.TarError as exc:
        raise DatasetError(f"{archive}: not a zip, tar or rar archive ({exc})") from None
    with tf:
        infos = {}
        for info in tf.getmembers():
            kind = (
                "file"
                if info.isfile()
                else "dir"
                if info.isdir()
                else "symlink"
                if info.issym()
                else "hardlink"
                if info.islnk()
                else "other"
            )
            infos[info.name] = (info, Member(info.name, kind, info.size, info.linkname))

        def read(member: Member) -> IO[bytes]:
            handle = tf.extractfile(infos[member.name][0])
            assert handle is not None  # a regular file
            return handle

        yield [m for _, m in infos.values()], read


@contextmanager
def _open_rar(archive: Path) -> Iterator[tuple[list[Member], Reader]]:
    try:
        import rarfile  # type: ignore[import-not-found]
    except ImportError:
        raise DatasetError(
            f"{archive} is a RAR archive: install the Python package `rarfile` and the `unrar` (or `bsdtar`) "
            "tool, or extract it yourself and define the folders under `local_datasets` in the config"
        ) from None
    try:
        rf = rarfile.RarFile(archive)
    except (rarfile.Error, OSError) as exc:
        raise DatasetError(f"{archive}: cannot read the RAR archive ({exc})") from None
    with rf:
        infos = {}
        for info in rf.infolist():
            kind = "dir" if info.is_dir() else "symlink" if info.is_symlink() else "file"
            linkname = _read_link(rf.open(info)) if kind == "symlink" else ""
            infos[info.filename] = (info, Member(info.filename, kind, info.file_size, linkname))
        yield [m for _, m in infos.values()], lambda m: rf.open(infos[m.name][0])
