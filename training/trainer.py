"""Fine-tuning jobs behind one small `Trainer` interface (OpenAI-compatible via the `openai` SDK).

OpenAI is winding fine-tuning down for new users, so the provider is a configuration
choice: any OpenAI-compatible base URL (env `OPENAI_BASE_URL` / `OPENAI_API_KEY`, or an
upstream named in the router config) works, and another provider only needs a class with
these six methods.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from gateway.config import RouterConfig
from gateway.events import now_rfc3339
from training import tokens as tk
from training.registry import TERMINAL, Registry

if TYPE_CHECKING:
    import openai


def _sdk():  # noqa: ANN202 - the openai SDK is a 0.5 s import; load it when a trainer is used
    import openai

    return openai


class TrainerError(RuntimeError):
    """A provider call failed; the message says which call and why."""


@dataclass(frozen=True)
class JobInfo:
    id: str
    status: str
    model: str
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: str | None = None
    created_at: int | None = None
    finished_at: int | None = None
    estimated_finish: int | None = None
    training_file: str | None = None
    validation_file: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobEvent:
    id: str
    created_at: int
    level: str
    message: str


@dataclass(frozen=True)
class JobSpec:
    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = None
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None
    seed: int | None = None
    metadata: dict[str, str] | None = None

    def method(self) -> dict[str, Any]:
        hp: dict[str, Any] = {}
        if self.n_epochs is not None:
            hp["n_epochs"] = self.n_epochs
        if self.batch_size is not None:
            hp["batch_size"] = self.batch_size
        if self.learning_rate_multiplier is not None:
            hp["learning_rate_multiplier"] = self.learning_rate_multiplier
        return {"type": "supervised", "supervised": {"hyperparameters": hp}}


class Trainer(Protocol):
    def upload(self, path: Path) -> str: ...
    def create(self, spec: JobSpec) -> JobInfo: ...
    def retrieve(self, job_id: str) -> JobInfo: ...
    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]: ...
    def list(self, limit: int = 20) -> list[JobInfo]: ...
    def cancel(self, job_id: str) -> JobInfo: ...


def _job(j: Any) -> JobInfo:
    err = getattr(j, "error", None)
    message = None
    if err is not None and (getattr(err, "message", None) or getattr(err, "code", None)):
        message = " ".join(x for x in (getattr(err, "code", None), getattr(err, "message", None)) if x)
    hp: dict[str, Any] = {}
    method = getattr(j, "method", None)
    sup = getattr(method, "supervised", None) if method is not None else None
    src = getattr(sup, "hyperparameters", None) or getattr(j, "hyperparameters", None)
    if src is not None:
        hp = {k: v for k, v in src.model_dump().items() if v is not None}
    return JobInfo(
        id=j.id, status=j.status, model=j.model, fine_tuned_model=j.fine_tuned_model, trained_tokens=j.trained_tokens,
        error=message, created_at=j.created_at, finished_at=j.finished_at,
        estimated_finish=getattr(j, "estimated_finish", None), training_file=j.training_file,
        validation_file=j.validation_file, hyperparameters=hp)


def _explain(call: str, err: Exception) -> TrainerError:
    if isinstance(err, _sdk().APIStatusError):
        body = err.body if isinstance(err.body, dict) else {}
        detail = body.get("message") or (body.get("error") or {}).get("message") if body else None
        return TrainerError(f"{call} failed: HTTP {err.status_code}: {detail or err.message}")
    if isinstance(err, _sdk().APIConnectionError):
        return TrainerError(f"{call} failed: cannot reach the fine-tuning API ({err.__cause__ or err})")
    return TrainerError(f"{call} failed: {err}")


class OpenAITrainer:
    """The `openai` SDK; the SDK retries 429 and 5xx (`max_retries`, honouring retry-after)."""

    def __init__(self, client: openai.OpenAI):
        self.client = client

    def upload(self, path: Path) -> str:
        try:
            with open(path, "rb") as f:
                return self.client.files.create(file=(path.name, f), purpose="fine-tune").id
        except _sdk().OpenAIError as err:
            raise _explain(f"upload {path.name}", err) from None

    def create(self, spec: JobSpec) -> JobInfo:
        kw: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file, "method": spec.method()}
        for k in ("validation_file", "suffix", "seed", "metadata"):
            if getattr(spec, k) is not None:
                kw[k] = getattr(spec, k)
        try:
            return _job(self.client.fine_tuning.jobs.create(**kw))
        except _sdk().OpenAIError as err:
            raise _explain("create fine-tuning job", err) from None

    def retrieve(self, job_id: str) -> JobInfo:
        try:
            return _job(self.client.fine_tuning.jobs.retrieve(job_id))
        except _sdk().OpenAIError as err:
            raise _explain(f"retrieve {job_id}", err) from None

    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]:
        try:
            page = self.client.fine_tuning.jobs.list_events(job_id, limit=limit)
        except _sdk().OpenAIError as err:
            raise _explain(f"list events of {job_id}", err) from None
        evs = [JobEvent(id=e.id, created_at=e.created_at, level=e.level, message=e.message) for e in page.data]
        return sorted(evs, key=lambda e: (e.created_at, e.id))  # the API lists newest first

    def list(self, limit: int = 20) -> list[JobInfo]:
        try:
            return [_job(j) for j in self.client.fine_tuning.jobs.list(limit=limit).data]
        except _sdk().OpenAIError as err:
            raise _explain("list fine-tuning jobs", err) from None

    def cancel(self, job_id: str) -> JobInfo:
        try:
            return _job(self.client.fine_tuning.jobs.cancel(job_id))
        except _sdk().OpenAIError as err:
            raise _explain(f"cancel {job_id}", err) from None


def make_trainer(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    upstream: str | None = None,
    config: RouterConfig | None = None,
    http_client: httpx.Client | None = None,
    max_retries: int = 3,
) -> OpenAITrainer:
    """Explicit args > a config upstream > the SDK's usual OPENAI_BASE_URL / OPENAI_API_KEY."""
    if upstream is not None:
        if config is None or upstream not in config.upstreams:
            known = ", ".join(config.upstreams) if config else "no config stored"
            raise TrainerError(f"unknown upstream {upstream!r} (known: {known})")
        up = config.upstreams[upstream]
        base_url = base_url or up.base_url
        if api_key is None and up.api_key_env:
            api_key = os.environ.get(up.api_key_env)
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    api_key = api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        if not base_url:
            raise TrainerError("no fine-tuning API configured: set OPENAI_API_KEY (and OPENAI_BASE_URL for an "
                               "OpenAI-compatible provider) or pass --upstream NAME from the router config")
        api_key = "unused"  # OpenAI-compatible servers without auth (e.g. the simulator)
    kw: dict[str, Any] = {"api_key": api_key, "max_retries": max_retries}
    if base_url:
        kw["base_url"] = base_url
    if http_client is not None:
        kw["http_client"] = http_client
    return OpenAITrainer(_sdk().OpenAI(**kw))


def sync_run(reg: Registry, job: JobInfo, config: RouterConfig | None = None) -> dict[str, Any]:
    """Map the provider's job into its registry run; a first `succeeded` registers a model version."""
    run = reg.run_by_job(job.id)
    if run is None:
        raise KeyError(f"job {job.id} is not in the registry (launched elsewhere?)")
    fields: dict[str, Any] = {"status": job.status}
    if job.trained_tokens is not None:
        fields["trained_tokens"] = job.trained_tokens
        price = tk.training_price(run["base_model"], config)
        if price is not None:
            fields["actual_cost_usd"] = job.trained_tokens * price / 1_000_000
    if job.fine_tuned_model:
        fields["result_model"] = job.fine_tuned_model
    if job.error:
        fields["error"] = job.error
    if job.status == "running" and not run["started_at"]:
        fields["started_at"] = now_rfc3339()
    if job.status in TERMINAL and not run["finished_at"]:
        fields["finished_at"] = now_rfc3339()
        fields.setdefault("started_at", run["started_at"] or now_rfc3339())
    if job.hyperparameters:
        fields["hyperparameters"] = _merge_hp(run["hyperparameters"], job.hyperparameters)
    reg.update_run(run["id"], **fields)
    run = reg.run(run["id"])
    if job.status == "succeeded" and job.fine_tuned_model:
        notes = f"run {run['id']}" + (f", suffix {run['suffix']}" if run["suffix"] else "")
        reg.register_model(tenant=run["tenant_id"], model_id=job.fine_tuned_model, base_model=run["base_model"],
                           examples=run["n_examples"], dataset_id=run["dataset_id"], run_id=run["id"], notes=notes)
    return run


def _merge_hp(old: dict[str, Any], new: dict[str, Any]) -> str:
    import json

    return json.dumps({**old, **new}, sort_keys=True)


@dataclass(frozen=True)
class Launched:
    run_id: str
    job: JobInfo
    estimate: tk.CostEstimate


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
    system_prompt_sha: str | None = None,
    config: RouterConfig | None = None,
) -> Launched:
    """Upload, create the job, record the run (the caller validated the files first)."""
    est = tk.estimate(token_counts, model, epochs=n_epochs, config=config)
    training_file = trainer.upload(training_path)
    validation_file = trainer.upload(validation_path) if validation_path is not None else None
    spec = JobSpec(model=model, training_file=training_file, validation_file=validation_file, suffix=suffix,
                   n_epochs=n_epochs, batch_size=batch_size, learning_rate_multiplier=learning_rate_multiplier,
                   seed=seed, metadata={"abgate_tenant": tenant, **({"abgate_dataset": dataset_id} if dataset_id else {})})
    job = trainer.create(spec)
    hp = {k: v for k, v in (("n_epochs", n_epochs), ("batch_size", batch_size),
                            ("learning_rate_multiplier", learning_rate_multiplier)) if v is not None}
    run_id = reg.create_run(
        tenant=tenant, base_model=model, status=job.status if job.status in (
            "queued", "validating_files", "running") else "queued",
        provider_job_id=job.id, suffix=suffix, hyperparameters=hp, training_file=training_file,
        validation_file=validation_file, n_examples=len(token_counts), system_prompt_sha=system_prompt_sha,
        estimated_tokens=est.billed_tokens, estimated_cost_usd=est.cost_usd, dataset_id=dataset_id)
    sync_run(reg, job, config)
    return Launched(run_id=run_id, job=job, estimate=est)
