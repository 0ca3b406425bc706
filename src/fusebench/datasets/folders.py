"""Datasets made of two image folders: defined in the config, or inside an archive (LLVIP, M3FD, MFI-WHU).

A split is copied into the same layout as a registry download, ``<out>/<modality>/<pair>.<ext>``, with the
same completion marker (``files.sha256``), plus ``dataset.json`` (name, task, modalities) so that the later
steps know a dataset that is not in the package's registry. Every copy is verified: against the
``checksums`` file when the definition has one, else against the source file's own sha256. Pairs match
by file stem; images without a partner, images that cannot be decoded and pairs of different sizes stop
the copy with a message naming them.

Folder paths are absolute, relative to the working directory, or ``mirror:<path>`` (relative to the
mirror, a local folder or ``file://`` URL). For an archive dataset they are paths inside the archive: the
archive (the file the user downloaded, or the pinned upstream file, fetched mirror first) is checked
against its published sha256 / size or git blob id and extracted safely (:mod:`.archive`) into a
temporary folder inside ``<out>``, removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

from ..atomic import write_text_atomic
from ..fetch import FetchFailed, Pin, Rejected, Source, fetch_pinned, file_digests
from ..imageio import list_images
from .archive import safe_extract
from .spec import DatasetError, DatasetSpec, upstream_base

log = logging.getLogger(__name__)

#: where a definition's folder is on disk
_Locate = Callable[[str], Path]

MIRROR_PREFIX = "mirror:"
#: written beside the images: what a later step needs to know about a dataset outside the registry
DESCRIPTION = "dataset.json"


def copy_split(
    spec: DatasetSpec,
    split: str,
    out_dir: Path,
    mirror: str | None,
    archive: str | os.PathLike[str] | None = None,
    max_pairs: int | None = None,
) -> dict[str, str]:
    """Copy and verify ``split`` of a folder or archive dataset into ``out_dir``; return relpath -> sha256."""
    if spec.kind == "archive":
        with _extracted(spec, split, out_dir, mirror, archive) as root:
            return _copy_pairs(spec, split, out_dir, lambda folder: root / folder, None, max_pairs)
    checksums = _read_checksums(_resolve(spec.checksums, mirror)) if spec.checksums else None
    return _copy_pairs(spec, split, out_dir, lambda folder: _resolve(folder, mirror), checksums, max_pairs)


def split_folder(folder: str, sub: str) -> str:
    """A modality folder of a split: ``{split}`` in ``folder`` replaced by the split's sub-folder (e.g.
    ``MSRS-main/{split}/ir``), else the sub-folder appended (``LLVIP/infrared`` + ``test``)."""
    if "{split}" in folder:
        return folder.replace("{split}", sub)
    return f"{folder.rstrip('/')}/{sub}" if sub else folder


def write_description(spec: DatasetSpec, out_dir: Path) -> None:
    info = {
        "name": spec.name,
        "task": spec.task,
        "modalities": list(spec.modalities),
        "kind": spec.kind,
        "description": spec.description,
        "citation": spec.citation,
    }
    write_text_atomic(out_dir / DESCRIPTION, json.dumps(info, indent=2) + "\n")


def read_description(split_dir: Path) -> DatasetSpec | None:
    """The dataset described by ``split_dir/dataset.json``, or None when there is none."""
    path = Path(split_dir) / DESCRIPTION
    if not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8"))
    return DatasetSpec(
        name=info["name"],
        task=info["task"],
        modalities=(info["modalities"][0], info["modalities"][1]),
        folder="",
        description=info.get("description", ""),
        citation=info.get("citation", ""),
    )


# ------------------------------------------------------------------------------------------- pairs


def source_files(spec: DatasetSpec, split: str, mirror: str | None) -> list[Path]:
    """The images (and checksums file) a config-defined dataset's split is copied from: the workflow's
    inputs of its download, so that a changed folder makes it run again."""
    found = _list_split(spec, split, lambda folder: _resolve(folder, mirror))
    files = sorted(path for images in found for path in images.values())
    return files + ([_resolve(spec.checksums, mirror)] if spec.checksums else [])


def _list_split(spec: DatasetSpec, split: str, locate: _Locate) -> list[dict[str, Path]]:
    """stem -> image, per modality, of ``split``."""
    sub = spec.split_spec(split).split
    assert spec.folders is not None
    found: list[dict[str, Path]] = []
    for modality in spec.modalities:
        folder = locate(split_folder(spec.folders[modality], sub))
        if not folder.is_dir():
            raise DatasetError(
                f"dataset {spec.name} ({split}): the {modality} folder {folder} does not exist; check "
                f"folders.{modality}" + (f" and splits.{split}" if sub else "") + " in its definition"
            )
        try:
            found.append(list_images(folder))
        except ValueError as exc:
            raise DatasetError(f"dataset {spec.name}: {exc}") from None
    return found


def _copy_pairs(
    spec: DatasetSpec,
    split: str,
    out_dir: Path,
    locate: _Locate,
    checksums: Mapping[Path, str] | None,
    max_pairs: int | None,
) -> dict[str, str]:
    found = _list_split(spec, split, locate)
    first, second = found
    _check_paired(spec, split, first, second)
    names = sorted(first)
    if not names:
        raise DatasetError(f"dataset {spec.name} ({split}): no images in its {spec.modalities[0]} folder")
    if max_pairs is not None:
        names = names[:max_pairs]
    sums: dict[str, str] = {}
    for pair in names:
        copies = []
        for modality, images in zip(spec.modalities, found, strict=True):
            source = images[pair]
            rel = f"{modality}/{source.name}"
            sums[rel] = _copy_verified(spec, source, out_dir / rel, checksums)
            copies.append((out_dir / rel, source))
        _check_images(spec, pair, copies)
    return sums


def _check_paired(spec: DatasetSpec, split: str, first: dict[str, Path], second: dict[str, Path]) -> None:
    problems = []
    for have, lack, images, other in (
        (*spec.modalities, first, second),
        (*reversed(spec.modalities), second, first),
    ):
        alone = sorted(images[stem].name for stem in set(images) - set(other))
        if alone:
            shown = ", ".join(alone[:10]) + (f" and {len(alone) - 10} more" if len(alone) > 10 else "")
            problems.append(f"{len(alone)} {have} image(s) have no {lack} image with the same name: {shown}")
    if problems:
        raise DatasetError(
            f"dataset {spec.name} ({split}): unpaired images; " + "; ".join(problems) + ". Pairs match by file "
            "name without the extension: rename or remove them"
        )


def _copy_verified(spec: DatasetSpec, source: Path, target: Path, checksums: Mapping[Path, str] | None) -> str:
    if checksums is not None:
        expected = checksums.get(source.resolve())
        if expected is None:
            raise DatasetError(
                f"dataset {spec.name}: {source} is not listed in its checksums file {spec.checksums}; add it "
                "(sha256sum) or remove the image"
            )
    else:
        expected = file_digests(source)["sha256"]
    if target.is_file() and file_digests(target)["sha256"] == expected:
        return expected
    try:
        fetch_pinned(target, Pin(sha256=expected), [Source("folder", str(source))], fallback_on_mismatch=False)
    except Rejected as exc:
        raise DatasetError(
            f"dataset {spec.name}: {source} does not match its checksum ({'; '.join(exc.problems)}); the file "
            "changed or is damaged: restore it or update the checksums file"
        ) from None
    except FetchFailed as exc:
        raise DatasetError(f"dataset {spec.name}: cannot read {source} ({exc})") from None
    return expected


def _check_images(spec: DatasetSpec, pair: str, copies: list[tuple[Path, Path]]) -> None:
    """Both images of a pair decode (the verified copies are read) and have the same size."""
    from PIL import Image, UnidentifiedImageError

    sizes = []
    for copy, source in copies:
        try:
            with Image.open(copy) as image:
                image.load()
                sizes.append(image.size)
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(f"dataset {spec.name}: pair {pair}: {source} is not a readable image ({exc})") from None
    if sizes[0] != sizes[1]:
        described = " vs ".join(f"{source} {w}x{h}" for (_, source), (w, h) in zip(copies, sizes, strict=True))
        raise DatasetError(f"dataset {spec.name}: pair {pair} has images of different sizes: {described}")


# ------------------------------------------------------------------------------------------- places


def _resolve(path: str, mirror: str | None) -> Path:
    """A definition path: absolute, relative to the working directory, or ``mirror:<path>``."""
    if not path.startswith(MIRROR_PREFIX):
        return Path(path).expanduser()
    if not mirror:
        raise DatasetError(
            f"{path!r} is relative to the mirror, but no mirror is set (config 'mirror', --mirror or $FUSEBENCH_MIRROR)"
        )
    if mirror.startswith("file://"):
        mirror = unquote(urlparse(mirror).path)
    elif "://" in mirror:
        raise DatasetError(f"{path!r} needs a local mirror folder to list its images; the mirror is {mirror}")
    return Path(mirror).expanduser() / path[len(MIRROR_PREFIX) :]


def _read_checksums(path: Path) -> dict[Path, str]:
    """sha256sum lines ``<sha256>  <path>``; paths relative to the checksum file's folder."""
    if not path.is_file():
        raise DatasetError(f"checksums file {path} does not exist")
    sums: dict[Path, str] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        digest, _, name = line.strip().partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name:
            raise DatasetError(f"{path}:{number}: expected '<sha256>  <file>', got {line!r}")
        sums[(path.parent / name).resolve()] = digest.lower()
    return sums


@contextlib.contextmanager
def _extracted(
    spec: DatasetSpec, split: str, out_dir: Path, mirror: str | None, archive: str | os.PathLike[str] | None
) -> Iterator[Path]:
    """The archive's selected folders, extracted into a temporary folder inside ``out_dir``."""
    info = spec.archive
    assert info is not None and spec.folders is not None
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".extract-", dir=out_dir))
    try:
        path = _archive_file(spec, work, mirror, archive)
        sub = spec.split_spec(split).split
        wanted = [split_folder(folder, sub).rstrip("/") + "/" for folder in spec.folders.values()]
        root = work / "content"
        log.info("%s: extracting %s (%s)", spec.name, path, ", ".join(wanted))
        safe_extract(
            path,
            root,
            select=lambda name: any(name.startswith(prefix) for prefix in wanted),
            max_bytes=info.max_bytes,
            max_members=info.max_members,
        )
        yield root
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _archive_file(spec: DatasetSpec, work: Path, mirror: str | None, archive: str | os.PathLike[str] | None) -> Path:
    """The verified archive: the user's file, or the pinned upstream file fetched into ``work``."""
    info = spec.archive
    assert info is not None
    upstream = info.upstream
    pin_ids = {"sha256": info.sha256, "size": info.size}
    if upstream is not None:
        pin_ids["git_blob_sha1"] = upstream["git_blob_sha1"]
    if archive is None and upstream is None:
        raise DatasetError(
            f"dataset {spec.name} is distributed as {info.file}"
            + (f" ({info.url})" if info.url else "")
            + f": download it and give its path in the config (archives: {{{spec.name}: /path/to/{info.file}}}) "
            "or with --archive"
        )
    if archive is not None:
        path = Path(archive).expanduser()
        if not path.is_file():
            raise DatasetError(
                f"dataset {spec.name}: the archive {path} does not exist (config 'archives' / --archive); download "
                f"{info.file}" + (f" from {info.url}" if info.url else "") + " and put it there"
            )
        if any(value is not None for value in pin_ids.values()):
            problems = Pin(**pin_ids).problems(file_digests(path))
            if problems:
                raise DatasetError(
                    f"dataset {spec.name}: {path} is not the published {info.file}: {'; '.join(problems)}. "
                    "Download it again" + (f" from {info.url}" if info.url else "")
                )
        else:
            log.warning("%s: no published checksum for %s; only the extracted pairs are checked", spec.name, path)
        return path
    assert upstream is not None
    sources = []
    if mirror:
        location = (
            f"{mirror.rstrip('/')}/archives/{info.file}"
            if "://" in mirror
            else str(Path(mirror) / "archives" / info.file)
        )
        sources.append(Source("mirror", location))
    url = f"{upstream_base()}/{upstream['repo']}/{upstream['commit']}/{upstream['path']}"
    sources.append(Source("upstream", url))
    target = work / info.file
    try:
        fetch_pinned(target, Pin(**pin_ids), sources)
    except FetchFailed as exc:
        raise DatasetError(
            f"dataset {spec.name}: cannot fetch {info.file} ({upstream['repo']}@{upstream['commit'][:12]}:"
            f"{upstream['path']}, git blob {upstream['git_blob_sha1']}): {exc}. Put a copy at "
            f"<mirror>/archives/{info.file}, or download it yourself and give it with --archive / config 'archives'"
        ) from None
    return target
