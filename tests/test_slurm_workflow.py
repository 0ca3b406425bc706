"""The real fusebench workflow through `snakemake --profile slurm` on the local SLURM cluster.

The small config runs end to end with its training jobs submitted as GPU jobs; one training job is
killed with scancel after its first checkpoint, and the retry must resume from that checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from slurm_cluster import GPU_TRES, SUBMITTED, SlurmCluster
from workflow_helpers import small_config, write_config

pytestmark = pytest.mark.slow

STEPS = 120
RESUMED = re.compile(r"resuming \S+ from its checkpoint at step (\d+)")


def running_train_job(dataset: str) -> str | None:
    """SLURM id of the running training job on `dataset` (the job comment names rule and wildcards)."""
    queue = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], capture_output=True, text=True).stdout
    for line in queue.splitlines():
        job_id, comment, state = line.split("|")
        if comment.startswith("rule_train") and dataset in comment and state == "RUNNING":
            return job_id
    return None


def test_small_benchmark_on_slurm_with_a_killed_training_job(
    slurm_cluster: SlurmCluster, tmp_path: Path, shared: Path
) -> None:
    config = small_config(shared, steps=STEPS, datasets=["TNO", "Harvard-MRI-CT"], max_pairs=1)
    config["methods"] = {"average": {}, "densefuse": config["methods"]["densefuse"]}
    config["training"].update(threads=1, mem_mb=1000)
    config["training"]["defaults"].update(checkpoint_every=10)
    configfile = write_config(tmp_path / "config.yaml", config)
    log = tmp_path / "snakemake.log"
    checkpoint = tmp_path / "results" / "models" / "densefuse" / "MSRS" / "checkpoint.pt"

    start = time.monotonic()
    proc = slurm_cluster.snakemake(tmp_path, "--configfile", str(configfile), log=log, start_new_session=True)
    killed = None
    try:
        while killed is None and proc.poll() is None and time.monotonic() - start < 600:
            job = running_train_job("MSRS")
            if job and checkpoint.exists():
                subprocess.run(["scancel", job], check=True)
                killed = job
            time.sleep(0.5)
        rc = proc.wait(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGINT)  # snakemake cancels its SLURM jobs on SIGINT
        proc.wait(timeout=60)
        rc = -1
    text = log.read_text()
    tail = "\n".join(text.splitlines()[-60:])
    assert killed, f"no MSRS training job was seen running with a checkpoint:\n{tail}"
    assert rc == 0, tail

    # every job went through SLURM; the killed job shows as cancelled, its retry and the rest completed
    submitted = [slurm_id for _, slurm_id in SUBMITTED.findall(text)]
    finished = slurm_cluster.finished_jobs()
    assert killed in submitted and set(submitted) <= set(finished)
    assert finished[killed]["JobState"] == "CANCELLED"
    assert all(finished[j]["JobState"] == "COMPLETED" for j in submitted if j != killed)

    # training jobs asked SLURM for a GPU
    assert GPU_TRES.search(slurm_cluster.show_job(killed)), slurm_cluster.show_job(killed)

    # the retry resumed from the checkpoint instead of starting over, and the log has every step once
    resumed = RESUMED.search((tmp_path / "results" / "logs" / "train" / "densefuse_MSRS.log").read_text())
    assert resumed and int(resumed.group(1)) >= 10
    steps = pd.read_csv(checkpoint.parent / "loss.csv")["step"]
    assert list(steps) == list(range(1, STEPS + 1))

    html = (tmp_path / "results" / "report" / "index.html").read_text()
    assert all(name in html for name in ("TNO", "Harvard-MRI-CT", "average", "densefuse"))
