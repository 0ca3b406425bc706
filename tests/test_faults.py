"""Fault injection with real files and real processes: replaced weights, truncated and pickled files, a full disk,
hostile config values, killed runs. Each test names the failure it guards against (issues 14 and 11)."""

from __future__ import annotations

import errno
import html
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from training_helpers import real_patches
from workflow_helpers import REPO, small_config, write_config

from fusebench import atomic
from fusebench.atomic import DiskFullError, atomic_path
from fusebench.methods import create
from fusebench.staleness import release_stale_locks
from fusebench.tfcheckpoint import CheckpointError, TFCheckpoint
from fusebench.torchfile import save_torch
from fusebench.weights import WeightsError

DENSEFUSE = Path("densefuse-pytorch") / "densefuse_gray.model"
MFFGAN = Path("mffgan-tf") / "Lytro_model"


def cli(*args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``fusebench ARGS`` in a fresh process (this checkout's package)."""
    cmd = [sys.executable, "-m", "fusebench.cli", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def snakemake(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Any]:
    """``small_disk(kib)``: a new folder on a tmpfs of that size, where writing more fails with ENOSPC as on a full
    disk. Needs root (mount); elsewhere test_disk_full_in_the_atomic_writer covers the same path with a patch."""
    mounts: list[Path] = []

    def make(kib: int) -> Path:
        folder = tmp_path / f"disk{len(mounts)}"
        folder.mkdir()
        if (
            os.geteuid() != 0
            or subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs", str(folder)], capture_output=True
            ).returncode
        ):
            pytest.skip("mounting a small tmpfs needs root")
        mounts.append(folder)
        return folder

    yield make
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".part" in p.name]


# ------------------------------------------------------------------------- 14.2 weights verified at every load
def other_state_dict(shared: Path) -> dict[str, torch.Tensor]:
    """A valid DenseFuse state dict that is not the official one (one weight changed)."""
    state = torch.load(shared / "weights" / "official" / DENSEFUSE, weights_only=True)
    key = next(iter(state))
    state[key] = state[key] + 0.01
    return state


def test_replaced_official_weights_are_refused_at_every_load(shared: Path, tmp_path: Path) -> None:
    """A fetched file replaced later by another valid state dict (sidecar left, then without sidecar) is refused by
    `fusebench fuse`, as the workflow calls it, instead of being loaded silently."""
    fetched = cli(
        "fetch-weights", "densefuse-gray", "--out", tmp_path / "weights", "--mirror", shared / "weights" / "official"
    )
    assert fetched.returncode == 0, fetched.stderr
    path = tmp_path / "weights" / DENSEFUSE
    create("densefuse").load_official(path)  # the fetched file itself loads

    torch.save(other_state_dict(shared), path)
    assert path.with_name(path.name + ".sha256").is_file()
    fuse = [
        "fuse",
        "--method",
        "densefuse",
        "--dataset",
        "TNO",
        "--sources",
        tmp_path / "none",
        "--out",
        tmp_path / "out",
    ]
    result = cli(*fuse, "--official", path)
    assert result.returncode != 0
    assert str(path) in result.stderr and "failed verification" in result.stderr and "sidecar" in result.stderr
    assert not (tmp_path / "out").exists()

    path.with_name(path.name + ".sha256").unlink()  # without its sidecar: the registry's git blob id decides
    result = cli(*fuse, "--official", path)
    assert result.returncode != 0 and "failed verification" in result.stderr and "git blob id" in result.stderr


def test_replaced_tf_checkpoint_shard_is_refused(shared: Path, tmp_path: Path) -> None:
    """A TF1 data shard at its registered place with other bytes of the same size is refused before it is read."""
    folder = tmp_path / MFFGAN
    shutil.copytree(shared / "weights" / "official" / MFFGAN, folder)
    create("mffgan").load_official(folder / "CGAN.model-19.index")  # type: ignore[attr-defined]
    data = folder / "CGAN.model-19.data-00000-of-00001"
    raw = bytearray(data.read_bytes())
    raw[100] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match=r"CGAN.model-19.data-00000-of-00001 .*failed verification"):
        create("mffgan").load_official(folder / "CGAN.model-19.index")  # type: ignore[attr-defined]


# ------------------------------------------------------------------ 14.4 / 11.15 no config value reaches a shell
HOSTILE_MIRROR = "mirror dir$(touch pwned-mirror)"  # a folder name: the marker would land in the run folder
HOSTILE_WEIGHTS = "w'$(touch pwned-weights)'"
HOSTILE_TITLE = "Lee's benchmark x'$(touch pwned-title)'y \"$(touch pwned-title2)\""


def commands(output: str, command: str) -> list[list[str]]:
    """The argument lists of the `fusebench COMMAND` shell commands a dry run printed (-p)."""
    found = []
    for line in output.splitlines():
        start = line.find(f"fusebench {command} ")
        if start >= 0:
            found.append(shlex.split(line[start:].split(" 2> ")[0]))
    assert found, f"no `fusebench {command}` in the dry run:\n{output[-3000:]}"
    return found


def value_after(args: list[str], option: str) -> str:
    return args[args.index(option) + 1]


def no_markers(folder: Path) -> None:
    assert not list(folder.rglob("pwned*")), "a config value was executed by the shell"


@pytest.fixture(scope="module")
def hostile_run(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real workflow (download from a mirror, fuse, metrics, report) on two small Harvard MRI-CT pairs, with a
    mirror path and a report title that a shell would execute if unquoted (the other keys: dry runs below)."""
    run = tmp_path_factory.mktemp("hostile")
    (run / HOSTILE_MIRROR).symlink_to(shared / "datasets")
    config = small_config(shared, datasets=["Harvard-MRI-CT"], mirror=HOSTILE_MIRROR)
    config["methods"] = {"average": {}}
    config["metrics"]["names"] = ["EN", "SD"]
    config["report"] = {"title": HOSTILE_TITLE, "examples": 1}
    write_config(run / "config.yaml", config)
    result = snakemake("--configfile", "config.yaml", cwd=run)
    assert result.returncode == 0, result.stderr[-5000:]
    return run


def test_hostile_mirrors_and_title_arrive_intact_and_run_nothing(hostile_run: Path) -> None:
    no_markers(hostile_run)
    results = hostile_run / "results"
    assert sorted(p.name for p in (results / "data" / "Harvard-MRI-CT" / "test" / "ct").iterdir()) == [
        "16009.png",
        "16010.png",
    ]
    assert HOSTILE_TITLE in html.unescape((results / "report" / "index.html").read_text())


def dry_run(config: dict[str, Any], folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = snakemake("-n", "-p", "--configfile", str(write_config(folder / "c.yaml", config)), cwd=folder, env=env)
    no_markers(folder)
    return result


def test_hostile_mirror_from_the_environment_and_title_are_quoted(shared: Path, tmp_path: Path) -> None:
    """Dry run (-p): FUSEBENCH_MIRROR and weights_mirror each reach their command as one intact argument, the
    title reaches no command line at all (it travels in plan.json); nothing is executed."""
    config = small_config(shared, datasets=["Harvard-MRI-CT"], weights_mirror=HOSTILE_WEIGHTS)
    del config["mirror"]
    config["methods"] = {"average": {}, "densefuse-official": {"method": "densefuse", "official": "densefuse-gray"}}
    config["report"]["title"] = HOSTILE_TITLE
    result = dry_run(config, tmp_path, env={**os.environ, "FUSEBENCH_MIRROR": HOSTILE_MIRROR})
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert {value_after(args, "--mirror") for args in commands(output, "download")} == {HOSTILE_MIRROR}
    assert {value_after(args, "--mirror") for args in commands(output, "fetch-weights")} == {HOSTILE_WEIGHTS}
    assert commands(output, "report") and not any("--title" in args for args in commands(output, "report"))


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        ({"options": {"official_ir": "ir'$(touch pwned-o)'.model", "official_vi": '"$(touch pwned-o2)"'}}, "options"),
        ({"train": {"options": {"lr": "x'$(touch pwned-t)'y"}}}, "train_options"),
    ],
)
def test_hostile_method_and_train_options_are_quoted(
    entry: dict[str, Any], where: str, shared: Path, tmp_path: Path
) -> None:
    """Dry run (-p): option values reach `fusebench train` / `fuse` as intact JSON, or are refused when the DAG is
    built (option validation), never executed."""
    config = small_config(shared, datasets=["MSRS"])
    config["methods"] = {"crossfuse": entry}
    result = dry_run(config, tmp_path)
    output = result.stdout + result.stderr
    expected = entry["options"] if where == "options" else entry["train"]["options"]
    if result.returncode != 0:  # refused by option validation, naming the option
        assert next(iter(expected)) in output, output[-3000:]
        return
    for command in ("train", "fuse") if where == "options" else ("train",):
        for args in commands(output, command):
            given = value_after(args, "--options" if where == "options" else "--train-options")
            assert json.loads(given) == expected


# ---------------------------------------------------------- 14.3 a fused image truncated after the metrics ran
@pytest.mark.slow  # a workflow run of 20-60 s: the default suite stays under 15 minutes
def test_truncated_fused_image_reruns_metrics_and_sets_the_report_aside(hostile_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(hostile_run, run, symlinks=True)  # keeps the times Snakemake compares
    untouched = snakemake("-n", "--configfile", "config.yaml", cwd=run)
    assert "Nothing to be done" in untouched.stdout + untouched.stderr
    fused = sorted((run / "results" / "fused" / "Harvard-MRI-CT" / "average").glob("*.png"))[0]
    fused.write_bytes(fused.read_bytes()[: fused.stat().st_size // 2])

    planned = snakemake("-n", "--configfile", "config.yaml", cwd=run)
    assert "Nothing to be done" not in planned.stdout + planned.stderr
    assert "rule metrics" in planned.stdout + planned.stderr

    result = snakemake("--configfile", "config.yaml", cwd=run)
    assert result.returncode != 0
    log = (run / "results" / "logs" / "metrics" / "Harvard-MRI-CT_average.log").read_text()
    assert fused.name in log and "truncated" in log
    report = run / "results" / "report"
    assert not (report / "index.html").exists(), "the report still shows the numbers of the intact image"
    assert (report / "index.stale.html").is_file()
    assert not (run / "results" / "metrics" / "Harvard-MRI-CT" / "average.csv").exists()

    shutil.rmtree(fused.parent)  # fuse again: the report comes back up to date, the stale copy goes
    again = snakemake("--configfile", "config.yaml", cwd=run)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (report / "index.html").is_file() and not (report / "index.stale.html").exists()


# -------------------------------------------------------------- 14.7 / 11.18 clear errors naming the file
def test_truncated_weights_name_the_file(shared: Path, tmp_path: Path) -> None:
    model = tmp_path / "model.pt"
    torch.save(other_state_dict(shared), model)
    model.write_bytes(model.read_bytes()[:-2000])
    result = cli(
        "fuse",
        "--method",
        "densefuse",
        "--dataset",
        "TNO",
        "--sources",
        tmp_path,
        "--out",
        tmp_path / "o",
        "--weights",
        model,
    )
    assert result.returncode != 0
    assert f"{model} (" in result.stderr and "truncated or corrupt" in result.stderr.splitlines()[-1]


def test_truncated_checkpoint_on_resume_names_it_and_says_what_to_do(shared: Path, tmp_path: Path) -> None:
    patches = tmp_path / "patches.npy"
    np.save(patches, real_patches(shared / "datasets", 64, limit=1))
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"step": 1, "trainer": other_state_dict(shared)}, run / "checkpoint.pt")
    (run / "checkpoint.pt").write_bytes((run / "checkpoint.pt").read_bytes()[:5000])
    result = cli(
        "train",
        "--method",
        "densefuse",
        "--patches",
        patches,
        "--out",
        run,
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert result.returncode != 0
    assert f"{run / 'checkpoint.pt'} (5000 bytes) is truncated or corrupt" in result.stderr
    assert f"delete it to train {run} from step 0" in result.stderr


def test_truncated_tf_checkpoint_files_name_the_file(shared: Path, tmp_path: Path) -> None:
    for f in (shared / "weights" / "official" / MFFGAN).iterdir():  # renamed: not a registered file
        shutil.copyfile(f, tmp_path / f.name.replace("CGAN", "copy"))
    data = tmp_path / "copy.model-19.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100_000])
    result = cli(
        "fuse",
        "--method",
        "mffgan",
        "--dataset",
        "MFIFB-lytro",
        "--sources",
        tmp_path,
        "--out",
        tmp_path / "o",
        "--official",
        tmp_path / "copy.model-19.index",
    )
    assert result.returncode != 0
    assert f"{data} is truncated: it has 100000 bytes" in result.stderr

    index = tmp_path / "copy.model-19.index"
    index.write_bytes(index.read_bytes()[:-30])
    with pytest.raises(CheckpointError, match=rf"{index} \(1828 bytes\) is truncated or corrupt.*fetch"):
        TFCheckpoint(index)


class Payload:
    """Pickled as a call of os.system: loading it with weights_only=False would run the command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def test_pickle_payload_is_refused_without_suggesting_weights_only_false(tmp_path: Path) -> None:
    weights = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2), "x": Payload(tmp_path / "pwned")}, weights)
    result = cli(
        "fuse",
        "--method",
        "densefuse",
        "--dataset",
        "TNO",
        "--sources",
        tmp_path,
        "--out",
        tmp_path / "o",
        "--weights",
        weights,
    )
    assert result.returncode != 0
    assert f"{weights} is not a plain state dict" in result.stderr and "was not loaded" in result.stderr
    assert "weights_only=False" not in result.stderr and "weights_only` set to `False" not in result.stderr
    assert not (tmp_path / "pwned").exists()


def test_disk_full_during_a_checkpoint_write(shared: Path, tmp_path: Path, small_disk: Any) -> None:
    patches = tmp_path / "patches.npy"
    np.save(patches, real_patches(shared / "datasets", 64, limit=1))
    run = small_disk(256) / "run"  # DenseFuse's checkpoint (weights + Adam state) is about 1 MB
    result = cli(
        "train",
        "--method",
        "densefuse",
        "--patches",
        patches,
        "--out",
        run,
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--checkpoint-every",
        "1",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert result.returncode != 0
    assert f"no space left on the device (disk full or quota exceeded) while writing {run / 'checkpoint.pt'}" in (
        result.stderr
    )
    assert "inline_container" not in result.stderr.splitlines()[-1]
    assert not temp_files(run) and not (run / "checkpoint.pt").exists()


def test_disk_full_during_a_download_is_not_a_mirror_problem(shared: Path, small_disk: Any) -> None:
    out = small_disk(64) / "TNO"  # one TNO image is about 320 KB
    result = cli(
        "download",
        "--dataset",
        "TNO",
        "--split",
        "test",
        "--out",
        out,
        "--mirror",
        shared / "datasets",
        "--max-pairs",
        "1",
        "--no-progress",
    )
    assert result.returncode != 0
    assert f"while writing {out}/" in result.stderr and "no space left" in result.stderr
    assert "cannot read it" not in result.stderr
    assert not temp_files(out)

    weights = small_disk(64) / "weights"
    result = cli("fetch-weights", "densefuse-gray", "--out", weights, "--mirror", shared / "weights" / "official")
    assert result.returncode != 0
    assert f"while writing {weights / DENSEFUSE}" in result.stderr and "upstream" not in result.stderr


def test_disk_full_in_the_atomic_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC from the final flush (as on NFS or with delayed allocation; runs without root): a DiskFullError that
    names the file, the previous file unchanged, no temporary file left."""
    target = tmp_path / "checkpoint.pt"
    save_torch({"step": 1}, target)
    before = target.read_bytes()

    def full(path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic, "_fsync", full)
    with pytest.raises(DiskFullError, match=rf"while writing {target}: .*Free space"):
        save_torch({"step": 2, "w": torch.zeros(100)}, target)
    assert target.read_bytes() == before and not temp_files(tmp_path)


# ------------------------------------------------------------------------- 14.8 fsync before and after rename
def test_atomic_writer_fsyncs_the_file_before_and_the_folder_after_the_rename(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    opened: dict[int, str] = {}
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def record_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        opened[fd] = str(path)
        return fd

    def record_fsync(fd: int) -> None:
        events.append(("fsync", opened.get(fd, "?")))
        real_fsync(fd)

    def record_replace(src: Any, dst: Any) -> None:
        events.append(("replace", str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "open", record_open)
    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    target = tmp_path / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("data")
    assert events == [("fsync", str(tmp)), ("replace", str(target)), ("fsync", str(tmp_path))]


# --------------------------------------------------------------- 11.16 a killed Snakemake does not block reruns
@pytest.mark.slow  # a workflow run of 20-60 s: the default suite stays under 15 minutes
def test_killed_snakemake_recovers_like_make_quickstart(tmp_path: Path) -> None:
    (tmp_path / "Snakefile").write_text(
        'rule slow:\n    output: "out.txt"\n    params: pause=config.get("pause", 0)\n'
        '    shell: "echo start > {output}; sleep {params.pause}; echo done >> {output}"\n'
    )
    base = [sys.executable, "-m", "snakemake", "--cores", "1"]
    first = subprocess.Popen(
        [*base, "--config", "pause=60"],
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "out.txt").exists():
            assert time.monotonic() < deadline and first.poll() is None, "the first run did not start its job"
            time.sleep(0.2)
        assert release_stale_locks(tmp_path) == []  # a running Snakemake keeps its lock
        assert any((tmp_path / ".snakemake" / "locks").iterdir())
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # Snakemake and its job, as a closed terminal or OOM kill would
        first.wait()

    blocked = subprocess.run([*base, "--rerun-incomplete"], cwd=tmp_path, capture_output=True, text=True)
    assert blocked.returncode != 0 and "cannot be locked" in blocked.stdout + blocked.stderr

    steps = subprocess.run(["make", "-n", "-o", "install", "quickstart"], cwd=REPO, capture_output=True, text=True)
    assert "-m fusebench.staleness unlock" in steps.stdout and "--rerun-incomplete" in steps.stdout
    unlock = subprocess.run(
        [sys.executable, "-m", "fusebench.staleness", "unlock"], cwd=tmp_path, capture_output=True, text=True
    )
    assert unlock.returncode == 0 and "removed" in unlock.stderr
    again = subprocess.run([*base, "--rerun-incomplete"], cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "out.txt").read_text() == "start\ndone\n"


def test_shipped_profile_reruns_incomplete_outputs() -> None:
    for profile in (REPO / "slurm").glob("config*.yaml"):
        assert yaml.safe_load(profile.read_text())["rerun-incomplete"] is True, profile


# ---------------------------------------------------------------- 11.17 temporary files of a killed training
def test_training_removes_temp_files_of_a_killed_run(shared: Path, tmp_path: Path) -> None:
    patches = tmp_path / "patches.npy"
    np.save(patches, real_patches(shared / "datasets", 64, limit=1))
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".checkpoint.pt.k1ll3d.part.pt", run / ".model.pt.abc123.part.pt", run / ".loss.csv.x.part.csv"]
    for path in stale:
        path.write_bytes(b"\0" * 1000)  # what a kill during torch.save leaves
    result = cli(
        "train",
        "--method",
        "densefuse",
        "--patches",
        patches,
        "--out",
        run,
        "--steps",
        "1",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    assert not temp_files(run) and (run / "model.pt").is_file()
