"""Fine-tuning runs in the registry, whatever the provider (training/providers/, one module each).

`launch` checks the provider's own limits (before any upload), uploads, creates the job and
records the run; `sync_run` maps the provider's job into its run (real start / finish times
from the provider, trained tokens or GPU time, cost) and registers a model version, with how to
serve it, on the first `succeeded`. `trainer_for_job` finds the provider a job was launched on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.config import RouterConfig
from gateway.events import now_rfc3339
from training import providers
from training import tokens as tk
from training.providers.base import (
    TERMINAL,
    DatasetFacts,
    JobEvent,
    JobInfo,
    JobSpec,
    ProviderRefused,
    Trainer,
    TrainerError,
)
from training.providers.openai import OpenAITrainer
from training.registry import Registry

if TYPE_CHECKING:
    import httpx  # annotations only: `abgate serve` mounts these routes and never needs httpx

__all__ = ["DatasetFacts", "JobEvent", "JobInfo", "JobSpec", "Launched", "OpenAITrainer", "ProviderRefused",
           "Trainer", "TrainerError", "launch", "make_trainer", "sync_run", "trainer_for_job"]


def make_trainer(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    upstream: str | None = None,
    config: RouterConfig | None = None,
    http_client: httpx.Client | None = None,
    max_retries: int = 3,
) -> OpenAITrainer:
    """The OpenAI provider: explicit args > a config upstream > OPENAI_BASE_URL / OPENAI_API_KEY."""
    from training.providers.openai import OpenAIOptions, make_openai

    if upstream is not None:
        up_url, up_key = providers.upstream_credentials(config, upstream)
        base_url, api_key = base_url or up_url, api_key if api_key is not None else up_key
    return make_openai(base_url=base_url, api_key=api_key, http_client=http_client, max_retries=max_retries,
                       options=OpenAIOptions(upstream=upstream))


def trainer_for_job(reg: Registry, job_id: str, *, config: RouterConfig | None, state_dir: Path,
                    provider: str | None = None, upstream: str | None = None) -> Trainer:
    """The provider the run of `job_id` was launched on (explicit flags win; unknown jobs: the default)."""
    if provider is None and upstream is None:
        run = reg.run_by_job(job_id)
        if run is not None:
            provider = run["provider"]
        elif job_id.startswith("hflora-"):
            provider = "hf-lora"
    return providers.resolve(provider, config=config, state_dir=state_dir, upstream=upstream)


def _rfc3339(ts: int | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts else None


def sync_run(reg: Registry, job: JobInfo, config: RouterConfig | None = None,
             trainer: Trainer | None = None) -> dict[str, Any]:
    """Map the provider's job into its registry run; a first `succeeded` registers a model version."""
    run = reg.run_by_job(job.id)
    if run is None:
        raise KeyError(f"job {job.id} is not in the registry (launched elsewhere?)")
    fields: dict[str, Any] = {"status": job.status}
    price = trainer.training_price(run["base_model"]) if trainer is not None else tk.training_price(
        run["base_model"], config)
    if config is not None and run["provider"] == "openai":
        price = tk.training_price(run["base_model"], config) or price  # config prices win for OpenAI models
    if job.trained_tokens is not None:
        fields["trained_tokens"] = job.trained_tokens
        if price is not None:
            fields["actual_cost_usd"] = job.trained_tokens * price / 1_000_000
    if job.gpu_seconds is not None:
        fields["gpu_seconds"] = job.gpu_seconds
    if job.cost_usd is not None:
        fields["actual_cost_usd"] = job.cost_usd
    if job.fine_tuned_model:
        fields["result_model"] = job.fine_tuned_model
    if job.error:
        fields["error"] = job.error
    # times as the provider reports them; only a provider that reports none gets the time abgate saw
    if job.started_at and not run["started_at"]:
        fields["started_at"] = _rfc3339(job.started_at)
    if job.estimated_finish:
        fields["estimated_finish"] = _rfc3339(job.estimated_finish)
    if job.status in TERMINAL and not run["finished_at"]:
        fields["finished_at"] = _rfc3339(job.finished_at) or now_rfc3339()
    if job.hyperparameters:
        fields["hyperparameters"] = json.dumps({**run["hyperparameters"], **job.hyperparameters}, sort_keys=True)
    serving = None
    if job.status == "succeeded" and job.fine_tuned_model and trainer is not None:
        plan = trainer.serving(job)
        serving = plan.to_dict() if plan is not None else None
        if serving is not None:
            fields["serving"] = serving
    reg.update_run(run["id"], **fields)
    run = reg.run(run["id"])
    if job.status == "succeeded" and job.fine_tuned_model:
        notes = f"run {run['id']} on {run['provider']}" + (f", suffix {run['suffix']}" if run["suffix"] else "")
        reg.register_model(tenant=run["tenant_id"], model_id=job.fine_tuned_model, base_model=run["base_model"],
                           examples=run["n_examples"], dataset_id=run["dataset_id"], run_id=run["id"], notes=notes,
                           provider=run["provider"], serving=serving or run["serving"])
    return run


@dataclass(frozen=True)
class Launched:
    run_id: str
    job: JobInfo
    estimate: tk.CostEstimate


QUEUE_SECONDS, TOKENS_PER_SECOND = 600, 1500


def rough_finish(created_at: int | None, billed_tokens: int) -> int:
    """abgate's rough completion estimate at launch (queue + tokens at a typical rate) until the provider's own."""
    start = created_at or int(datetime.now(UTC).timestamp())
    return int(start + QUEUE_SECONDS + billed_tokens / TOKENS_PER_SECOND)


def file_version(path: Path) -> str:
    """The dataset version a run trained: sha256 (first 16 hex) of the exact training file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def job_metadata(tenant: str, dataset_id: str | None) -> dict[str, str]:
    """The metadata every abgate job carries at the provider (tenant, dataset)."""
    return {"abgate_tenant": tenant, **({"abgate_dataset": dataset_id} if dataset_id else {})}


def start_run(trainer: Trainer, reg: Registry, spec: JobSpec, *, tenant: str, config: RouterConfig | None,
              billed_tokens: int | None = None, **run_fields: object) -> tuple[str, JobInfo]:
    """Create the provider job and record its run: the one place a training run starts.
    `billed_tokens` (when known) gives a rough finish estimate until the provider has its own."""
    job = trainer.create(spec)
    finish = job.estimated_finish or (rough_finish(job.created_at, billed_tokens) if billed_tokens is not None
                                      else None)
    run_id = reg.create_run(
        tenant=tenant, base_model=spec.model,
        status=job.status if job.status in ("queued", "validating_files", "running") else "queued",
        provider=trainer.name, provider_job_id=job.id, suffix=spec.suffix, hyperparameters=spec.hyper(),
        training_file=spec.training_file, validation_file=spec.validation_file,
        estimated_finish=_rfc3339(finish), **run_fields)
    sync_run(reg, job, config, trainer)
    return run_id, job


def launch(
    trainer: Trainer,
    reg: Registry,
    *,
    training_path: Path,
    model: str,
    token_counts: list[int],
    tenant: str = "default",
    validation_path: Path | None = None,
    suffix: str | None = None,
    n_epochs: int | None = None,
    batch_size: int | None = None,
    learning_rate_multiplier: float | None = None,
    seed: int | None = None,
    dataset_id: str | None = None,
    dataset_name: str | None = None,
    system_prompt_sha: str | None = None,
    config: RouterConfig | None = None,
) -> Launched:
    """Provider preflight, upload, create the job, record the run (the caller validated the files first)."""
    facts = DatasetFacts(examples=len(token_counts), token_counts=tuple(token_counts),
                         file_bytes=training_path.stat().st_size, n_epochs=n_epochs, batch_size=batch_size,
                         learning_rate_multiplier=learning_rate_multiplier)
    trainer.preflight(model, facts)  # refuses before anything is uploaded
    est = tk.estimate(token_counts, model, epochs=n_epochs, config=config)
    price = trainer.training_price(model)
    if config is not None and trainer.name == "openai":
        price = tk.training_price(model, config) or price
    if price != est.price_per_mtok:
        cost = None if price is None else est.billed_tokens * price / 1_000_000
        est = tk.CostEstimate(examples=est.examples, tokens=est.tokens, truncated=est.truncated, epochs=est.epochs,
                              billed_tokens=est.billed_tokens, price_per_mtok=price, cost_usd=cost)
    training_file = trainer.upload(training_path)
    validation_file = trainer.upload(validation_path) if validation_path is not None else None
    spec = JobSpec(model=model, training_file=training_file, validation_file=validation_file, suffix=suffix,
                   n_epochs=n_epochs, batch_size=batch_size, learning_rate_multiplier=learning_rate_multiplier,
                   seed=seed, metadata=job_metadata(tenant, dataset_id))
    run_id, job = start_run(
        trainer, reg, spec, tenant=tenant, config=config, billed_tokens=est.billed_tokens, dataset_id=dataset_id,
        n_examples=len(token_counts), system_prompt_sha=system_prompt_sha, estimated_tokens=est.billed_tokens,
        estimated_cost_usd=est.cost_usd, dataset_name=dataset_name or training_path.name,
        dataset_version=file_version(training_path))
    return Launched(run_id=run_id, job=job, estimate=est)
