"""Dataset registry, files.csv and the verified downloader (mirror, upstream, re-encoding)."""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import http.server
import importlib.util
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from fusebench import fetch
from fusebench.datasets import (
    DATASETS,
    MARKER,
    DatasetError,
    FileEntry,
    download,
    download_files,
    download_split,
    file_table,
    git_blob_sha1,
    load_registry,
    pairs,
)
from fusebench.datasets.cli import download_command, list_command

REPO = Path(__file__).resolve().parents[1]

# name -> (task, modalities, folder, {train/test: (manifest split, pair count)})
EXPECTED = {
    "TNO": ("ivif", ("ir", "vi"), "TNO", {"test": ("test", 42)}),
    "TNO-cddfuse25": ("ivif", ("ir", "vi"), "TNO", {"test": ("test", 25)}),
    "RoadScene": ("ivif", ("ir", "vi"), "RoadScene", {"test": ("all", 221)}),
    "RoadScene-cddfuse50": ("ivif", ("ir", "vi"), "RoadScene", {"test": ("all", 50)}),
    "MSRS": ("ivif", ("ir", "vi"), "MSRS", {"train": ("train", 4), "test": ("test", 22)}),
    "VIFB": ("ivif", ("ir", "vi"), "VIFB", {"test": ("test", 21)}),
    "Harvard-MRI-CT": (
        "mif",
        ("mri", "ct"),
        "Harvard-MRI-CT",
        {"train": ("train", 160), "test": ("test", 24)},
    ),
    "Harvard-MRI-PET": (
        "mif",
        ("mri", "pet"),
        "Harvard-MRI-PET",
        {"train": ("train", 245), "test": ("test", 24)},
    ),
    "Harvard-MRI-SPECT": (
        "mif",
        ("mri", "spect"),
        "Harvard-MRI-SPECT",
        {"train": ("train", 333), "test": ("test", 24)},
    ),
    "Harvard-MRI-CT-cddfuse": ("mif", ("mri", "ct"), "Harvard-MRI-CT", {"test": ("cddfuse", 21)}),
    "Harvard-MRI-PET-cddfuse": ("mif", ("mri", "pet"), "Harvard-MRI-PET", {"test": ("cddfuse", 42)}),
    "Harvard-MRI-SPECT-cddfuse": ("mif", ("mri", "spect"), "Harvard-MRI-SPECT", {"test": ("cddfuse", 73)}),
    "MFIFB": ("mff", ("a", "b"), "MFIFB", {"test": ("test", 105)}),
    "MFIFB-lytro": ("mff", ("a", "b"), "MFIFB", {"test": ("test", 20)}),
    "MEFB": ("mef", ("a", "b"), "MEFB", {"test": ("test", 100)}),
}
# registry subsets <-> the bundle's splits/<dataset>/<name>.txt
SUBSETS = {
    "TNO-cddfuse25": "TNO/cddfuse25.txt",
    "RoadScene-cddfuse50": "RoadScene/cddfuse50.txt",
    "MFIFB-lytro": "MFIFB/lytro.txt",
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test reaches the network: upstream is an empty local folder unless a test builds one."""
    monkeypatch.delenv("FUSEBENCH_MIRROR", raising=False)
    empty = tmp_path_factory.mktemp("no-upstream")
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", empty.as_uri())
    monkeypatch.setattr(fetch, "RETRY_DELAY_S", 0.0)


@functools.cache
def _manifest_rows(mirror: Path) -> dict[str, dict[str, str]]:
    with open(mirror / "manifest.csv", newline="", encoding="utf-8") as fh:
        return {row["path"]: row for row in csv.DictReader(fh)}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _copy_mirror(mirror: Path, entries: list[FileEntry], dest: Path) -> Path:
    for entry in entries:
        (dest / entry.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / entry.path, dest / entry.path)
    return dest


def _fake_upstream(mirror: Path, entries: list[FileEntry], root: Path) -> Path:
    """<root>/<owner>/<repo>/<commit>/<source_path>: upstream bytes; TIFF/BMP made losslessly from the PNG."""
    for entry in entries:
        dest = root / entry.source_repo / entry.source_commit / entry.source_path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not entry.reencoded:
            shutil.copyfile(mirror / entry.path, dest)
            continue
        with Image.open(mirror / entry.path) as image:
            image.load()
            fmt = {".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}[dest.suffix.lower()]
            image.save(dest, format=fmt)
        with Image.open(dest) as back, Image.open(mirror / entry.path) as png:
            assert np.array_equal(np.asarray(back), np.asarray(png)), "fake upstream must be lossless"
    return root


# ------------------------------------------------------------------------------------------- registry


def test_registry_has_every_required_dataset() -> None:
    assert set(EXPECTED) <= set(DATASETS.names())
    for name, (task, modalities, folder, splits) in EXPECTED.items():
        spec = DATASETS.get(name)
        assert (spec.name, spec.task, spec.modalities, spec.folder) == (name, task, modalities, folder)
        assert {key: split.split for key, split in spec.splits.items()} == {k: v[0] for k, v in splits.items()}
        for key, (_, count) in splits.items():
            assert len(spec.pair_names(key)) == count, (name, key)
        assert spec.description and spec.citation


def test_every_registered_pair_has_both_modalities_in_files_csv() -> None:
    table = file_table()
    for name in DATASETS:
        spec = DATASETS.get(name)
        if spec.kind != "bundle":
            continue  # archive datasets: their pairs are checked when extracted (test_local_datasets.py)
        for key, split in spec.splits.items():
            rows = {(e.pair, e.modality) for e in table[(spec.folder, split.split)]}
            names = spec.pair_names(key)
            if split.pairs is not None:
                assert sorted(split.pairs) == names
            for pair in names:
                for modality in spec.modalities:
                    assert (pair, modality) in rows, (name, key, pair, modality)
            files = spec.files(key)
            assert len(files) == 2 * len(names)
            assert [f.pair for f in files[::2]] == names == sorted(names)
            assert [f.modality for f in files[:2]] == list(spec.modalities)


def test_cddfuse25_is_25_tno_pairs() -> None:
    spec = DATASETS.get("TNO-cddfuse25")
    assert len(spec.pair_names("test")) == 25
    assert set(spec.pair_names("test")) < set(DATASETS.get("TNO").pair_names("test"))
    assert spec.pair_names("test")[:5] == ["01", "02", "03", "04", "06"]


def test_subsets_match_bundle_split_lists(mirror: Path) -> None:
    for name, listing in SUBSETS.items():
        lines = (mirror / "splits" / listing).read_text(encoding="utf-8").splitlines()
        ids = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
        assert DATASETS.get(name).pair_names("test") == sorted(ids), name


def test_files_max_pairs_keeps_first_pairs_in_order() -> None:
    spec = DATASETS.get("MSRS")
    files = spec.files("test", max_pairs=3)
    assert [(f.pair, f.modality) for f in files] == [(p, m) for p in spec.pair_names("test")[:3] for m in ("ir", "vi")]
    assert len(spec.files("test", max_pairs=1000)) == 44
    with pytest.raises(ValueError):
        spec.files("test", max_pairs=0)
    with pytest.raises(DatasetError, match="no 'train' split; it has: test"):
        DATASETS.get("TNO").files("train")


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(KeyError, match="known: .*TNO-cddfuse25"):
        DATASETS.get("TNO42")


def test_files_csv_is_reproducible_from_manifest(mirror: Path) -> None:
    spec = importlib.util.spec_from_file_location("update_dataset_files", REPO / "scripts/update_dataset_files.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    packaged = (REPO / "src/fusebench/datasets/files.csv").read_text(encoding="utf-8")
    assert module.render(module.trim(mirror / "manifest.csv")) == packaged
    assert packaged.splitlines()[0].split(",") == module.COLUMNS
    assert module.main([str(mirror / "manifest.csv"), "--check"]) == 0


def test_files_csv_agrees_with_manifest(mirror: Path) -> None:
    rows = _manifest_rows(mirror)
    entries = [e for group in file_table().values() for e in group]
    assert len(entries) == len(rows)
    for entry in entries[::50]:
        row = rows[entry.path]
        assert (entry.sha256, entry.bytes, entry.source_commit) == (
            row["sha256"],
            int(row["bytes"]),
            row["source_commit"],
        )
        assert row["source_repo"] == f"https://github.com/{entry.source_repo}"


def test_file_entry_urls_are_pinned_raw_github_urls() -> None:
    pattern = re.compile(r"^https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+$")
    entries = [e for group in file_table().values() for e in group]
    assert entries and all(pattern.match(e.url) for e in entries)
    tno = DATASETS.get("TNO").files("test", max_pairs=1)[0]
    assert tno.url == (
        "https://raw.githubusercontent.com/Linfeng-Tang/Evaluation-for-Image-Fusion/"
        f"{tno.source_commit}/Image/Source-Image/TNO/ir/01.png"
    )
    assert (
        tno.upstream_url("file:///x/")
        == f"file:///x/Linfeng-Tang/Evaluation-for-Image-Fusion/{tno.source_commit}/{tno.source_path}"
    )


def _yaml(*entries: str) -> str:
    return "datasets:\n" + "".join(f" - {{name: X, folder: TNO, {entry}}}\n" for entry in entries)


_OK = "task: ivif, modalities: [ir, vi], splits: {test: {split: test}}"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_yaml("task: ivif, modalities: [ir, vi], splits: {test: {split: test, pairs: [01]}}"), r"\(X\).*quote"),
        (_yaml("task: fuse, modalities: [ir, vi], splits: {test: {split: test}}"), r"\(X\)\.task: 'fuse' is not one"),
        (_yaml("task: ivif, modalities: [ir, vi], splits: {val: {split: test}}"), r"'val' was unexpected"),
        (_yaml("task: ivif, modalities: [ir], splits: {test: {split: test}}"), "modalities"),
        (_yaml(_OK, _OK), "twice"),
    ],
)
def test_registry_yaml_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message):
        load_registry(text)


def test_registry_pair_missing_from_files_csv_is_reported() -> None:
    registry = load_registry(_yaml('task: ivif, modalities: [ir, vi], splits: {test: {split: test, pairs: ["99"]}}'))
    with pytest.raises(DatasetError, match=r"pairs \['99'\]"):
        registry.get("X").files("test")


def test_list_command_prints_every_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    list_command()
    out = capsys.readouterr().out
    for name in EXPECTED:
        assert re.search(rf"^{re.escape(name)}\s", out, re.M), name
    assert re.search(r"^TNO-cddfuse25\s+ivif\s+ir,vi\s+test=25 ", out, re.M)
    assert "train=4 (MSRS/train), test=22 (MSRS/test)" in out


# ------------------------------------------------------------------------------------------- download


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("TNO-cddfuse25", "test"),
        ("MSRS", "train"),
        ("Harvard-MRI-PET-cddfuse", "test"),
        ("MEFB", "test"),
        ("MFIFB-lytro", "test"),
    ],
)
def test_download_two_pairs_from_mirror(mirror: Path, tmp_path: Path, name: str, split: str) -> None:
    spec = DATASETS.get(name)
    out = tmp_path / "out"
    paths = download_split(name, split, out, mirror=str(mirror), max_pairs=2, progress=False)
    assert len(paths) == 4
    rows = _manifest_rows(mirror)
    entries = spec.files(split, max_pairs=2)
    for entry, path in zip(entries, paths, strict=True):
        assert path == out / entry.modality / f"{entry.pair}{Path(entry.path).suffix}"
        assert _sha256(path) == rows[entry.path]["sha256"]
    assert _files_in(out) == sorted([*paths, out / MARKER])
    marker = (out / MARKER).read_text().splitlines()
    expected = {f"{e.modality}/{Path(e.path).name}": rows[e.path]["sha256"] for e in entries}
    assert marker == [f"{expected[rel]}  {rel}" for rel in sorted(expected)]
    listed = pairs(out, spec.modalities)
    assert [p for p, _, _ in listed] == spec.pair_names(split)[:2]
    assert listed[0][1:] == (paths[0], paths[1])


def test_download_is_idempotent(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    download_split("TNO", "test", out, mirror=str(mirror), max_pairs=2, progress=False)
    before = {p: p.stat().st_mtime_ns for p in _files_in(out) if p.name != MARKER}

    def no_fetch(*args: object) -> str:
        raise AssertionError("a verified file was fetched again")

    monkeypatch.setattr(download, "fetch_file", no_fetch)
    monkeypatch.setenv("FUSEBENCH_MIRROR", str(tmp_path / "nowhere"))
    download_split("TNO", "test", out, max_pairs=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in _files_in(out) if p.name != MARKER} == before
    assert (out / MARKER).is_file()


def test_mirror_from_environment_and_file_url(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSEBENCH_MIRROR", mirror.as_uri())
    paths = download_split("VIFB", "test", tmp_path / "out", max_pairs=1, progress=False)
    rows = _manifest_rows(mirror)
    assert [_sha256(p) for p in paths] == [rows[e.path]["sha256"] for e in DATASETS.get("VIFB").files("test", 1)]


def test_wrong_existing_file_is_replaced(mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    paths = download_split("TNO", "test", out, mirror=str(mirror), max_pairs=1, progress=False)
    paths[0].write_bytes(b"not an image")
    download_split("TNO", "test", out, mirror=str(mirror), max_pairs=1, progress=False)
    assert _sha256(paths[0]) == _manifest_rows(mirror)[DATASETS.get("TNO").files("test", 1)[0].path]["sha256"]


def _assert_nothing_in_place(out: Path, entry: FileEntry) -> None:
    assert not (out / entry.modality / Path(entry.path).name).exists()
    assert not (out / MARKER).exists()
    assert not [p for p in out.rglob("*") if ".part" in p.name]


@pytest.mark.parametrize("damage", ["flip", "truncate", "missing"])
def test_bad_mirror_copy_fails_clearly(mirror: Path, tmp_path: Path, damage: str) -> None:
    entries = DATASETS.get("TNO").files("test", max_pairs=2)
    local = _copy_mirror(mirror, entries, tmp_path / "mirror")
    bad = entries[1]
    path = local / bad.path
    data = path.read_bytes()
    if damage == "flip":
        path.write_bytes(data[:1000] + bytes(b ^ 0xFF for b in data[1000:1010]) + data[1010:])
    elif damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        path.unlink()
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as info:
        download_split("TNO", "test", out, mirror=str(local), max_pairs=2, progress=False)
    message = str(info.value)
    assert bad.path in message
    if damage == "missing":
        assert "no such file" in message and "mirror" in message and "upstream" in message
    else:
        actual = hashlib.sha256(path.read_bytes()).hexdigest()
        assert bad.sha256 in message and actual in message
        assert "delete or re-copy" in message and "FUSEBENCH_MIRROR" in message
        assert ("truncated" in message) == (damage == "truncate")
    _assert_nothing_in_place(out, bad)
    assert _files_in(out) == [out / entries[0].modality / Path(entries[0].path).name]


def test_missing_in_mirror_falls_back_to_upstream(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entries = DATASETS.get("MSRS").files("test", max_pairs=1)
    local = _copy_mirror(mirror, entries[:1], tmp_path / "mirror")
    upstream = _fake_upstream(mirror, entries[1:], tmp_path / "upstream")
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", upstream.as_uri())
    paths = download_split("MSRS", "test", tmp_path / "out", mirror=str(local), max_pairs=1, progress=False)
    assert [_sha256(p) for p in paths] == [e.sha256 for e in entries]


def test_corrupt_upstream_file_fails(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = DATASETS.get("VIFB").files("test", max_pairs=1)
    upstream = _fake_upstream(mirror, entries, tmp_path / "upstream")
    victim = upstream / entries[0].source_repo / entries[0].source_commit / entries[0].source_path
    victim.write_bytes(victim.read_bytes()[:-10])
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", upstream.as_uri())
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=rf"{re.escape(entries[0].path)}.*truncated.*{entries[0].sha256}"):
        download_split("VIFB", "test", out, progress=False)
    _assert_nothing_in_place(out, entries[0])


# ------------------------------------------------------------------------------------- re-encoding


def _reencoded_entries() -> list[FileEntry]:
    """MEFB TIFFs (RGB) and MFIFB BMPs of each bundle mode: L, RGB(gray) and RGB."""
    mefb = DATASETS.get("MEFB").files("test", max_pairs=1)  # '507' sorts first: a TIFF pair
    mfifb = [e for e in DATASETS.get("MFIFB").files("test") if e.pair in ("aymaz_01", "aymaz_09", "newspaper")]
    entries = mefb + mfifb
    assert all(e.reencoded for e in entries)
    assert {e.mode for e in mfifb} == {"L", "RGB(gray)", "RGB"}
    assert {Path(e.source_path).suffix for e in entries} == {".tif", ".bmp"}
    return entries


def test_reencoded_upstream_files_reproduce_bundle_sha256(
    mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pillow's PNG (optimize=True) of the decoded TIFF/BMP pixels is byte-identical to the bundle's PNG."""
    entries = _reencoded_entries()
    upstream = _fake_upstream(mirror, entries, tmp_path / "upstream")
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", upstream.as_uri())
    out = tmp_path / "out"
    paths = download_files(entries, out, progress=False)
    rows = _manifest_rows(mirror)
    for entry, path in zip(entries, paths, strict=True):
        assert path.suffix == ".png"
        assert _sha256(path) == rows[entry.path]["sha256"] == entry.sha256
        assert path.read_bytes() == (mirror / entry.path).read_bytes()
    assert not [p for p in out.rglob("*") if ".part" in p.name]
    # and through the public entry point, with no mirror at all
    paths = download_split("MEFB", "test", tmp_path / "mefb", max_pairs=1, progress=False)
    assert [_sha256(p) for p in paths] == [e.sha256 for e in entries[:2]]


def _blob_matched(entries: list[FileEntry], upstream: Path) -> list[FileEntry]:
    """Entries whose git blob id is that of the fake upstream file (as for the real upstream)."""
    result = []
    for entry in entries:
        data = (upstream / entry.source_repo / entry.source_commit / entry.source_path).read_bytes()
        result.append(dataclasses.replace(entry, source_blob_sha1=git_blob_sha1(data)))
    return result


def _other_png_encoder(image: Image.Image, path: Path) -> None:
    Image.frombytes(image.mode, image.size, image.tobytes()).save(path, format="PNG", compress_level=1)


def test_reencoding_with_another_png_encoder(mirror: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Different PNG bytes (another Pillow/zlib) pass only when the upstream git blob id matches."""
    entries = _reencoded_entries()[:2]
    upstream = _fake_upstream(mirror, entries, tmp_path / "upstream")
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", upstream.as_uri())
    monkeypatch.setattr(download, "encode_png", _other_png_encoder)

    out = tmp_path / "strict"
    with pytest.raises(DatasetError, match=rf"{re.escape(entries[0].path)}.*{entries[0].sha256}.*git blob"):
        download_files(entries, out, progress=False)
    _assert_nothing_in_place(out, entries[0])

    out = tmp_path / "blob"
    matched = _blob_matched(entries, upstream)
    paths = download_files(matched, out, progress=False)
    for entry, path in zip(entries, paths, strict=True):
        assert _sha256(path) != entry.sha256
        with Image.open(path) as got, Image.open(mirror / entry.path) as want:
            assert np.array_equal(np.asarray(got), np.asarray(want))
    assert (out / MARKER).read_text().splitlines()[0].startswith(_sha256(paths[0]))

    def no_fetch(*args: object) -> str:
        raise AssertionError("an accepted re-encoded file was fetched again")

    monkeypatch.setattr(download, "fetch_file", no_fetch)
    download_files(matched, out, progress=False)  # idempotent via the recorded sha256


# ---------------------------------------------------------------------------------------------- http


class _Handler(http.server.SimpleHTTPRequestHandler):
    fail_first: set[str] = set()
    truncate: set[str] = set()
    seen: list[str] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        if self.path in self.fail_first:
            self.fail_first.discard(self.path)
            self.send_error(503)
            return
        if self.path in self.truncate:
            data = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture()
def http_mirror(mirror: Path, tmp_path: Path):
    entries = DATASETS.get("TNO").files("test", max_pairs=1)
    root = _copy_mirror(mirror, entries, tmp_path / "served")
    handler = functools.partial(_Handler, directory=str(root))
    _Handler.fail_first, _Handler.truncate, _Handler.seen = set(), set(), []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", entries
    finally:
        server.shutdown()
        server.server_close()


def test_http_mirror_with_retry(http_mirror: tuple[str, list[FileEntry]], tmp_path: Path) -> None:
    url, entries = http_mirror
    _Handler.fail_first = {f"/{entries[0].path}"}
    paths = download_split("TNO", "test", tmp_path / "out", mirror=url + "/", max_pairs=1, progress=False)
    assert [_sha256(p) for p in paths] == [e.sha256 for e in entries]
    assert _Handler.seen.count(f"/{entries[0].path}") == 2


def test_http_truncated_transfer_fails(http_mirror: tuple[str, list[FileEntry]], tmp_path: Path) -> None:
    url, entries = http_mirror
    _Handler.truncate = {f"/{entries[1].path}"}
    out = tmp_path / "out"
    with pytest.raises(DatasetError, match=rf"{re.escape(entries[1].path)}.*after 3 attempts"):
        download_split("TNO", "test", out, mirror=url, max_pairs=1, progress=False)
    assert _Handler.seen.count(f"/{entries[1].path}") == 3
    _assert_nothing_in_place(out, entries[1])


# --------------------------------------------------------------------------------------------- pairs


def test_pairs_reports_unpaired_images(mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    download_split("TNO", "test", out, mirror=str(mirror), max_pairs=2, progress=False)
    (out / "vi" / "02.png").unlink()
    (out / MARKER).unlink()
    with pytest.raises(DatasetError, match=r"1 ir image\(s\) have no vi image: 02"):
        pairs(out, ("ir", "vi"))
    with pytest.raises(DatasetError, match="no mri/ folder"):
        pairs(out, ("mri", "ct"))
    with pytest.raises(DatasetError, match="no such folder"):
        pairs(tmp_path / "nothing", ("ir", "vi"))


def test_pairs_follow_the_completion_marker(mirror: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    download_split("TNO", "test", out, mirror=str(mirror), max_pairs=3, progress=False)
    download_split("TNO", "test", out, mirror=str(mirror), max_pairs=2, progress=False)
    assert [p for p, _, _ in pairs(out, ("ir", "vi"))] == ["01", "02"]
    (out / "ir" / "01.png").unlink()
    with pytest.raises(DatasetError, match="missing"):
        pairs(out, ("ir", "vi"))


# ----------------------------------------------------------------------------------------------- cli


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("download")(download_command)
    app.command("datasets")(list_command)
    return app


def test_download_command(mirror: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "out"
    args = ["download", "--dataset", "TNO", "--out", str(out), "--max-pairs", "1", "--no-progress"]
    result = runner.invoke(_app(), args, env={"FUSEBENCH_MIRROR": str(mirror)})
    assert result.exit_code == 0, result.output
    assert "1 pairs (2 files) verified" in result.output
    assert sorted(p.name for p in _files_in(out)) == ["01.png", "01.png", MARKER]

    result = runner.invoke(_app(), ["download", "--dataset", "TNO42", "--out", str(out)])
    assert result.exit_code == 1 and "known:" in result.output
    result = runner.invoke(_app(), ["download", "--dataset", "TNO", "--split", "train", "--out", str(out)])
    assert result.exit_code == 1 and "no 'train' split" in result.output


def test_files_csv_pairs_are_strings() -> None:
    """'01' stays '01' (csv module, not a numeric parser)."""
    assert DATASETS.get("TNO").pair_names("test")[:2] == ["01", "02"]
