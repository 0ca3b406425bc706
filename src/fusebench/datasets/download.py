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
import io
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from ..atomic import atomic_path, write_text_atomic
from ..fetch import FetchFailed, Pin, Rejected, Source, Unavailable, copy_to, fetch_pinned, file_digests, git_blob_sha1
from ..imageio import list_images
from .folders import copy_split, write_description
from .spec import UPSTREAM_ENV, DatasetError, DatasetSpec, FileEntry, upstream_base

if TYPE_CHECKING:
    from PIL import Image

log = logging.getLogger(__name__)

MIRROR_ENV = "FUSEBENCH_MIRROR"
MARKER = "files.sha256"


def resolve_mirror(mirror: str | os.PathLike[str] | None) -> str | None:
    """The mirror to use: the argument, else $FUSEBENCH_MIRROR; empty means none."""
    if mirror is None:
        mirror = os.environ.get(MIRROR_ENV)
    mirror = os.fspath(mirror) if mirror is not None else None
    return mirror or None


def download_split(
    name: str | DatasetSpec,
    split: str,
    out_dir: str | os.PathLike[str],
    mirror: str | None = None,
    max_pairs: int | None = None,
    progress: bool = True,
    archive: str | os.PathLike[str] | None = None,
) -> list[Path]:
    """Download ``split`` ('train'/'test') of dataset ``name`` (registered, or a spec, e.g. from
    :func:`~.spec.local_spec`) into ``out_dir``; ``archive``: the user's copy of an archive dataset.

    Returns the paths of the files (in pair order, both modalities of each pair).
    """
    from . import DATASETS

    spec = DATASETS.get(name) if isinstance(name, str) else name
    if archive is not None and spec.kind != "archive":
        raise DatasetError(f"dataset {spec.name} is not distributed as an archive; it takes no archive ({archive})")
    if spec.kind == "bundle":
        entries = spec.files(split, max_pairs=max_pairs)
        return download_files(entries, out_dir, mirror=mirror, progress=progress, desc=f"{spec.name}/{split}")
    out_dir = Path(out_dir)
    (out_dir / MARKER).unlink(missing_ok=True)
    sums = copy_split(spec, split, out_dir, resolve_mirror(mirror), archive=archive, max_pairs=max_pairs)
    write_description(spec, out_dir)
    _write_marker(out_dir, sums)
    log.info("%s/%s: %d files verified in %s", spec.name, split, len(sums), out_dir)
    return [out_dir / rel for rel in sums]


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
    _write_marker(out_dir, sums)
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
    pin = Pin(sha256=entry.sha256, size=entry.bytes)
    upstream = Source("upstream", entry.upstream_url(upstream_base()))
    sources = [Source("mirror", _mirror_location(mirror, entry))] if mirror is not None else []
    if not entry.reencoded:
        sources.append(upstream)
    try:
        digests, _ = fetch_pinned(target, pin, sources, fallback_on_mismatch=False)
        return digests["sha256"]
    except Rejected as exc:
        advice = _mirror_advice(exc.source.location) if exc.source.kind == "mirror" else _upstream_advice()
        raise DatasetError(_mismatch(entry, exc.source.location, exc.problems, advice)) from None
    except FetchFailed as exc:
        failures = exc.attempts
    if entry.reencoded:
        try:
            with atomic_path(target) as tmp:
                return _fetch_reencoded(entry, upstream.location, tmp)
        except Unavailable as exc:
            failures.append(f"upstream {upstream.location}: {exc}")
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


def _mismatch(entry: FileEntry, location: str, problems: list[str], advice: str) -> str:
    return (
        f"checksum mismatch for {entry.path} (pair {entry.pair}, {entry.modality}) fetched from {location}: "
        f"{'; '.join(problems)}. Nothing was written. {advice}"
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
        copy_to(location, raw)
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
    digests = file_digests(tmp)
    digest = digests["sha256"]
    problems = Pin(sha256=entry.sha256, size=entry.bytes).problems(digests)
    if not problems:
        return digest
    if not blob_ok:
        raise DatasetError(
            _mismatch(entry, location, problems, _upstream_advice())
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


def _mirror_location(mirror: str, entry: FileEntry) -> str:
    if "://" in mirror:
        return f"{mirror.rstrip('/')}/{quote(entry.path, safe='/')}"
    return str(Path(mirror) / entry.path)


# ------------------------------------------------------------------------------------------ helpers


def _existing_digest(target: Path, entry: FileEntry, recorded: str | None) -> str | None:
    """sha256 of an already present, valid ``target``, else None (it must be fetched)."""
    if not target.is_file():
        return None
    digests = file_digests(target)
    digest = digests["sha256"]
    if digest == entry.sha256 and digests["size"] == entry.bytes:
        return digest
    # a re-encoded file accepted earlier by git blob id + pixel check (see module docstring)
    if entry.reencoded and recorded is not None and digest == recorded:
        return digest
    log.warning("%s: present but its sha256 %s is not %s; fetching it again", target, digest, entry.sha256)
    return None


def _write_marker(out_dir: Path, sums: dict[str, str]) -> None:
    write_text_atomic(out_dir / MARKER, "".join(f"{sums[rel]}  {rel}\n" for rel in sorted(sums)))


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
