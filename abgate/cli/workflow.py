"""Seed 001's `full-workflow`: upload -> create the job -> wait -> evaluate base and fine-tune ->
compare -> offline gate, as one command (`abgate eval full-workflow`), plus the pieces the
seed's manual process names: `upload` and `create-job <training-file-id> <validation-file-id>`
(`--until upload` / `--training-file-id ... --until job`).

The fine-tuning side only uses the trainer seam (training.trainer: Trainer.upload / create /
retrieve, sync_run) and the registry, so any provider behind that seam works."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import RouterConfig
from training.registry import TERMINAL, Registry
from training.trainer import JobInfo, JobSpec, Trainer, job_metadata, start_run, sync_run

STEPS = ("upload", "job", "train", "eval", "gate")


@dataclass(frozen=True)
class Created:
    run_id: str
    job: JobInfo


def create_from_file_ids(
    trainer: Trainer,
    reg: Registry,
    *,
    training_file: str,
    validation_file: str | None,
    model: str,
    tenant: str = "default",
    suffix: str | None = None,
    n_epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    seed: int | None = None,
    dataset_id: str | None = None,
    config: RouterConfig | None = None,
) -> Created:
    """Create a fine-tuning job from files already at the provider (no upload; the provider
    validates them) and record its run. The example count and cost estimate are unknown here."""
    spec = JobSpec(model=model, training_file=training_file, validation_file=validation_file, suffix=suffix,
                   n_epochs=n_epochs, batch_size=batch_size, learning_rate_multiplier=learning_rate_multiplier,
                   seed=seed, metadata=job_metadata(tenant, dataset_id))
    run_id, job = start_run(trainer, reg, spec, tenant=tenant, config=config, dataset_id=dataset_id)
    return Created(run_id, job)


def wait_job(trainer: Trainer, reg: Registry, job_id: str, *, poll: float, config: RouterConfig | None = None,
             on_status: Callable[[JobInfo], None] | None = None, timeout_s: float | None = None) -> JobInfo:
    """Poll until the job is terminal, keeping its registry run in sync."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        job = trainer.retrieve(job_id)
        if reg.run_by_job(job_id) is not None:
            sync_run(reg, job, config, trainer)
        if on_status is not None:
            on_status(job)
        if job.status in TERMINAL:
            return job
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {job.status} after {timeout_s:g} s")
        time.sleep(poll)
