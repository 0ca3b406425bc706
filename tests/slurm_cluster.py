"""The local SLURM test cluster (scripts/slurm-cluster.sh) as a session fixture for the SLURM tests."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm-cluster.sh"
#: Snakemake's log line for each submission: (snakemake job id, SLURM job id)
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+)")
#: `scontrol show job` of a job that asked for one GPU
GPU_TRES = re.compile(r"TresPerJob=\S*gres[:/]gpu[:=]1\b")


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
        return subprocess.run(["bash", str(SCRIPT), command, str(self.state_dir)], capture_output=True, text=True, **kw)

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
        return subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout

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
            return subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True, **popen_kw)
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
