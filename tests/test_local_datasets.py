"""Datasets from outside the package: config-defined folders, archives (safe extraction), pinned archives;
the schemas of registry.yaml / weights.yaml; files.csv merging."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner
from workflow_helpers import small_config, write_config

from fusebench.cli import app
from fusebench.datasets import DATASETS, DatasetError, describe, download_split, load_registry, local_spec, pairs
from fusebench.datasets.archive import safe_extract
from fusebench.fetch import git_blob_sha1
from fusebench.registry import Registry
from fusebench.weights import parse_registry

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.delenv("FUSEBENCH_MIRROR", raising=False)
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", tmp_path_factory.mktemp("no-upstream").as_uri())


def _pairs_folder(shared: Path, root: Path, names: tuple[str, ...] = ("01", "02")) -> Path:
    """Real TNO pairs copied into ``root/{infrared,visible}``, as a user's own dataset would be laid out."""
    for modality, folder in (("ir", "infrared"), ("vi", "visible")):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            shutil.copy(shared / "datasets" / "TNO" / "test" / modality / f"{name}.png", root / folder)
    return root


def _definition(root: Path, **extra: object) -> dict[str, object]:
    return {
        "task": "ivif",
        "modalities": ["ir", "vi"],
        "folders": {"ir": str(root / "infrared"), "vi": str(root / "visible")},
        **extra,
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----------------------------------------------------------------------------------- config-defined


def test_config_dataset_is_copied_and_verified(shared: Path, tmp_path: Path) -> None:
    root = _pairs_folder(shared, tmp_path / "mine")
    spec = local_spec("Mine", _definition(root))
    out = tmp_path / "out"
    paths = download_split(spec, "test", out, progress=False)
    assert sorted(p.relative_to(out).as_posix() for p in paths) == ["ir/01.png", "ir/02.png", "vi/01.png", "vi/02.png"]
    for path in paths:
        folder = "infrared" if path.parent.name == "ir" else "visible"
        assert path.read_bytes() == (root / folder / path.name).read_bytes()
    assert [p for p, _, _ in pairs(out, ("ir", "vi"))] == ["01", "02"]
    described = describe("Mine", out)  # what fuse/patches use for a dataset outside the registry
    assert (described.task, described.modalities) == ("ivif", ("ir", "vi"))
    assert download_split(spec, "test", out, progress=False, max_pairs=1) == [out / "ir/01.png", out / "vi/01.png"]


def test_config_dataset_problems_are_named(shared: Path, tmp_path: Path) -> None:
    root = _pairs_folder(shared, tmp_path / "mine", ("01", "02", "03"))
    spec = local_spec("Mine", _definition(root))
    (root / "visible" / "03.png").unlink()
    with pytest.raises(DatasetError, match=r"1 ir image\(s\) have no vi image with the same name: 03\.png"):
        download_split(spec, "test", tmp_path / "a", progress=False)
    (root / "infrared" / "03.png").unlink()

    mri = next((shared / "datasets" / "Harvard-MRI-CT" / "test" / "mri").iterdir())
    shutil.copy(mri, root / "visible" / "02.png")  # 256x256 against a 768x576 infrared image
    with pytest.raises(DatasetError, match=r"pair 02 has images of different sizes: .*infrared/02.png 768x576"):
        download_split(spec, "test", tmp_path / "b", progress=False)

    good = shared / "datasets" / "TNO" / "test" / "vi" / "02.png"
    (root / "visible" / "02.png").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(DatasetError, match=r"pair 02: .*visible/02.png is not a readable image"):
        download_split(spec, "test", tmp_path / "c", progress=False)
    assert not (tmp_path / "c" / "files.sha256").exists()

    with pytest.raises(DatasetError, match=r"folders\.ir and splits\.test"):
        download_split(local_spec("Mine", _definition(root, splits={"test": "test"})), "test", tmp_path / "d")


def test_checksums_file_and_mirror_relative_folders(shared: Path, tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    root = _pairs_folder(shared, mirror / "mine")
    sums = "".join(f"{_sha256(path)}  {path.relative_to(root).as_posix()}\n" for path in sorted(root.rglob("*.png")))
    (root / "SHA256SUMS").write_text(sums)
    definition = {
        "task": "ivif",
        "modalities": ["ir", "vi"],
        "folders": {"ir": "mirror:mine/infrared", "vi": "mirror:mine/visible"},
        "checksums": "mirror:mine/SHA256SUMS",
    }
    spec = local_spec("Mine", definition)
    assert len(download_split(spec, "test", tmp_path / "a", mirror=str(mirror), progress=False)) == 4
    with pytest.raises(DatasetError, match="no mirror is set"):
        download_split(spec, "test", tmp_path / "b", progress=False)

    victim = root / "visible" / "02.png"
    data = bytearray(victim.read_bytes())
    data[500] ^= 0xFF
    victim.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"visible/02.png does not match its checksum"):
        download_split(spec, "test", tmp_path / "c", mirror=str(mirror), progress=False)
    (root / "SHA256SUMS").write_text(sums.replace("visible/02.png", "visible/other.png"))
    with pytest.raises(DatasetError, match=r"visible/02.png is not listed in its checksums file"):
        download_split(spec, "test", tmp_path / "d", mirror=str(mirror), progress=False)


def test_definition_is_validated_by_the_schema(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"local_datasets\.Mine: 'folders' is a required property"):
        local_spec("Mine", {"task": "ivif", "modalities": ["ir", "vi"]})
    with pytest.raises(DatasetError, match=r"local_datasets\.Mine\.task: 'fuse' is not one of"):
        local_spec("Mine", {**_definition(tmp_path), "task": "fuse"})
    with pytest.raises(DatasetError, match=r"must name exactly the modalities \['ir', 'vi'\]"):
        local_spec("Mine", {**_definition(tmp_path), "folders": {"ir": "a", "nir": "b"}})


def test_datasets_and_download_commands_with_config(shared: Path, tmp_path: Path) -> None:
    root = _pairs_folder(shared, tmp_path / "mine")
    config = write_config(tmp_path / "config.yaml", {"local_datasets": {"Mine": _definition(root)}})
    runner = CliRunner()
    listed = runner.invoke(app, ["datasets", "--config", str(config)])
    assert listed.exit_code == 0, listed.output
    assert "Mine" in listed.output and "TNO" in listed.output
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["download", "--dataset", "Mine", "--config", str(config), "--out", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "2 pairs (4 files) verified" in result.output
    clash = write_config(tmp_path / "clash.yaml", {"local_datasets": {"TNO": _definition(root)}})
    result = runner.invoke(app, ["datasets", "--config", str(clash)])
    assert result.exit_code == 1 and "name of a registered dataset" in result.output


def _snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)


@pytest.mark.slow  # a workflow run of 20-60 s: the default suite stays under 15 minutes
def test_config_dataset_runs_through_the_workflow(shared: Path, tmp_path: Path) -> None:
    """Two real pairs in a temporary folder, one classical method: download (a verified copy), fuse,
    metrics and report, exactly as for a registered dataset; DVC's data stage target resolves too."""
    root = _pairs_folder(shared, tmp_path / "my pairs")  # a space in the path: quoting
    config = small_config(
        shared,
        datasets=["MyPairs"],
        local_datasets={"MyPairs": _definition(root, description="two TNO pairs, as a user's folder")},
        methods={"average": {}},
    )
    configfile = write_config(tmp_path / "config.yaml", config)
    result = _snakemake("--configfile", str(configfile), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-5000:]
    results = tmp_path / "results"
    assert json.loads((results / "data" / "MyPairs" / "test" / "dataset.json").read_text())["task"] == "ivif"
    table = pd.read_csv(results / "metrics" / "MyPairs" / "average.csv")
    assert len(table) == 2 and not table[config["metrics"]["names"]].isna().any().any()
    html = (results / "report" / "index.html").read_text()
    assert "MyPairs" in html and "average" in html
    again = _snakemake("-n", "--configfile", str(configfile), cwd=tmp_path)
    assert "Nothing to be done" in again.stdout + again.stderr
    changed = root / "visible" / "02.png"
    with Image.open(changed) as image:  # the user edits an image
        edited = image.copy()
    edited.putpixel((0, 0), 0 if edited.getpixel((0, 0)) != 0 else 255)
    edited.save(changed)
    os.utime(changed, (changed.stat().st_atime, changed.stat().st_mtime + 10))
    again = _snakemake("data", "-n", "--configfile", str(configfile), cwd=tmp_path)  # DVC's data stage target
    assert again.returncode == 0, again.stderr[-3000:]
    assert "output: results/data/MyPairs/test" in again.stdout  # copied again


# ------------------------------------------------------------------------------------------ archives


def _zip(path: Path, members: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = 0o120777 << 16  # a symlink
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tf.addfile(info)
    return path


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
@pytest.mark.parametrize("bad", ["../evil.png", "/etc/evil.png", "a/../../evil.png", "..\\evil.png"])
def test_names_outside_the_target_are_refused(tmp_path: Path, make: object, bad: str) -> None:
    archive = make(tmp_path / ("a.zip" if make is _zip else "a.tar.gz"), {"ok/1.png": b"x", bad: b"evil"})  # type: ignore[operator]
    with pytest.raises(DatasetError, match="outside the target folder; refused"):
        safe_extract(archive, tmp_path / "out")
    assert not list(tmp_path.rglob("evil.png"))
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]  # checked before anything is written


def test_links_out_of_the_target_are_refused(tmp_path: Path) -> None:
    cases = {
        "zip-symlink": _zip(tmp_path / "s.zip", {"d/1.png": b"x"}, {"d/2.png": "../../outside.png"}),
        "tar-symlink": _tar(tmp_path / "s.tar.gz", {"d/1.png": b"x"}, {"d/2.png": (tarfile.SYMTYPE, "/etc/passwd")}),
        "tar-hardlink": _tar(tmp_path / "h.tar.gz", {"d/1.png": b"x"}, {"d/2.png": (tarfile.LNKTYPE, "../x.png")}),
    }
    for name, archive in cases.items():
        with pytest.raises(DatasetError, match="points outside the target folder"):
            safe_extract(archive, tmp_path / name)
    device = _tar(tmp_path / "dev.tar.gz", {}, {"d/null": (tarfile.CHRTYPE, "")})
    with pytest.raises(DatasetError, match="device file or fifo"):
        safe_extract(device, tmp_path / "dev")


def test_links_inside_the_target_become_copies(tmp_path: Path) -> None:
    archive = _tar(
        tmp_path / "in.tar.gz",
        {"d/a/1.png": b"one"},
        {"d/b/1.png": (tarfile.SYMTYPE, "../a/1.png"), "d/c/1.png": (tarfile.LNKTYPE, "d/a/1.png")},
    )
    out = tmp_path / "out"
    safe_extract(archive, out)
    for name in ("d/b/1.png", "d/c/1.png"):
        assert (out / name).read_bytes() == b"one" and not (out / name).is_symlink()


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_size_and_member_limits(tmp_path: Path, make: object) -> None:
    members = {f"d/{i}.png": bytes(1000) for i in range(5)}
    archive = make(tmp_path / ("a.zip" if make is _zip else "a.tar.gz"), members)  # type: ignore[operator]
    with pytest.raises(DatasetError, match="more than the limit of 4"):
        safe_extract(archive, tmp_path / "a", max_members=4)
    with pytest.raises(DatasetError, match="unpacks to more than 4500 bytes"):
        safe_extract(archive, tmp_path / "b", max_bytes=4500)
    assert len(safe_extract(archive, tmp_path / "c", select=lambda n: n.startswith("d/1"))) == 1


@pytest.mark.parametrize("make", [_zip, _tar], ids=["zip", "tar"])
def test_damaged_archive_is_reported(tmp_path: Path, make: object) -> None:
    noise = b"".join(hashlib.sha256(b"%d" % i).digest() for i in range(3000))  # incompressible
    archive = make(tmp_path / ("a.zip" if make is _zip else "a.tar.gz"), {"d/1.png": noise})  # type: ignore[operator]
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])  # an interrupted download
    with pytest.raises(DatasetError, match=r"cannot be unpacked|not a zip, tar or rar archive"):
        safe_extract(archive, tmp_path / "out")
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def _llvip_like(shared: Path, path: Path) -> Path:
    """A small archive laid out like LLVIP.zip (LLVIP/{infrared,visible}/{train,test}), real TNO pairs."""
    members = {}
    for split, names in (("test", ("01", "02")), ("train", ("03",))):
        for modality, folder in (("ir", "infrared"), ("vi", "visible")):
            for name in names:
                source = shared / "datasets" / "TNO" / "test" / modality / f"{name}.png"
                members[f"LLVIP/{folder}/{split}/{name}.png"] = source.read_bytes()
    members["LLVIP/Annotations/01.xml"] = b"<annotation/>"
    return _zip(path, members)


def test_archive_dataset_from_the_users_download(shared: Path, tmp_path: Path) -> None:
    archive = _llvip_like(shared, tmp_path / "LLVIP.zip")
    out = tmp_path / "out"
    paths = download_split("LLVIP", "test", out, archive=archive, progress=False)
    assert sorted(p.relative_to(out).as_posix() for p in paths) == ["ir/01.png", "ir/02.png", "vi/01.png", "vi/02.png"]
    assert not [p for p in out.iterdir() if p.name.startswith(".extract")]  # the extraction folder is gone
    assert [p for p, _, _ in pairs(out, ("ir", "vi"))] == ["01", "02"]
    assert len(download_split("LLVIP", "train", tmp_path / "train", archive=archive, progress=False)) == 2
    with pytest.raises(DatasetError, match="TNO is not distributed as an archive"):
        download_split("TNO", "test", tmp_path / "tno", archive=archive, progress=False)
    with pytest.raises(DatasetError, match=r"distributed as LLVIP.zip .*archives: \{LLVIP: /path/to/LLVIP.zip\}"):
        download_split("LLVIP", "test", tmp_path / "none", progress=False)

    # a published checksum is checked before anything is extracted
    registry = load_registry(
        (REPO / "src/fusebench/datasets/registry.yaml")
        .read_text()
        .replace("url: https://bupt-ai-cz.github.io/LLVIP/", f"url: x\n      sha256: {'a' * 64}")
    )
    with pytest.raises(DatasetError, match=r"is not the published LLVIP.zip: sha256 .*expected aaaa"):
        download_split(registry.get("LLVIP"), "test", tmp_path / "published", archive=archive, progress=False)


def test_pinned_archive_is_fetched_and_verified_by_blob_id(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An archive pinned in a git repository (as MFI-WHU.rar is), here a zip served by a fake upstream."""
    archive = _llvip_like(shared, tmp_path / "Pinned.zip")
    data = archive.read_bytes()
    commit = "1" * 40
    text = f"""datasets:
  - name: Pinned
    task: ivif
    modalities: [ir, vi]
    archive:
      file: Pinned.zip
      upstream: {{repo: owner/pinned, commit: "{commit}", path: data/Pinned.zip, git_blob_sha1: {git_blob_sha1(data)}}}
    folders: {{ir: LLVIP/infrared, vi: LLVIP/visible}}
    splits: {{test: test}}
"""
    spec = load_registry(text).get("Pinned")
    upstream = tmp_path / "upstream"
    with pytest.raises(DatasetError, match=r"cannot fetch Pinned.zip .*git blob .*upstream file://.*no such file"):
        download_split(spec, "test", tmp_path / "a", progress=False)
    (upstream / "owner/pinned" / commit / "data").mkdir(parents=True)
    (upstream / "owner/pinned" / commit / "data/Pinned.zip").write_bytes(data[:-100])  # truncated upstream
    monkeypatch.setenv("FUSEBENCH_UPSTREAM", upstream.as_uri())
    with pytest.raises(DatasetError, match=r"git blob id .*expected"):
        download_split(spec, "test", tmp_path / "b", progress=False)
    mirror = tmp_path / "mirror"
    (mirror / "archives").mkdir(parents=True)
    shutil.copy(archive, mirror / "archives" / "Pinned.zip")  # the mirror is tried first
    assert len(download_split(spec, "test", tmp_path / "c", mirror=str(mirror), progress=False)) == 4


def test_split_placeholder_layout_like_the_msrs_repository_zip(shared: Path, tmp_path: Path) -> None:
    """MSRS-main.zip holds {train,test}/{ir,vi}: the registry's MSRS-full entry reads it via '{split}'."""
    members = {}
    for split in ("train", "test"):
        for modality in ("ir", "vi"):
            source = shared / "datasets" / "MSRS" / split / modality
            for path in sorted(source.iterdir())[:2]:
                members[f"MSRS-main/{split}/{modality}/{path.name}"] = path.read_bytes()
    members["MSRS-main/README.md"] = b"readme"
    archive = _zip(tmp_path / "MSRS-main.zip", members)
    for split in ("train", "test"):
        out = tmp_path / split
        download_split("MSRS-full", split, out, archive=archive, progress=False)
        assert len(pairs(out, ("ir", "vi"))) == 2
    missing = CliRunner().invoke(
        app, ["download", "--dataset", "MSRS-full", "--archive", str(tmp_path / "none.zip"), "--out", str(tmp_path)]
    )
    assert missing.exit_code == 1
    assert "none.zip does not exist" in missing.output and "Linfeng-Tang/MSRS/archive" in missing.output


def test_full_config_overlay_resolves(tmp_path: Path) -> None:
    """config/full.yaml on top of config/config.yaml: the full-scale sets are planned like the others."""
    configs = [str(REPO / "config" / "config.yaml"), str(REPO / "config" / "full.yaml")]
    result = _snakemake("-n", "-p", "--configfile", *configs, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("LLVIP", "M3FD", "MSRS-full", "MFI-WHU"):
        assert f"results/data/{name}/test" in result.stdout
    assert "--archive downloads/LLVIP.zip" in result.stdout


@pytest.mark.skipif(importlib.util.find_spec("rarfile") is not None, reason="rarfile is installed")
def test_rar_archive_without_rarfile_says_what_to_install(tmp_path: Path) -> None:
    fake = tmp_path / "MFI-WHU.rar"
    fake.write_bytes(b"Rar!\x1a\x07\x00")
    with pytest.raises(DatasetError, match="install the Python package `rarfile`"):
        safe_extract(fake, tmp_path / "out")


# ------------------------------------------------------------------------------------ registry, schemas


def test_full_scale_entries_are_registered() -> None:
    llvip, m3fd, whu = DATASETS.get("LLVIP"), DATASETS.get("M3FD"), DATASETS.get("MFI-WHU")
    assert (llvip.kind, set(llvip.splits)) == ("archive", {"train", "test"})
    assert m3fd.folders == {"ir": "M3FD_Fusion/Ir", "vi": "M3FD_Fusion/Vis"}
    assert whu.archive is not None and whu.archive.upstream is not None
    assert whu.archive.upstream["git_blob_sha1"] == "0a2068f533492a8ee0831e24b9a0e81aa91c3df5"
    assert len(whu.archive.upstream["commit"]) == 40
    assert "RoadScene" in DATASETS and len(DATASETS.get("RoadScene").pair_names("test")) == 221  # the full set


def test_datasets_command_lists_an_entry_without_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a registry entry before its files are in files.csv used to crash `fusebench datasets`."""
    text = (REPO / "src/fusebench/datasets/registry.yaml").read_text() + (
        "  - {name: NewSet, task: ivif, modalities: [ir, vi], folder: NewSet, splits: {test: {split: test}}}\n"
    )
    import fusebench.datasets as datasets

    monkeypatch.setattr(datasets, "DATASETS", load_registry(text))
    result = CliRunner().invoke(app, ["datasets"])
    assert result.exit_code == 0, result.output
    assert "NewSet" in result.output and "not in files.csv" in result.output


def test_bad_registry_entry_fails_naming_it() -> None:
    text = (
        (REPO / "src/fusebench/datasets/registry.yaml")
        .read_text()
        .replace("folders: {ir: M3FD_Fusion/Ir, vi: M3FD_Fusion/Vis}", "folders: {ir: ../Ir, vi: M3FD_Fusion/Vis}")
    )
    with pytest.raises(DatasetError, match=r"datasets\[\d+\] \(M3FD\)\.folders\.ir: '\.\./Ir' does not match"):
        load_registry(text)


def test_bad_weights_entry_fails_naming_it() -> None:
    data = yaml.safe_load((REPO / "src/fusebench/weights.yaml").read_text())
    assert parse_registry(data)
    data["weights"]["cddfuse-ivf"]["git_blob_sha1"] = "not-a-blob-id"
    with pytest.raises(ValueError, match=r"weights\.cddfuse-ivf\.git_blob_sha1: 'not-a-blob-id' does not match"):
        parse_registry(data, "weights.yaml")
    del data["weights"]["cddfuse-ivf"]["git_blob_sha1"]
    data["weights"]["cddfuse-ivf"].pop("sha256", None)
    with pytest.raises(ValueError, match=r"weights\.cddfuse-ivf: needs one of: git_blob_sha1, sha256"):
        parse_registry(data, "weights.yaml")


def test_with_local_leaves_the_registry_alone(tmp_path: Path) -> None:
    from fusebench.datasets import with_local

    combined = with_local(DATASETS, {"Mine": _definition(tmp_path)})
    assert isinstance(combined, Registry) and "Mine" in combined and "Mine" not in DATASETS


# ------------------------------------------------------------------------------------------ files.csv


def _update_script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("update_dataset_files", REPO / "scripts/update_dataset_files.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_update_dataset_files_merges_a_new_manifest(mirror: Path, tmp_path: Path) -> None:
    """A manifest of one new dataset used to replace files.csv, losing the 2,922 bundle rows."""
    script = _update_script()
    out = tmp_path / "files.csv"
    shutil.copy(REPO / "src/fusebench/datasets/files.csv", out)
    before = out.read_text().splitlines()
    rows = list(_csv_rows(mirror / "manifest.csv"))
    new = [{**row, "dataset": "NewSet", "path": row["path"].replace("TNO/", "NewSet/", 1)} for row in rows[:4]]
    manifest = tmp_path / "manifest.csv"
    _write_csv(manifest, new)
    assert script.main([str(manifest), "--out", str(out)]) == 0
    after = out.read_text().splitlines()
    assert len(after) == len(before) + 4 and set(before) <= set(after)

    _write_csv(manifest, new[:2])  # the same dataset/split with fewer files: refused, nothing written
    with pytest.raises(SystemExit, match="lacks 2 file"):
        script.main([str(manifest), "--out", str(out)])
    assert out.read_text().splitlines() == after
    assert script.main([str(manifest), "--out", str(out), "--drop-missing"]) == 0
    assert len(out.read_text().splitlines()) == len(before) + 2


def _csv_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with open(path, newline="") as fh:
        return [row for row in csv.DictReader(fh) if row["dataset"] == "TNO"]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
