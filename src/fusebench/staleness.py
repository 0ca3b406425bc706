"""Keeping the workflow's results honest when files change behind Snakemake's back.

Snakemake decides what to redo from modification times, and a ``directory()`` output's time is the folder's
own: a fused image truncated or replaced later leaves ``results/fused/<dataset>/<method>`` looking up to
date, so a plain rerun says "Nothing to be done" while the metrics describe images that no longer exist.
:func:`folder_fingerprint` gives the metrics rule a parameter that changes with any file of the folder
(Snakemake reruns a job whose parameters changed). When a run then fails, :func:`set_aside_stale` renames a
report whose inputs are missing or newer than it, so ``index.html`` never shows numbers of files that changed.

A Snakemake killed outright (SIGKILL, a closed terminal, an out-of-memory kill) leaves its lock in
``.snakemake/locks`` and the next run stops with "Directory cannot be locked". :func:`release_stale_locks`
(``python -m fusebench.staleness unlock``, run by ``make quickstart``) removes such a lock when no Snakemake
process works in the folder, which is what ``snakemake --unlock`` does without that check.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from pathlib import Path

LOCKS = Path(".snakemake") / "locks"


def folder_fingerprint(folder: str | os.PathLike[str]) -> str:
    """A short digest of the names and sizes of the files under ``folder`` ("absent" if there is none).

    Sizes rather than modification times: a copy (DVC checkout, rsync) keeps the fingerprint, a truncated,
    added or removed file changes it; reading every file's content would make each dry run slow."""
    folder = Path(folder)
    if not folder.is_dir():
        return "absent"
    digest = hashlib.sha1()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(folder).as_posix()}\0{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


def is_stale(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> bool:
    """Whether ``output`` exists but one of ``inputs`` is missing or newer than it."""
    output = Path(output)
    if not output.is_file():
        return False
    built = output.stat().st_mtime_ns
    return any(not Path(p).exists() or Path(p).stat().st_mtime_ns > built for p in inputs)


def set_aside_stale(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> Path | None:
    """Rename a stale ``output`` (see :func:`is_stale`) to ``<stem>.stale<suffix>`` beside it (relative links
    keep working) and return the new path; None when it is missing or up to date."""
    output = Path(output)
    if not is_stale(output, inputs):
        return None
    os.replace(output, _aside(output))
    return _aside(output)


def drop_set_aside(output: str | os.PathLike[str], inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Delete the copy :func:`set_aside_stale` made once ``output`` exists again and is up to date."""
    output = Path(output)
    if output.is_file() and not is_stale(output, inputs):
        _aside(output).unlink(missing_ok=True)


def _aside(output: Path) -> Path:
    return output.with_name(f"{output.stem}.stale{output.suffix}")


def snakemake_running_in(folder: str | os.PathLike[str]) -> bool | None:
    """Whether a Snakemake process (other than this one) has ``folder`` as its working directory; None where
    processes cannot be inspected (no ``/proc``: macOS, Windows)."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    folder = Path(folder).resolve()
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:  # gone meanwhile, or another user's process
            continue
        names = [Path(os.fsdecode(arg)).name for arg in argv[:3]]
        if cwd == folder and ("snakemake" in names or any(arg == b"snakemake" for arg in argv[1:3])):
            return True
    return False


def release_stale_locks(folder: str | os.PathLike[str] = ".") -> list[Path]:
    """Remove the Snakemake locks of ``folder`` when no Snakemake runs there; return the removed files. Where
    that cannot be checked (no ``/proc``) nothing is removed."""
    locks = sorted((Path(folder) / LOCKS).glob("*")) if (Path(folder) / LOCKS).is_dir() else []
    if not locks or snakemake_running_in(folder) is not False:
        return []
    for lock in locks:
        lock.unlink(missing_ok=True)
    return locks


if __name__ == "__main__":
    if sys.argv[1:] != ["unlock"]:
        sys.exit("usage: python -m fusebench.staleness unlock   (in the workflow's folder)")
    for removed in release_stale_locks():
        print(f"removed {removed}: left by a Snakemake run that was killed (none runs here now)", file=sys.stderr)
