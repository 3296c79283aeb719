"""OpenAI fine-tuning through the `openai` SDK (any OpenAI-compatible base URL, and Azure via azure.py).

OpenAI's self-serve fine-tuning takes no new organisations since 2026-05-07 and no new jobs
from anyone after 2027-01-06. Past that date a job for api.openai.com is refused before any
upload; before it, a refusal from the API itself is recognised and answered with the other
providers abgate offers.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training import tokens as tk
from training.providers.base import (
    DatasetFacts,
    JobEvent,
    JobInfo,
    JobSpec,
    ProviderRefused,
    Serving,
    TrainerError,
    check_hyper,
)

if TYPE_CHECKING:
    import httpx  # annotations only: `abgate serve` mounts these routes and never needs httpx
    import openai

NO_NEW_ORGS_SINCE = date(2026, 5, 7)
LAST_DAY_FOR_NEW_JOBS = date(2027, 1, 6)
OTHERS = ("--provider hf-lora (TRL + PEFT LoRA on your own GPUs, or the CPU for a smoke run), "
          "--provider together (hosted open-weight LoRA) or --provider azure (Azure OpenAI); "
          "name one in `training.providers` of the router config to make it the default")
WIND_DOWN = (f"OpenAI's self-serve fine-tuning accepts no new organisations since {NO_NEW_ORGS_SINCE} and no new "
             f"jobs after {LAST_DAY_FOR_NEW_JOBS}")
_REFUSAL = re.compile(
    r"(fine[- ]?tun\w*|training).{0,80}(no longer|not (available|enabled|supported|offered|accept\w*)|disabled|"
    r"discontinu\w*|wind(ing)?[- ]down|deprecat\w*|sunset|retired|shut ?down)"
    r"|(no longer|not) (accept\w*|allow\w*|available)\b.{0,80}fine[- ]?tun", re.I | re.S)
_REFUSAL_CODES = frozenset({"fine_tuning_unavailable", "fine_tuning_disabled", "fine_tuning_deprecated",
                            "fine_tuning_not_available", "organization_not_eligible", "feature_unavailable"})

# Base models OpenAI's fine-tuning API offers (and the simulator mirrors); `models:` in config overrides.
OPENAI_FINE_TUNABLE = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14",
                       "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14", "gpt-3.5-turbo-0125")
MAX_FILE_BYTES = 512 * 1024 * 1024
MAX_EPOCHS, MAX_BATCH = 50, 256

# USD per 1M tokens to *use* a fine-tuned model (OpenAI bills fine-tunes above the base model's rate).
FINE_TUNED_INFERENCE: dict[str, tuple[float, float]] = {
    "gpt-4o-mini-2024-07-18": (0.30, 1.20),
    "gpt-4o-2024-08-06": (3.75, 15.00),
    "gpt-4.1-2025-04-14": (3.00, 12.00),
    "gpt-4.1-mini-2025-04-14": (0.80, 3.20),
    "gpt-4.1-nano-2025-04-14": (0.20, 0.80),
    "gpt-3.5-turbo-0125": (3.00, 6.00),
}


def fine_tuned_inference_price(model: str) -> tuple[float, float] | None:
    """(input, output) USD per 1M tokens for an `ft:` model, or None when unknown."""
    if not model.startswith("ft:"):
        return None
    return FINE_TUNED_INFERENCE.get(tk.base_of(model))


def _sdk() -> Any:  # the openai SDK is a 0.5 s import; load it when a trainer is used
    import openai

    return openai


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


def is_wind_down_refusal(status: int, body: object, message: str) -> bool:
    if status not in (400, 403, 404, 410, 422):
        return False
    code = ""
    if isinstance(body, dict):
        inner = body.get("error") if isinstance(body.get("error"), dict) else body
        code = str(inner.get("code") or "") if isinstance(inner, dict) else ""
        message = str(inner.get("message") or message) if isinstance(inner, dict) else message
    return code in _REFUSAL_CODES or bool(_REFUSAL.search(message))


def explain(call: str, err: Exception, provider: str = "openai") -> TrainerError:
    sdk = _sdk()
    if isinstance(err, sdk.APIStatusError):
        body = err.body if isinstance(err.body, dict) else {}
        detail = body.get("message") or (body.get("error") or {}).get("message") if body else None
        said = detail or err.message
        if is_wind_down_refusal(err.status_code, err.body, str(said)):
            return ProviderRefused(f"{call} refused by {provider} (HTTP {err.status_code}: {said}). {WIND_DOWN}. "
                                   f"Fine-tune without OpenAI: {OTHERS}.")
        return TrainerError(f"{call} failed: HTTP {err.status_code}: {said}")
    if isinstance(err, sdk.APIConnectionError):
        return TrainerError(f"{call} failed: cannot reach the {provider} fine-tuning API ({err.__cause__ or err})")
    return TrainerError(f"{call} failed: {err}")


def _started_at(events: list[JobEvent]) -> int | None:
    for e in events:
        if re.search(r"\b(job started|training started|started training)\b", e.message, re.I):
            return e.created_at
    return None


@dataclass(frozen=True)
class OpenAIOptions:
    models: tuple[str, ...] = ()
    training_per_mtok: float | None = None
    official: bool = False  # api.openai.com itself (the wind-down dates apply)
    upstream: str | None = None  # the router-config upstream that serves its fine-tunes
    today: date | None = None  # tests pin the calendar


class OpenAITrainer:
    """The `openai` SDK; the SDK retries 429 and 5xx (`max_retries`, honouring retry-after)."""

    name = "openai"

    def __init__(self, client: openai.OpenAI, options: OpenAIOptions | None = None, name: str = "openai"):
        self.client = client
        self.options = options or OpenAIOptions()
        self.name = name

    # -- before anything is uploaded -----------------------------------------------------------
    def offered(self) -> tuple[str, ...]:
        return self.options.models or OPENAI_FINE_TUNABLE

    def preflight(self, model: str, facts: DatasetFacts) -> None:
        today = self.options.today or datetime.now(UTC).date()
        if self.options.official and today > LAST_DAY_FOR_NEW_JOBS:
            raise ProviderRefused(f"{WIND_DOWN} (today is {today}). Fine-tune without OpenAI: {OTHERS}.")
        if not model.startswith("ft:") and model not in self.offered():
            raise ProviderRefused(f"{self.name} does not offer {model!r} for fine-tuning "
                                  f"(offered: {', '.join(self.offered())})")
        if facts.file_bytes > MAX_FILE_BYTES:
            raise ProviderRefused(f"{self.name}: the training file is {facts.file_bytes:,} bytes, over the "
                                  f"{MAX_FILE_BYTES:,}-byte upload limit")
        check_hyper(facts, max_epochs=MAX_EPOCHS, max_batch=MAX_BATCH, provider=self.name)

    def training_price(self, model: str) -> float | None:
        if self.options.training_per_mtok is not None:
            return self.options.training_per_mtok
        return tk.training_price(model)

    # -- the lifecycle -------------------------------------------------------------------------
    def upload(self, path: Path) -> str:
        try:
            with open(path, "rb") as f:
                return self.client.files.create(file=(path.name, f), purpose="fine-tune").id
        except _sdk().OpenAIError as err:
            raise explain(f"upload {path.name}", err, self.name) from None

    def create(self, spec: JobSpec) -> JobInfo:
        method = {"type": "supervised", "supervised": {"hyperparameters": spec.hyper()}}
        kw: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file, "method": method}
        for k in ("validation_file", "suffix", "seed", "metadata"):
            if getattr(spec, k) is not None:
                kw[k] = getattr(spec, k)
        try:
            return _job(self.client.fine_tuning.jobs.create(**kw))
        except _sdk().OpenAIError as err:
            raise explain("create fine-tuning job", err, self.name) from None

    def retrieve(self, job_id: str) -> JobInfo:
        try:
            job = _job(self.client.fine_tuning.jobs.retrieve(job_id))
        except _sdk().OpenAIError as err:
            raise explain(f"retrieve {job_id}", err, self.name) from None
        if job.status in ("running", "succeeded", "failed", "cancelled"):
            # the job object has no start time; the provider's "job started" event has it
            try:
                started = _started_at(self.events(job_id, 100))
            except Exception:  # noqa: BLE001 - the start time is best effort; the status is what was asked
                started = None
            if started is not None:
                job = _replace(job, started_at=started)
        return job

    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]:
        try:
            page = self.client.fine_tuning.jobs.list_events(job_id, limit=limit)
        except _sdk().OpenAIError as err:
            raise explain(f"list events of {job_id}", err, self.name) from None
        evs = [JobEvent(id=e.id, created_at=e.created_at, level=e.level, message=e.message) for e in page.data]
        return sorted(evs, key=lambda e: (e.created_at, e.id))  # the API lists newest first

    def list(self, limit: int = 20) -> list[JobInfo]:
        try:
            return [_job(j) for j in self.client.fine_tuning.jobs.list(limit=limit).data]
        except _sdk().OpenAIError as err:
            raise explain("list fine-tuning jobs", err, self.name) from None

    def cancel(self, job_id: str) -> JobInfo:
        try:
            return _job(self.client.fine_tuning.jobs.cancel(job_id))
        except _sdk().OpenAIError as err:
            raise explain(f"cancel {job_id}", err, self.name) from None

    def serving(self, job: JobInfo) -> Serving | None:
        if not job.fine_tuned_model:
            return None
        price = fine_tuned_inference_price(job.fine_tuned_model)
        return Serving(model=job.fine_tuned_model, upstream=self.options.upstream,
                       input_per_mtok=price[0] if price else None, output_per_mtok=price[1] if price else None)


def _replace(job: JobInfo, **kw: Any) -> JobInfo:
    import dataclasses

    return dataclasses.replace(job, **kw)


def make_openai(
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    http_client: httpx.Client | None = None,
    max_retries: int = 3,
    options: OpenAIOptions | None = None,
) -> OpenAITrainer:
    """Explicit args > the SDK's usual OPENAI_BASE_URL / OPENAI_API_KEY."""
    base_url = base_url or os.environ.get("OPENAI_BASE_URL")
    api_key = api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        if not base_url:
            raise ProviderRefused("openai: no credentials: set OPENAI_API_KEY (and OPENAI_BASE_URL for an "
                                  "OpenAI-compatible provider) or pass --upstream NAME from the router config")
        api_key = "unused"  # OpenAI-compatible servers without auth (e.g. the simulator)
    kw: dict[str, Any] = {"api_key": api_key, "max_retries": max_retries}
    if base_url:
        kw["base_url"] = base_url
    if http_client is not None:
        kw["http_client"] = http_client
    official = "api.openai.com" in (base_url or "https://api.openai.com/v1")
    opts = options or OpenAIOptions()
    if official != opts.official:
        import dataclasses

        opts = dataclasses.replace(opts, official=official)
    return OpenAITrainer(_sdk().OpenAI(**kw), opts)
