"""Pinned upstream weights: git blob ids, the registry, fetching from a mirror or a fake upstream."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fusebench.weights import (
    MIRROR_ENV,
    UPSTREAM_ENV,
    WeightsEntry,
    WeightsError,
    fetch_weights,
    file_digests,
    git_blob_sha1,
    read_sidecar,
    registry,
    sidecar,
    verify_file,
    weights_command,
)


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No test may reach the network: upstream is an empty file:// tree unless a test fills it."""
    upstream = tmp_path / "upstream"
    upstream.mkdir()
    monkeypatch.setenv(UPSTREAM_ENV, upstream.as_uri())
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return upstream


def _publish(upstream: Path, entry: WeightsEntry, data: bytes) -> Path:
    """Put ``data`` where the fake upstream serves ``entry``: <owner>/<repo>/<commit>/<path>."""
    path = upstream / entry.repo / entry.commit / entry.path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _entry(data: bytes, **overrides: object) -> WeightsEntry:
    fields: dict[str, object] = {
        "name": "fake-model",
        "repo": "someone/FakeFusion",
        "commit": "0123456789abcdef0123456789abcdef01234567",
        "path": "models/Fake_IVF.pth",
        "git_blob_sha1": git_blob_sha1(data),
        "folder": "fakefusion",
    }
    fields.update(overrides)
    return WeightsEntry(**fields)  # type: ignore[arg-type]


def test_blob_id_equals_git_hash_object(shared: Path, tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    real = shared / "weights" / "official" / "densefuse-pytorch" / "densefuse_gray.model"
    small = tmp_path / "small.bin"
    small.write_bytes(b"hello\n")
    for path in (real, small):
        expected = subprocess.run(
            ["git", "hash-object", str(path)], check=True, capture_output=True, text=True
        ).stdout.strip()
        assert git_blob_sha1(path) == expected
        assert git_blob_sha1(path.read_bytes()) == expected
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"  # well-known value


def test_registry_pins_what_the_bundle_documents(shared: Path) -> None:
    entries = registry()
    required = {
        "cddfuse-ivf": "d2794226bd48961132111bceff89ce3c955b3985",
        "cddfuse-mif": "072e39abce5979c0568ee510713c123c28160f12",
        "crossfuse-ae-ir": "8c1cec7bc8ba4f484bd4b40b4e2134036b5228f9",
        "crossfuse-ae-vi": "5564ae20d87026e41e1419f88722b4b3c11555ab",
        "crossfuse-fusion": "6e3afe223562a48e7f467f03081b2772fccbda63",
        "fusiongan": "dc79b9075bafede7fe0a169a8e32bbfc499e2f83",
        "mfif-gan": "a4120a43d80c99dc670e98c3c04d45cf3702a41e",
        "swinfusion-ivif": "b60cafeb07fea9387d6b1acd5d59adec9829f6ae",
        "swinfusion-mri-ct": "8a4fc9f738abf6a2e3a40bc5bebfa1d0eb6b2e85",
        "swinfusion-mri-pet": "7c59b6d207388605992c6d9a0d6b058cb6be92d5",
        "swinfusion-mef": "4722da384255e85c438ef2382650e49f044134ff",
    }
    for name, blob in required.items():
        assert entries[name].git_blob_sha1 == blob, name
    ivf = entries["cddfuse-ivf"]
    assert ivf.url() == (
        "https://raw.githubusercontent.com/Zhaozixiang1228/MMIF-CDDFuse/"
        "fd8da1f39d8d403b7343e577bd5a30cba38c7b7b/models/CDDFuse_IVF.pth"
    )
    assert len({e.local_path for e in entries.values()}) == len(entries)  # no two share a place

    # Every bundle file's registry entry carries the bundle's sha256 and the file's real blob id and size.
    official = shared / "weights" / "official"
    sums = {}
    for line in (official / "SHA256SUMS").read_text().splitlines():
        digest, rel = line.split(maxsplit=1)
        sums[rel.removeprefix("./")] = digest
    bundled = [e for e in entries.values() if e.local_path in sums]
    assert {e.name for e in bundled} >= {
        "densefuse-gray", "densefuse-rgb", "ifcnn-max", "ifcnn-mean", "ifcnn-sum", "refusion-ivif",
        "refusion-mif", "refusion-mfif", "refusion-meif", "tardal-v0", "tardal-v0-plus", "tardal-v0-plusplus",
    }  # fmt: skip
    for entry in bundled:
        digests = file_digests(official / entry.local_path)
        assert entry.sha256 == sums[entry.local_path] == digests["sha256"], entry.name
        assert entry.git_blob_sha1 == digests["git_blob_sha1"] and entry.size == digests["size"], entry.name


def test_entries_are_validated() -> None:
    with pytest.raises(ValueError, match="needs git_blob_sha1 or sha256"):
        WeightsEntry(name="x", repo="a/b", commit="0" * 40, path="m.pth")
    with pytest.raises(ValueError, match="commit"):
        WeightsEntry(name="x", repo="a/b", commit="main", path="m.pth", sha256="0" * 64)
    with pytest.raises(ValueError, match="path"):
        WeightsEntry(name="x", repo="a/b", commit="0" * 40, path="../m.pth", sha256="0" * 64)
    with pytest.raises(WeightsError, match="unknown weights 'cddfuse'; known: .*cddfuse-ivf"):
        fetch_weights("cddfuse", "unused")


def test_fetch_from_upstream_verifies_and_records_sha256(offline: Path, tmp_path: Path) -> None:
    data = b"\x80\x02fake CDDFuse weights" * 1000
    entry = _entry(data)
    served = _publish(offline, entry, data)
    dest = tmp_path / "weights"

    path = fetch_weights(entry, dest)
    assert path == dest / "fakefusion" / "Fake_IVF.pth"
    assert path.read_bytes() == data
    sha = hashlib.sha256(data).hexdigest()
    assert read_sidecar(path) == sha
    assert sidecar(path).read_text() == f"{sha}  Fake_IVF.pth\n"
    assert sorted(p.name for p in path.parent.iterdir()) == ["Fake_IVF.pth", "Fake_IVF.pth.sha256"]

    # present and valid: kept, upstream not asked again
    served.unlink()
    assert fetch_weights(entry, dest) == path

    # a later change of the file is caught by the sidecar (same size, blob id not consulted here)
    path.write_bytes(data[:-1] + b"!")
    with pytest.raises(WeightsError, match="sidecar"):
        verify_file(path)
    with pytest.raises(WeightsError, match=f"expected {entry.git_blob_sha1}"):
        verify_file(path, entry)
    _publish(offline, entry, data)  # ... and a fetch replaces it with the verified file
    assert fetch_weights(entry, dest).read_bytes() == data


def test_a_corrupted_download_is_rejected_and_leaves_nothing(offline: Path, tmp_path: Path) -> None:
    good = b"the real weights" * 64
    entry = _entry(good, sha256=hashlib.sha256(good).hexdigest())
    corrupted = bytearray(good)
    corrupted[10] ^= 0xFF
    _publish(offline, entry, bytes(corrupted))
    dest = tmp_path / "weights"
    with pytest.raises(WeightsError) as info:
        fetch_weights(entry, dest)
    message = str(info.value)
    assert "Fake_IVF.pth" in message and entry.git_blob_sha1 in message  # the file and the expected id
    assert git_blob_sha1(bytes(corrupted)) in message  # the actual id
    assert "What to do" in message
    assert not any(p.is_file() for p in dest.rglob("*"))  # no file, no temporary, no sidecar

    # a git-lfs pointer instead of the file is named as such
    _publish(offline, entry, b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n")
    with pytest.raises(WeightsError, match="git-lfs pointer"):
        fetch_weights(entry, dest)
    # and nothing upstream at all
    with pytest.raises(WeightsError, match="upstream"):
        fetch_weights(_entry(good, path="models/missing.pth"), dest)


def test_mirror_is_tried_first_and_a_bad_mirror_falls_back(offline: Path, tmp_path: Path) -> None:
    data = b"mirrored" * 100
    entry = _entry(data)
    mirror = tmp_path / "mirror"
    (mirror / "fakefusion").mkdir(parents=True)
    (mirror / "fakefusion" / "Fake_IVF.pth").write_bytes(data)
    assert fetch_weights(entry, tmp_path / "a", mirror=str(mirror)).read_bytes() == data  # nothing upstream

    (mirror / "fakefusion" / "Fake_IVF.pth").write_bytes(b"stale copy")
    _publish(offline, entry, data)
    assert fetch_weights(entry, tmp_path / "b", mirror=str(mirror)).read_bytes() == data


def test_mirror_hit_for_densefuse_gray_from_the_bundle(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    official = shared / "weights" / "official"
    monkeypatch.setenv(MIRROR_ENV, str(official))  # the environment variable, as a site would set it
    path = fetch_weights("densefuse-gray", tmp_path / "weights")
    assert path == tmp_path / "weights" / "densefuse-pytorch" / "densefuse_gray.model"
    expected = "b34cf3650f04161b31ac2467decfeedf7eba39165b7618f846e0f298ecd2ac65"
    assert file_digests(path)["sha256"] == expected == read_sidecar(path)


def test_weights_command(shared: Path, tmp_path: Path) -> None:
    app = typer.Typer()
    app.command()(weights_command)
    runner = CliRunner()
    official = str(shared / "weights" / "official")
    result = runner.invoke(app, ["ifcnn-max", "--out", str(tmp_path), "--mirror", official])
    assert result.exit_code == 0, result.output
    assert Path(result.output.strip()) == tmp_path / "ifcnn" / "IFCNN-MAX.pth"
    listing = runner.invoke(app, ["list"])
    assert listing.exit_code == 0 and "cddfuse-ivf" in listing.output
    failed = runner.invoke(app, ["cddfuse-ivf", "--out", str(tmp_path)])  # the fake upstream is empty
    assert failed.exit_code == 1
    assert "d2794226bd48961132111bceff89ce3c955b3985" in failed.output
    assert not (tmp_path / "cddfuse" / "CDDFuse_IVF.pth").exists()
