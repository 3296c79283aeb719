"""Together AI's hosted fine-tuning API (LoRA on open-weight models), over plain HTTP with httpx.

Endpoints (docs.together.ai API reference): `POST /files/upload` (multipart: purpose, file_name,
file_type, file), `GET /fine-tunes/models/limits?model_name=` (is the base model offered, its
epoch / batch / learning-rate bounds), `POST /fine-tunes`, `GET /fine-tunes/{id}`,
`GET /fine-tunes/{id}/events`, `POST /fine-tunes/{id}/cancel`, `GET /fine-tunes`. Fine-tuned
models are served by Together's OpenAI-compatible `/v1/chat/completions` under the job's
`model_output_name`.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

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

DEFAULT_BASE_URL = "https://api.together.xyz/v1"
DEFAULT_LR = 1e-5  # Together's default learning rate; abgate's --lr-mult scales it
STATUS = {"pending": "queued", "queued": "queued", "running": "running", "compressing": "running",
          "uploading": "running", "cancel_requested": "running", "cancelled": "cancelled", "error": "failed",
          "failed": "failed", "user_error": "failed", "completed": "succeeded"}


def _ts(value: object) -> int | None:
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
        except ValueError:
            return None
    return None


def _num(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class TogetherTrainer:
    name = "together"

    def __init__(self, client: httpx.Client, *, base_url: str, api_key_env: str = "TOGETHER_API_KEY",
                 models: tuple[str, ...] = (), training_per_mtok: float | None = None, lora_r: int = 8,
                 lora_alpha: int = 16, upstream: str | None = None):
        self.http = client
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self.models = models
        self.price = training_per_mtok
        self.lora_r, self.lora_alpha = lora_r, lora_alpha
        self.upstream = upstream

    # -- HTTP ------------------------------------------------------------------------------------
    def _call(self, what: str, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, f"{self.base_url}{path}", **kw)
        except httpx.HTTPError as err:
            raise TrainerError(f"{what} failed: cannot reach the together fine-tuning API ({err})") from None
        if r.status_code >= 400:
            raise TrainerError(f"{what} failed: HTTP {r.status_code}: {_message(r)}")
        try:
            return r.json()
        except ValueError:
            raise TrainerError(f"{what} failed: the response is not JSON: {r.text[:200]!r}") from None

    # -- before anything is uploaded -------------------------------------------------------------
    def preflight(self, model: str, facts: DatasetFacts) -> None:
        if self.models and model not in self.models:
            raise ProviderRefused(f"together: {model!r} is not among the configured models "
                                  f"({', '.join(self.models)})")
        try:
            r = self.http.get(f"{self.base_url}/fine-tunes/models/limits", params={"model_name": model})
        except httpx.HTTPError as err:
            raise TrainerError(f"check model limits failed: cannot reach the together fine-tuning API ({err})") \
                from None
        if r.status_code in (400, 404, 422):
            raise ProviderRefused(f"together does not offer {model!r} for fine-tuning ({_message(r)})")
        if r.status_code in (401, 403):
            raise ProviderRefused(f"together refused the API key in ${self.api_key_env}: {_message(r)}")
        if r.status_code >= 400:
            raise TrainerError(f"check model limits failed: HTTP {r.status_code}: {_message(r)}")
        limits = r.json() if r.content else {}
        lora = limits.get("lora_training") or {}
        if not lora:
            raise ProviderRefused(f"together offers no LoRA fine-tuning for {model!r}")
        check_hyper(facts, max_epochs=_num(limits.get("max_num_epochs")) or 20,
                    max_batch=_num(lora.get("max_batch_size")) or 10_000,
                    min_batch=_num(lora.get("min_batch_size")) or 1, provider="together")
        max_lr = limits.get("max_learning_rate")
        if facts.learning_rate_multiplier is not None and isinstance(max_lr, int | float) \
                and facts.learning_rate_multiplier * DEFAULT_LR > max_lr:
            raise ProviderRefused(f"together: learning rate {facts.learning_rate_multiplier * DEFAULT_LR:g} "
                                  f"(--lr-mult x {DEFAULT_LR:g}) is over {model}'s maximum {max_lr:g}")
        max_rank = _num(lora.get("max_rank"))
        if max_rank is not None and self.lora_r > max_rank:
            raise ProviderRefused(f"together: lora_r {self.lora_r} is over {model}'s maximum rank {max_rank}")
        max_len = _num(limits.get("max_seq_length")) or _num(limits.get("max_seq_length_sft"))
        if max_len is not None and facts.longest > max_len:
            raise ProviderRefused(f"together: the longest example has about {facts.longest} tokens, over "
                                  f"{model}'s {max_len}-token context for fine-tuning")

    def training_price(self, model: str) -> float | None:
        return self.price

    # -- the lifecycle ---------------------------------------------------------------------------
    def upload(self, path: Path) -> str:
        with open(path, "rb") as f:
            data = self._call(f"upload {path.name}", "POST", "/files/upload",
                              data={"purpose": "fine-tune", "file_name": path.name, "file_type": "jsonl"},
                              files={"file": (path.name, f, "application/octet-stream")})
        fid = data.get("id") if isinstance(data, dict) else None
        if not isinstance(fid, str):
            raise TrainerError(f"upload {path.name} failed: no file id in {data!r}")
        return fid

    def create(self, spec: JobSpec) -> JobInfo:
        body: dict[str, Any] = {
            "model": spec.model, "training_file": spec.training_file,
            "training_type": {"type": "Lora", "lora_r": self.lora_r, "lora_alpha": self.lora_alpha},
            "training_method": {"method": "sft"},
        }
        if spec.validation_file:
            body["validation_file"] = spec.validation_file
            body["n_evals"] = 1
        if spec.suffix:
            body["suffix"] = spec.suffix
        if spec.n_epochs is not None:
            body["n_epochs"] = spec.n_epochs
        if spec.batch_size is not None:
            body["batch_size"] = spec.batch_size
        if spec.learning_rate_multiplier is not None:
            body["learning_rate"] = spec.learning_rate_multiplier * DEFAULT_LR
        if spec.seed is not None:
            body["random_seed"] = spec.seed
        return self._job(self._call("create fine-tuning job", "POST", "/fine-tunes", json=body))

    def retrieve(self, job_id: str) -> JobInfo:
        return self._job(self._call(f"retrieve {job_id}", "GET", f"/fine-tunes/{job_id}"))

    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]:
        data = self._call(f"list events of {job_id}", "GET", f"/fine-tunes/{job_id}/events")
        rows = data.get("data", []) if isinstance(data, dict) else []
        evs = [JobEvent(id=str(e.get("hash") or f"{job_id}-ev{i}"), created_at=_ts(e.get("created_at")) or 0,
                        level=str(e.get("level") or "info"), message=str(e.get("message") or e.get("type") or ""))
               for i, e in enumerate(rows) if isinstance(e, dict)]
        return sorted(evs, key=lambda e: (e.created_at, e.id))[-limit:]

    def list(self, limit: int = 20) -> list[JobInfo]:
        data = self._call("list fine-tuning jobs", "GET", "/fine-tunes")
        rows = data.get("data", []) if isinstance(data, dict) else []
        return [self._job(j) for j in rows[:limit] if isinstance(j, dict)]

    def cancel(self, job_id: str) -> JobInfo:
        return self._job(self._call(f"cancel {job_id}", "POST", f"/fine-tunes/{job_id}/cancel"))

    def serving(self, job: JobInfo) -> Serving | None:
        if not job.fine_tuned_model:
            return None
        return Serving(model=job.fine_tuned_model, upstream=self.upstream or "together",
                       upstream_base_url=self.base_url, upstream_api_key_env=self.api_key_env)

    def _job(self, j: Any) -> JobInfo:
        if not isinstance(j, dict) or not isinstance(j.get("id"), str):
            raise TrainerError(f"together answered an unexpected job object: {j!r}")
        raw = str(j.get("status") or "pending")
        status = STATUS.get(raw, "running")
        epochs = _num(j.get("n_epochs"))
        tokens = _num(j.get("total_tokens_processed"))
        if tokens is None and status == "succeeded" and _num(j.get("token_count")) is not None:
            tokens = (_num(j.get("token_count")) or 0) * (epochs or 1)
        hp: dict[str, Any] = {k: v for k, v in (("n_epochs", epochs), ("batch_size", j.get("batch_size")),
                                                ("learning_rate", j.get("learning_rate"))) if v is not None}
        err = j.get("error") or (f"together reported status {raw}" if status == "failed" else None)
        return JobInfo(
            id=j["id"], status=status, model=str(j.get("model") or ""),
            fine_tuned_model=j.get("model_output_name") if status == "succeeded" else None,
            trained_tokens=tokens, error=str(err) if err else None, created_at=_ts(j.get("created_at")),
            started_at=_ts(j.get("started_at")),
            finished_at=_ts(j.get("updated_at")) if status in ("succeeded", "failed", "cancelled") else None,
            training_file=j.get("training_file"), validation_file=j.get("validation_file") or None,
            hyperparameters=hp, progress=raw if raw != status else None)


def _message(r: httpx.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:300] or r.reason_phrase
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err or body.get("message") or body)
    return str(body)


def make_together(*, base_url: str | None = None, api_key: str | None = None, api_key_env: str | None = None,
                  http_client: httpx.Client | None = None, **options: Any) -> TogetherTrainer:
    key_env = api_key_env or "TOGETHER_API_KEY"
    api_key = api_key or os.environ.get(key_env)
    if not api_key:
        raise ProviderRefused(f"together: no credentials: set ${key_env} (the API key from your Together account)")
    base = base_url or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL
    client = http_client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0))
    client.headers["Authorization"] = f"Bearer {api_key}"
    return TogetherTrainer(client, base_url=base, api_key_env=key_env, **options)
