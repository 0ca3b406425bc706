"""A "training" job for the SLURM test workflow: STEPS steps of STEP_SECONDS each, with the
step counter checkpointed atomically after every step. A rerun (Snakemake retry after scancel,
walltime, node failure) continues from the checkpoint instead of starting at step 0."""

import json
import os
import time
from pathlib import Path

sm = snakemake  # noqa: F821  (injected by Snakemake's script: directive)
ckpt = Path(sm.params.checkpoint)
history = Path(sm.params.history)
ckpt.parent.mkdir(parents=True, exist_ok=True)

start = json.loads(ckpt.read_text())["step"] if ckpt.exists() else 0
env = {
    k: os.environ.get(k)
    for k in (
        "SLURM_JOB_ID",
        "SLURM_JOB_GPUS",
        "SLURM_STEP_GPUS",
        "CUDA_VISIBLE_DEVICES",
        "SLURM_MEM_PER_NODE",
    )
}
record = {"start_step": start, "mem_mb": sm.resources.mem_mb, "pid": os.getpid(), **env}
with history.open("a") as f:
    f.write(json.dumps(record) + "\n")

for step in range(start, int(sm.params.steps)):
    time.sleep(float(sm.params.step_seconds))  # the "work" of one step
    tmp = ckpt.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step + 1, "slurm_job_id": env["SLURM_JOB_ID"]}))
    os.replace(tmp, ckpt)  # atomic: a kill never leaves half a checkpoint

attempts = [json.loads(line) for line in history.read_text().splitlines() if line.strip()]
Path(sm.output[0]).write_text(
    json.dumps(
        {
            "rule": "train",
            "step": json.loads(ckpt.read_text())["step"],
            "resumed_from": start,
            "attempts": attempts,
            "env": env,
        },
        indent=1,
    )
)
