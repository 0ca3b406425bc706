"""Atomic file output: write to a temporary name in the target folder, flush it to disk, then rename.

A killed job therefore never leaves a half-written file under the final name, and Snakemake/DVC never
see a truncated output as complete. The temporary file and then the folder are fsynced before and after
the rename, so after a power loss the target is either the old file or the complete new one (a rename
alone may reach the disk before the data it points to). A full disk is reported as :class:`DiskFullError`
naming the target, and the old target is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """No space (or quota) left while writing a file; the message names the file and what to do."""


def is_disk_full(exc: BaseException) -> bool:
    return _disk_full_cause(exc) is not None


def _disk_full_cause(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT error ``exc`` is or was raised while handling (torch.save, for one, reports a failed
    write as an "enforce fail" RuntimeError raised during the OSError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_error(target: str | os.PathLike[str], exc: OSError) -> DiskFullError:
    """The error to raise when writing ``target`` failed with ``exc`` (ENOSPC / EDQUOT)."""
    target = Path(target)
    return DiskFullError(
        exc.errno,
        f"no space left on the device (disk full or quota exceeded) while writing {target}: "
        f"{os.strerror(exc.errno or errno.ENOSPC)}. Nothing was written under that name (an earlier copy is "
        f"unchanged). Free space on that filesystem (`df -h {target.parent}`) or write elsewhere, then run again",
    )


def temp_pattern(target: str | os.PathLike[str]) -> str:
    """The glob matching :func:`atomic_path`'s temporary files for ``target`` (in its folder)."""
    return f".{Path(target).name}.*.part*"


def remove_stale_temps(target: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files of ``target`` that a killed earlier run left beside it; return them.

    Only for a target that one process writes at a time (a run folder, a job's output): a concurrent
    writer's temporary file would be removed too."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    stale = sorted(target.parent.glob(temp_pattern(target)))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it, rename it to ``target`` and fsync the
    folder, else delete it. ENOSPC/EDQUOT inside the block become a :class:`DiskFullError` naming ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part" + target.suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give outputs the usual mode
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        full = _disk_full_cause(exc)
        if full is not None and not isinstance(exc, DiskFullError):
            raise disk_full_error(target, full) from exc
        raise
    _fsync_folder(target.parent)


def write_bytes_atomic(target: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(target: str | os.PathLike[str], text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(path: Path) -> None:
    """Make a rename in ``path`` durable; skipped where folders cannot be opened or synced (Windows, some
    network filesystems), which then give no stronger guarantee anyway."""
    try:
        _fsync(path)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EACCES, errno.EPERM, errno.EISDIR, errno.EBADF):
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
