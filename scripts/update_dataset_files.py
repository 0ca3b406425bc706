#!/usr/bin/env python
"""Merge a data bundle's ``manifest.csv`` into ``src/fusebench/datasets/files.csv``.

files.csv is a trimmed copy of manifests (no images): one row per file with the columns that
``fusebench download`` needs to fetch and verify it. Run it after the bundle changes, or with the
manifest of a new dataset::

    python scripts/update_dataset_files.py ../shared/datasets/manifest.csv

and commit the changed files.csv. The manifest's rows replace those of the same (dataset, split); rows of
every other dataset/split are kept. A manifest that would remove files of a dataset/split it lists is
refused unless ``--drop-missing`` says so. Pass ``--check`` to only report whether files.csv is up to date.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "fusebench" / "datasets" / "files.csv"

COLUMNS = [
    "dataset",
    "split",
    "pair",
    "modality",
    "path",
    "sha256",
    "bytes",
    "mode",
    "source_repo",
    "source_commit",
    "source_path",
    "source_blob_sha1",
    "transform",
]

_GITHUB = re.compile(r"^(?:https?://github\.com/)?(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")
_HEX = {"sha256": 64, "source_commit": 40, "source_blob_sha1": 40}


def owner_name(source_repo: str) -> str:
    """``https://github.com/owner/name`` (or ``owner/name``) -> ``owner/name``."""
    match = _GITHUB.match(source_repo.strip())
    if not match:
        raise ValueError(f"source_repo {source_repo!r} is not a GitHub repository URL")
    return match.group("repo")


def trim(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(COLUMNS) - set(reader.fieldnames or [])
        if missing:
            raise SystemExit(f"{manifest}: missing columns {sorted(missing)}")
        rows = []
        for number, row in enumerate(reader, start=2):
            out = {column: row[column].strip() for column in COLUMNS}
            out["source_repo"] = owner_name(out["source_repo"])
            for column, length in _HEX.items():
                if not re.fullmatch(f"[0-9a-f]{{{length}}}", out[column]):
                    raise SystemExit(f"{manifest}:{number}: {column} {out[column]!r} is not {length} hex")
            expected_path = f"{out['dataset']}/{out['split']}/{out['modality']}/{out['pair']}"
            if Path(out["path"]).with_suffix("").as_posix() != expected_path:
                raise SystemExit(f"{manifest}:{number}: path {out['path']!r} is not {expected_path}.<ext>")
            int(out["bytes"])
            rows.append(out)
    rows.sort(key=lambda r: (r["dataset"], r["split"], r["pair"], r["modality"]))
    seen: set[tuple[str, str, str, str]] = set()
    for r in rows:
        key = (r["dataset"], r["split"], r["pair"], r["modality"])
        if key in seen:
            raise SystemExit(f"{manifest}: {'/'.join(key)} is listed twice")
        seen.add(key)
    return rows


def read_rows(path: Path) -> list[dict[str, str]]:
    """The rows of an existing files.csv (none if there is no file yet)."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != COLUMNS:
            raise SystemExit(f"{path}: columns {reader.fieldnames} are not {COLUMNS}; refusing to rewrite it")
        return list(reader)


def merge(current: list[dict[str, str]], new: list[dict[str, str]], drop_missing: bool = False) -> list[dict[str, str]]:
    """``current`` with the (dataset, split) groups of ``new`` replaced by ``new``'s rows."""
    groups = {(r["dataset"], r["split"]) for r in new}
    new_keys = {(r["dataset"], r["split"], r["pair"], r["modality"]) for r in new}
    kept = [r for r in current if (r["dataset"], r["split"]) not in groups]
    lost = [r for r in current if (r["dataset"], r["split"]) in groups]
    lost = [r for r in lost if (r["dataset"], r["split"], r["pair"], r["modality"]) not in new_keys]
    if lost and not drop_missing:
        shown = ", ".join(r["path"] for r in lost[:5])
        raise SystemExit(
            f"the manifest lacks {len(lost)} file(s) that files.csv lists for the same dataset/split (e.g. {shown}); "
            "nothing was written. Pass --drop-missing to remove them"
        )
    rows = kept + new
    rows.sort(key=lambda r: (r["dataset"], r["split"], r["pair"], r["modality"]))
    return rows


def render(rows: list[dict[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path, help="the bundle's manifest.csv")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: the package's files.csv")
    parser.add_argument("--check", action="store_true", help="exit 1 if --out differs, write nothing")
    parser.add_argument(
        "--drop-missing", action="store_true", help="remove rows of the manifest's dataset/splits it no longer lists"
    )
    args = parser.parse_args(argv)

    existing = read_rows(args.out)
    rows = merge(existing, trim(args.manifest), args.drop_missing)
    text = render(rows)
    current = args.out.read_text(encoding="utf-8") if args.out.is_file() else None
    if args.check:
        if current != text:
            print(f"{args.out} is out of date; run {Path(__file__).name} {args.manifest}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    if current == text:
        print(f"{args.out} is up to date")
        return 0
    sys.path.insert(0, str(REPO / "src"))
    from fusebench.atomic import write_text_atomic

    write_text_atomic(args.out, text)
    print(f"wrote {args.out} ({len(rows)} files; {len(existing)} before, {len(rows) - len(existing):+d})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
