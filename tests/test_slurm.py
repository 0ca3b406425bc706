"""`snakemake --profile slurm` on a real (single-node, local) SLURM cluster.

scripts/slurm-cluster.sh starts munged + slurmctld + slurmd with two fake GPUs; the tiny
workflow in tests/slurm_workflow runs through the repository's profile (slurm/). Checked:
every job went through SLURM (job ids in Snakemake's log, the jobcomp file, the jobs' own
environment), the `gpu=1` rule got a GPU, and a training job killed with scancel mid-way is
retried by Snakemake and resumes from its checkpoint with more memory.

Needs Linux and root (or passwordless sudo) and SLURM or apt-get; skipped otherwise, except in
CI (CI=true), where a missing prerequisite fails. Run with `pytest -m slow tests/test_slurm.py`.

The `slurm_cluster` fixture (and SlurmCluster.snakemake) is meant to be reused by an end-to-end
test of the real workflow: move it to tests/conftest.py when a second module needs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
PROFILE = REPO / "slurm"
WORKFLOW = REPO / "tests" / "slurm_workflow" / "Snakefile"
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
GPU_TRES = re.compile(r"TresPerJob=\S*gres[:/]gpu[:=]1\b")
RULE_OF_JOB = re.compile(r"^(?:local)?rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)$", re.M)


def _unavailable_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the local SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        sudo = shutil.which("sudo")
        if not sudo or subprocess.run([sudo, "-n", "true"], capture_output=True).returncode != 0:
            return "the local SLURM test cluster needs root or passwordless sudo"
    have_slurm = all(shutil.which(b) or Path("/usr/sbin", b).exists() for b in ("slurmctld", "slurmd"))
    if not have_slurm and not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    # find_spec, not import: importing the plugin runs `scontrol show config` (10 s timeout)
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install -e '.[workflow]')"
    return None


@dataclass
class SlurmCluster:
    """A running local SLURM cluster (scripts/slurm-cluster.sh) and helpers to use it."""

    state_dir: Path

    @property
    def jobcomp(self) -> Path:
        return self.state_dir / "jobcomp.log"

    def script(self, command: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["bash", str(SCRIPT), command, str(self.state_dir)], capture_output=True, text=True, **kw
        )

    def finished_jobs(self) -> dict[str, dict[str, str]]:
        """Job-completion records (jobcomp/filetxt) by job id; the last record of an id wins."""
        records = {}
        if self.jobcomp.exists():
            for line in self.jobcomp.read_text().splitlines():
                fields = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
                if "JobId" in fields:
                    records[fields["JobId"]] = fields
        return records

    def show_job(self, job_id: str) -> str:
        """`scontrol show job` (works for MinJobAge = 300 s after the job ended)."""
        return subprocess.run(
            ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
        ).stdout

    def snakemake(
        self, workdir: Path, *args: str, snakefile: Path | None = None, log: Path | None = None, **popen_kw
    ) -> subprocess.Popen:
        """Start `snakemake --profile slurm` exactly as a user would (from the repository root,
        the profile found by name), with the status polling made fast for tests."""
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "--profile",
            "slurm",
            "--directory",
            str(workdir),
            # defaults: first poll after 10 s, +10 s per poll without news, 40 s after a job ends
            "--slurm-init-seconds-before-status-checks",
            "2",
            "--seconds-between-status-checks",
            "2",
            "--slurm-keep-successful-logs",
        ]
        if snakefile is not None:
            cmd += ["--snakefile", str(snakefile)]
        cmd += list(args)
        out = open(log, "w") if log else subprocess.DEVNULL
        try:
            return subprocess.Popen(
                cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, **popen_kw
            )
        finally:
            if log:
                out.close()


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Start the local SLURM cluster for the session; stop it afterwards if this fixture started it."""
    reason = _unavailable_reason()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the SLURM tests, but: {reason}")
        pytest.skip(reason)
    state = Path(os.environ.get("FUSEBENCH_SLURM_DIR", "/tmp/fusebench-slurm"))
    cluster = SlurmCluster(state)
    was_running = cluster.script("status").returncode == 0
    started = cluster.script("start", timeout=600)
    if started.returncode != 0:
        pytest.fail(f"scripts/slurm-cluster.sh start failed:\n{started.stdout}\n{started.stderr}")
    yield cluster
    if not was_running:
        cluster.script("stop", timeout=60)


@dataclass
class KilledRun:
    workdir: Path
    log: str
    returncode: int
    killed_job: str
    killed_at_step: int
    jobs: dict[str, list[str]]  # rule -> SLURM job ids, in submission order
    elapsed: float


STEPS = 8


@pytest.fixture(scope="module")
def killed_run(slurm_cluster: SlurmCluster, tmp_path_factory) -> KilledRun:
    """Run the tiny workflow; scancel the training job once its checkpoint shows >= 3 steps."""
    workdir = tmp_path_factory.mktemp("slurm_wf")
    log = workdir / "snakemake.log"
    ckpt = workdir / "checkpoints" / "train.json"
    t0 = time.monotonic()
    proc = slurm_cluster.snakemake(
        workdir,
        "--config",
        f"steps={STEPS}",
        "step_seconds=1",
        snakefile=WORKFLOW,
        log=log,
        start_new_session=True,
    )
    killed_job, killed_at = "", -1
    try:
        while time.monotonic() - t0 < 150 and proc.poll() is None:
            try:
                state = json.loads(ckpt.read_text())
            except (FileNotFoundError, json.JSONDecodeError):
                state = {"step": 0}
            if state["step"] >= 3:
                killed_job, killed_at = state["slurm_job_id"], state["step"]
                subprocess.run(["scancel", killed_job], check=True)
                break
            time.sleep(0.3)
        rc = proc.wait(timeout=max(10.0, 240 - (time.monotonic() - t0)))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # snakemake cancels its SLURM jobs on SIGINT
        proc.wait(timeout=60)
        rc = -1
    text = log.read_text()
    rule_of_job = {jobid: rule for rule, jobid in RULE_OF_JOB.findall(text)}
    jobs: dict[str, list[str]] = {}
    for sm_id, slurm_id in SUBMITTED.findall(text):
        jobs.setdefault(rule_of_job.get(sm_id, "?"), []).append(slurm_id)
    return KilledRun(workdir, text, rc, killed_job, killed_at, jobs, time.monotonic() - t0)


def _explain(run: KilledRun) -> str:
    return f"snakemake log ({run.workdir / 'snakemake.log'}):\n" + "\n".join(run.log.splitlines()[-60:])


def test_start_is_idempotent(slurm_cluster: SlurmCluster):
    t0 = time.monotonic()
    again = slurm_cluster.script("start", timeout=60)
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stderr
    assert time.monotonic() - t0 < 10
    sinfo = subprocess.run(["sinfo", "-h", "-o", "%P %T %G"], capture_output=True, text=True, check=True)
    assert "debug*" in sinfo.stdout and "gpu:2" in sinfo.stdout, sinfo.stdout


def test_workflow_completes_after_the_kill(killed_run: KilledRun):
    assert killed_run.killed_job, "the training job never reached step 3:\n" + _explain(killed_run)
    assert killed_run.returncode == 0, _explain(killed_run)
    summary = json.loads((killed_run.workdir / "results" / "summary.json").read_text())
    assert summary["steps"] == STEPS


def test_jobs_went_through_slurm(killed_run: KilledRun, slurm_cluster: SlurmCluster):
    jobs = killed_run.jobs
    assert set(jobs) == {"prepare", "train", "summary"}, _explain(killed_run)
    assert len(jobs["prepare"]) == 1 and len(jobs["summary"]) == 1
    assert len(jobs["train"]) == 2, "expected the killed training job to be resubmitted once"
    assert jobs["train"][0] == killed_run.killed_job
    finished = slurm_cluster.finished_jobs()
    for rule, ids in jobs.items():
        for job_id in ids:
            record = finished.get(job_id)
            assert record, f"SLURM job {job_id} ({rule}) not in {slurm_cluster.jobcomp}"
            assert Path(record["WorkDir"]).resolve() == killed_run.workdir.resolve()
            assert record["Name"].startswith("fusebench_")  # slurm-jobname-prefix from the profile
            expected = "CANCELLED" if job_id == killed_run.killed_job else "COMPLETED"
            assert record["JobState"] == expected, record
    # the jobs saw themselves inside SLURM, under the ids Snakemake reported
    data = json.loads((killed_run.workdir / "results" / "data.json").read_text())
    assert data["env"]["SLURM_JOB_ID"] == jobs["prepare"][0]
    # keep-successful-logs: one SLURM log per job under .snakemake/slurm_logs/rule_<name>/
    logs = killed_run.workdir / ".snakemake" / "slurm_logs"
    for rule, ids in jobs.items():
        for job_id in ids:
            assert (logs / f"rule_{rule}" / f"{job_id}.log").is_file()


def test_gpu_rule_got_a_gpu(killed_run: KilledRun, slurm_cluster: SlurmCluster):
    model = json.loads((killed_run.workdir / "results" / "model.json").read_text())
    for attempt in model["attempts"]:
        assert attempt["CUDA_VISIBLE_DEVICES"] in {"0", "1"}, attempt
        assert attempt["SLURM_STEP_GPUS"] in {"0", "1"}, attempt
    for job_id in killed_run.jobs["train"]:
        # sbatch --gpus=1 -> TresPerJob=gres:gpu:1 (SLURM 22.05) or gres/gpu:1 (23.x)
        assert GPU_TRES.search(slurm_cluster.show_job(job_id))
    data = json.loads((killed_run.workdir / "results" / "data.json").read_text())
    assert data["env"]["CUDA_VISIBLE_DEVICES"] is None  # a rule without gpu= gets no GPU
    assert not GPU_TRES.search(slurm_cluster.show_job(killed_run.jobs["prepare"][0]))


def test_killed_training_resumed_from_checkpoint(killed_run: KilledRun, slurm_cluster: SlurmCluster):
    model = json.loads((killed_run.workdir / "results" / "model.json").read_text())
    first, second = model["attempts"]  # exactly two attempts
    assert first["start_step"] == 0
    assert killed_run.killed_at_step <= second["start_step"] < STEPS, model
    assert model["resumed_from"] == second["start_step"] and model["step"] == STEPS
    assert first["SLURM_JOB_ID"] == killed_run.killed_job != second["SLURM_JOB_ID"]
    # mem_mb = 200 * attempt: the retry asked SLURM for more memory
    assert (first["mem_mb"], second["mem_mb"]) == (200, 400)
    assert "mem=400M" in slurm_cluster.show_job(second["SLURM_JOB_ID"])  # TRES=cpu=1,mem=400M,...
    assert "CANCELLED" in killed_run.log  # Snakemake saw the scancel through squeue
