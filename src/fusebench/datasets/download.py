"""Fetch a dataset split, mirror first then the pinned upstream commit, and verify every file.

Layout written::

    <out_dir>/<modality>/<pair>.<ext>
    <out_dir>/files.sha256        sha256sum format, written last (the completion marker)

Every file is written to a temporary name in its target folder, checked against the sha256 and size in
files.csv, and only then renamed into place, so a failed or interrupted download never leaves a
half-written or wrong file under a final name. Files already present with the right checksum are skipped.

Sources, in order:

1. the mirror (``mirror`` argument, else ``$FUSEBENCH_MIRROR``): a folder, ``file://`` or ``http(s)://``
   base laid out like the data bundle, ``<dataset>/<split>/<modality>/<file>`` (the manifest ``path``);
2. upstream, ``https://raw.githubusercontent.com/<owner>/<repo>/<commit>/<source_path>`` (base overridable
   with ``$FUSEBENCH_UPSTREAM``).

A file missing from the mirror is fetched upstream; a mirror copy with the wrong checksum is an error (fix
or delete it) rather than silently bypassed.

Re-encoded files (``transform`` like ``tif->png (lossless)``): upstream holds a TIFF/BMP, the bundle a PNG.
Fetched upstream, the image is decoded and written as PNG with Pillow (``optimize=True``), which
reproduces the bundle's bytes, so the sha256 check applies as for every other file (checked for all 58
such files with Pillow 13). A different Pillow/zlib build may compress differently; the PNG is then still
accepted when the upstream bytes match the manifest's git blob id (``source_blob_sha1``) and the PNG decodes
to exactly the upstream pixels, with a warning, and its actual sha256 goes into ``files.sha256``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..atomic import atomic_path, is_disk_full, write_text_atomic
from ..imageio import list_images
from .spec import UPSTREAM_ENV, DatasetError, FileEntry, upstream_base

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

MIRROR_ENV = "FUSEBENCH_MIRROR"
MARKER = "files.sha256"
#: attempts per http(s) URL (network errors, 5xx, 429 and truncated bodies are retried)
HTTP_ATTEMPTS = 3
RETRY_DELAY_S = 1.0
TIMEOUT_S = 60.0
_CHUNK = 1 << 20


def resolve_mirror(mirror: str | os.PathLike[str] | None) -> str | None:
    """The mirror to use: the argument, else $FUSEBENCH_MIRROR; empty means none."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV)
    mirror = os.fspath(mirror) if mirror is not None else None
    return mirror or None


def download_split(
    name: str,
    split: str,
    out_dir: str | os.PathLike[str],
    mirror: str | None = None,
    max_pairs: int | None = None,
    progress: bool = True,
) -> list[Path]:
    """Download ``split`` ('train'/'test') of the registered dataset ``name`` into ``out_dir``.

    Returns the paths of the files (in pair order, both modalities of each pair).
    """
    from . import DATASETS

    entries = DATASETS.get(name).files(split, max_pairs=max_pairs)
    return download_files(entries, out_dir, mirror=mirror, progress=progress, desc=f"{name}/{split}")


def download_files(
    entries: Sequence[FileEntry],
    out_dir: str | os.PathLike[str],
    mirror: str | None = None,
    progress: bool = True,
    desc: str = "download",
) -> list[Path]:
    """Fetch and verify ``entries`` into ``out_dir/<modality>/<pair>.<ext>``, then write files.sha256."""
    out_dir = Path(out_dir)
    mirror = resolve_mirror(mirror)
    marker = out_dir / MARKER
    previous = _read_marker(marker) if marker.is_file() else {}
    # The marker means "this selection is complete": drop a stale one before touching anything.
    marker.unlink(missing_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)

    from tqdm import tqdm

    sums: dict[str, str] = {}
    paths: list[Path] = []
    fetched = 0
    for entry in tqdm(entries, desc=desc, unit="file", disable=not progress):
        target = out_dir / entry.relpath
        if entry.relpath in sums:
            raise DatasetError(f"{entry.relpath} is selected twice")
        _remove_stale_parts(target)
        digest = _existing_digest(target, entry, previous.get(entry.relpath))
        if digest is None:
            digest = fetch_file(entry, target, mirror)
            fetched += 1
        sums[entry.relpath] = digest
        paths.append(target)
    write_text_atomic(marker, "".join(f"{sums[rel]}  {rel}\n" for rel in sorted(sums)))
    log.info("%s: %d files verified in %s (%d fetched)", desc, len(paths), out_dir, fetched)
    return paths


def pairs(split_dir: str | os.PathLike[str], modalities: Sequence[str]) -> list[tuple[str, Path, Path]]:
    """(pair, path of modality a, path of modality b) for every pair of a downloaded split, sorted by pair.

    If the split's ``files.sha256`` exists, only the files it lists count (so a folder that once held a
    larger selection yields exactly the last completed download).
    """
    split_dir = Path(split_dir)
    if len(modalities) != 2:
        raise ValueError(f"need two modalities, got {list(modalities)}")
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir}: no such folder; fetch it first with `fusebench download`")
    marker = split_dir / MARKER
    listed = _read_marker(marker) if marker.is_file() else None
    found: list[dict[str, Path]] = []
    for modality in modalities:
        folder = split_dir / modality
        if not folder.is_dir():
            raise DatasetError(
                f"{split_dir}: no {modality}/ folder (expected {'/, '.join(modalities)}/); "
                "is this a downloaded split of the right dataset?"
            )
        images = list_images(folder)
        if listed is not None:
            wanted = {rel.split("/", 1)[1] for rel in listed if rel.startswith(f"{modality}/")}
            missing = sorted(wanted - {p.name for p in images.values()})
            if missing:
                raise DatasetError(
                    f"{folder}: {len(missing)} file(s) listed in {marker} are missing (e.g. {missing[0]}); "
                    "run `fusebench download` again"
                )
            images = {stem: path for stem, path in images.items() if path.name in wanted}
        found.append(images)
    first, second = found
    only_first = sorted(set(first) - set(second))
    only_second = sorted(set(second) - set(first))
    if only_first or only_second:
        problems = []
        for alone, have, lack in ((only_first, *modalities), (only_second, *reversed(modalities))):
            if alone:
                problems.append(f"{len(alone)} {have} image(s) have no {lack} image: {', '.join(alone[:5])}")
        raise DatasetError(f"{split_dir}: unpaired images; " + "; ".join(problems))
    if not first:
        raise DatasetError(f"{split_dir}: no image pairs in {'/ and '.join(modalities)}/")
    return [(pair, first[pair], second[pair]) for pair in sorted(first)]


# ----------------------------------------------------------------------------------------------- one file


def fetch_file(entry: FileEntry, target: Path, mirror: str | None) -> str:
    """Put a verified copy of ``entry`` at ``target`` and return its sha256; raise DatasetError otherwise."""
    sources: list[tuple[str, str]] = []
    if mirror is not None:
        sources.append(("mirror", _mirror_location(mirror, entry)))
    sources.append(("upstream", entry.upstream_url(upstream_base())))
    failures: list[str] = []
    for kind, location in sources:
        try:
            with atomic_path(target) as tmp:
                if kind == "upstream" and entry.reencoded:
                    digest = _fetch_reencoded(entry, location, tmp)
                else:
                    _fetch(location, tmp)
                    advice = _mirror_advice(location) if kind == "mirror" else _upstream_advice()
                    digest = _verify(entry, tmp, location, advice)
            return digest
        except _Unavailable as exc:
            failures.append(f"{kind} {location}: {exc}")
            if kind == "mirror":
                log.info("%s: not in the mirror (%s); trying upstream", entry.path, exc)
    mirror_hint = (
        f"check --mirror / ${MIRROR_ENV} (its root must hold the bundle layout, e.g. {entry.path})"
        if mirror is not None
        else f"set --mirror / ${MIRROR_ENV} to a copy of the data bundle"
    )
    raise DatasetError(
        f"cannot fetch {entry.path} (sha256 {entry.sha256}): " + "; ".join(failures) + f". Nothing was "
        f"written to {target}. To fix: {mirror_hint}, or check the network connection"
        + (f" and ${UPSTREAM_ENV}" if os.environ.get(UPSTREAM_ENV) else "")
        + "."
    )


def _verify(entry: FileEntry, tmp: Path, location: str, advice: str) -> str:
    size, digest = _sha256_file(tmp)
    if digest == entry.sha256 and size == entry.bytes:
        return digest
    raise DatasetError(_mismatch(entry, location, digest, size, advice))


def _mismatch(entry: FileEntry, location: str, digest: str, size: int, advice: str) -> str:
    if size < entry.bytes:
        what = f"truncated: {size} of {entry.bytes} bytes"
    elif size > entry.bytes:
        what = f"wrong size: {size} bytes, expected {entry.bytes}"
    else:
        what = "corrupt (right size, wrong content)"
    return (
        f"checksum mismatch for {entry.path} (pair {entry.pair}, {entry.modality}) fetched from {location}: "
        f"{what}; expected sha256 {entry.sha256}, got {digest}. "
        f"Nothing was written. {advice}"
    )


def _mirror_advice(location: str) -> str:
    return (
        f"The mirror copy is corrupt or out of date: delete or re-copy it ({location}), or check --mirror / "
        f"${MIRROR_ENV} (unset it to fetch from upstream)."
    )


def _upstream_advice() -> str:
    return (
        "The upstream file differs from the manifest; retry (the transfer may have been cut), check "
        f"${UPSTREAM_ENV} if set, or use a verified copy of the data bundle via --mirror / ${MIRROR_ENV}."
    )


def _fetch_reencoded(entry: FileEntry, location: str, tmp: Path) -> str:
    """Fetch the upstream TIFF/BMP of a re-encoded entry and write it to ``tmp`` as lossless PNG."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    upstream_suffix = Path(entry.source_path).suffix
    with _temp_beside(tmp.parent, entry.filename, upstream_suffix) as raw:
        _fetch(location, raw)
        data = raw.read_bytes()
    blob_ok = git_blob_sha1(data) == entry.source_blob_sha1
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            pixels = _to_mode(image, entry.image_mode)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DatasetError(
            f"{entry.path}: the upstream file {location} cannot be decoded ({exc}); git blob "
            f"{git_blob_sha1(data)}, expected {entry.source_blob_sha1}. {_upstream_advice()}"
        ) from exc
    encode_png(pixels, tmp)
    size, digest = _sha256_file(tmp)
    if digest == entry.sha256 and size == entry.bytes:
        return digest
    if not blob_ok:
        raise DatasetError(
            _mismatch(entry, location, digest, size, _upstream_advice())
            + f" (re-encoded from {upstream_suffix}; upstream git blob {git_blob_sha1(data)}, "
            f"expected {entry.source_blob_sha1})"
        )
    # The upstream bytes are exactly those the bundle was made from; only the PNG encoder differs.
    with Image.open(tmp) as check:
        check.load()
        same = check.mode == pixels.mode and np.array_equal(np.asarray(check), np.asarray(pixels))
    if not same:
        raise DatasetError(f"{entry.path}: the PNG re-encoding of {location} changed the pixels")
    log.warning(
        "%s: PNG re-encoding of %s has sha256 %s, not the bundle's %s (different Pillow/zlib build); "
        "accepted because the upstream file matches git blob %s and the pixels are identical",
        entry.path,
        location,
        digest,
        entry.sha256,
        entry.source_blob_sha1,
    )
    return digest


def encode_png(image: Image.Image, path: Path) -> None:
    """The bundle's lossless PNG encoding (Pillow, optimize=True; no metadata)."""
    from PIL import Image

    clean = Image.frombytes(image.mode, image.size, image.tobytes())  # drop info/ICC/DPI chunks
    clean.save(path, format="PNG", optimize=True)


def _to_mode(image: Image.Image, mode: str) -> Image.Image:
    """``image`` in ``mode`` if that loses nothing (e.g. gray palette -> L, opaque RGBA -> RGB)."""
    import numpy as np

    if image.mode == mode:
        return image
    converted = image.convert(mode)
    if not np.array_equal(np.asarray(image.convert("RGBA")), np.asarray(converted.convert("RGBA"))):
        raise ValueError(f"converting {image.mode} to {mode} would change pixels")
    return converted


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a file with these bytes (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


# -------------------------------------------------------------------------------------- transport


class _Unavailable(Exception):
    """The source does not have the file or cannot be reached (try the next source)."""


def _mirror_location(mirror: str, entry: FileEntry) -> str:
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{quote(entry.path, safe='/')}"
    return str(Path(mirror) / entry.path)


def _fetch(location: str, dest: Path) -> None:
    """Copy ``location`` (a local path or URL) to ``dest``; raise _Unavailable when it cannot be had."""
    if "://" not in location:
        try:
            shutil.copyfile(location, dest)
        except FileNotFoundError:
            raise _Unavailable("no such file") from None
        except OSError as exc:
            if is_disk_full(exc):  # writing our copy failed, not reading the mirror: no other source helps
                raise
            raise _Unavailable(f"cannot read it ({exc})") from None
        return
    retry = location.startswith(("http://", "https://"))
    attempts = HTTP_ATTEMPTS if retry else 1
    for attempt in range(1, attempts + 1):
        try:
            _fetch_url(location, dest)
            return
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
            transient = exc.code >= 500 or exc.code in (408, 429)
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, FileNotFoundError):
                raise _Unavailable("no such file") from None
            error = f"cannot connect ({reason})"
            transient = True
        except (http.client.HTTPException, TimeoutError, ConnectionError, _Truncated) as exc:
            error = f"transfer failed ({type(exc).__name__}: {exc})"
            transient = True
        if not (retry and transient) or attempt == attempts:
            suffix = f" after {attempt} attempts" if attempt > 1 else ""
            raise _Unavailable(error + suffix)
        log.warning("%s: %s; retrying (%d/%d)", location, error, attempt, attempts - 1)
        time.sleep(RETRY_DELAY_S * attempt)


class _Truncated(Exception):
    pass


def _fetch_url(url: str, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "fusebench"})
    with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response, open(dest, "wb") as out:
        shutil.copyfileobj(response, out, _CHUNK)
        length = response.headers.get("Content-Length")
        written = out.tell()
    if length is not None and length.isdigit() and int(length) != written:
        raise _Truncated(f"got {written} of {length} bytes")


# ------------------------------------------------------------------------------------------ helpers


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _existing_digest(target: Path, entry: FileEntry, recorded: str | None) -> str | None:
    """sha256 of an already present, valid ``target``, else None (it must be fetched)."""
    if not target.is_file():
        return None
    size, digest = _sha256_file(target)
    if digest == entry.sha256 and size == entry.bytes:
        return digest
    # a re-encoded file accepted earlier by git blob id + pixel check (see module docstring)
    if entry.reencoded and recorded is not None and digest == recorded:
        return digest
    log.warning("%s: present but its sha256 %s is not %s; fetching it again", target, digest, entry.sha256)
    return None


def _read_marker(marker: Path) -> dict[str, str]:
    sums: dict[str, str] = {}
    for line in marker.read_text(encoding="utf-8").splitlines():
        digest, sep, rel = line.partition("  ")
        if sep and len(digest) == 64:
            sums[rel.lstrip("*")] = digest
    return sums


def _remove_stale_parts(target: Path) -> None:
    """Delete temporary files of ``target`` left by a killed earlier run (atomic_path's naming)."""
    if target.parent.is_dir():
        for stale in target.parent.glob(f".{target.name}.*.part*"):
            stale.unlink(missing_ok=True)


@contextlib.contextmanager
def _temp_beside(folder: Path, name: str, suffix: str) -> Iterator[Path]:
    """A temporary file named like atomic_path's (hidden, ``.part``), removed on exit."""
    fd, name = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{suffix}", dir=folder)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)
