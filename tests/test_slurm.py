"""`snakemake --profile slurm` on a real (single-node, local) SLURM cluster.

scripts/slurm-cluster.sh starts munged + slurmctld + slurmd with two fake GPUs; the tiny
workflow in tests/slurm_workflow runs through the repository's profile (slurm/). Checked:
every job went through SLURM (job ids in Snakemake's log, the jobcomp file, the jobs' own
environment), the `gpu=1` rule got a GPU, and a training job killed with scancel mid-way is
retried by Snakemake and resumes from its checkpoint with more memory.

Needs Linux and root (or passwordless sudo) and SLURM or apt-get; skipped otherwise, except in
CI (CI=true), where a missing prerequisite fails. Run with `pytest -m slow tests/test_slurm.py`.

The `slurm_cluster` fixture (tests/slurm_cluster.py, registered in conftest.py) is shared with the
end-to-end run of the real workflow in tests/test_slurm_workflow.py.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from slurm_cluster import GPU_TRES, REPO, SUBMITTED, SlurmCluster

pytestmark = pytest.mark.slow

WORKFLOW = REPO / "tests" / "slurm_workflow" / "Snakefile"
RULE_OF_JOB = re.compile(r"^(?:local)?rule (\w+):\n(?:[ \t]+.*\n)*?[ \t]+jobid: (\d+)$", re.M)


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
