"""The one seam every fine-tuning provider implements, and the data that crosses it.

A provider module (openai, azure, together, hf_lora) builds a `Trainer`. Callers (the CLI, the
admin API, `training.service`) only see this protocol, so a provider is a configuration choice.
Lifecycle: preflight (refuse before anything is uploaded) -> upload -> create -> retrieve /
events / list / cancel, with statuses validating_files | queued | running | succeeded | failed |
cancelled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

JsonScalar = str | int | float | bool | None
Hyper = dict[str, JsonScalar]

STATUSES = ("validating_files", "queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
BUILTIN_PROVIDERS = ("openai", "azure", "hf-lora", "together")


class TrainerError(RuntimeError):
    """A provider call failed; the message says which call and why."""


class ProviderRefused(TrainerError):
    """Refused before anything was uploaded (unknown provider, no credentials, model not offered, limits)."""


@dataclass(frozen=True)
class JobInfo:
    id: str
    status: str
    model: str
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: str | None = None
    created_at: int | None = None
    started_at: int | None = None  # when training really started, as the provider reports it
    finished_at: int | None = None
    estimated_finish: int | None = None
    training_file: str | None = None
    validation_file: str | None = None
    hyperparameters: Hyper = field(default_factory=dict)
    gpu_seconds: float | None = None  # self-hosted: wall time of the training process
    cost_usd: float | None = None  # when the provider reports a billed amount
    progress: str | None = None  # e.g. "step 3/10, loss 1.92"


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

    def hyper(self) -> Hyper:
        hp: Hyper = {}
        if self.n_epochs is not None:
            hp["n_epochs"] = self.n_epochs
        if self.batch_size is not None:
            hp["batch_size"] = self.batch_size
        if self.learning_rate_multiplier is not None:
            hp["learning_rate_multiplier"] = self.learning_rate_multiplier
        return hp


@dataclass(frozen=True)
class DatasetFacts:
    """What a provider may check before any upload (from the validation report)."""

    examples: int
    token_counts: tuple[int, ...]
    file_bytes: int
    n_epochs: int | None = None
    batch_size: int | None = None
    learning_rate_multiplier: float | None = None

    @property
    def longest(self) -> int:
        return max(self.token_counts, default=0)


@dataclass(frozen=True)
class Serving:
    """How a trained model is served; `add-arm` writes `upstream` and `model_info` into the router config."""

    model: str  # the id clients (and the route's arm) send as "model"
    upstream: str | None = None  # an upstream name in the router config
    upstream_base_url: str | None = None  # set when abgate must add that upstream
    upstream_api_key_env: str | None = None
    command: str | None = None  # e.g. the `vllm serve ... --enable-lora --lora-modules` line
    load_call: str | None = None  # the dynamic adapter-load HTTP call
    input_per_mtok: float | None = None
    output_per_mtok: float | None = None

    def to_dict(self) -> dict[str, JsonScalar]:
        return {"model": self.model, "upstream": self.upstream, "upstream_base_url": self.upstream_base_url,
                "upstream_api_key_env": self.upstream_api_key_env,
                "command": self.command, "load_call": self.load_call, "input_per_mtok": self.input_per_mtok,
                "output_per_mtok": self.output_per_mtok}


class Trainer(Protocol):
    """One provider. `name` is what the registry records in `training_runs.provider`."""

    name: str

    def preflight(self, model: str, facts: DatasetFacts) -> None: ...
    def upload(self, path: Path) -> str: ...
    def create(self, spec: JobSpec) -> JobInfo: ...
    def retrieve(self, job_id: str) -> JobInfo: ...
    def events(self, job_id: str, limit: int = 50) -> list[JobEvent]: ...
    def list(self, limit: int = 20) -> list[JobInfo]: ...
    def cancel(self, job_id: str) -> JobInfo: ...
    def training_price(self, model: str) -> float | None: ...
    def serving(self, job: JobInfo) -> Serving | None: ...


def check_hyper(facts: DatasetFacts, *, max_epochs: int, max_batch: int, min_batch: int = 1,
                provider: str) -> None:
    """Common range checks; each provider passes its own documented limits."""
    if facts.n_epochs is not None and not 1 <= facts.n_epochs <= max_epochs:
        raise ProviderRefused(f"{provider}: n_epochs must be within 1..{max_epochs}, got {facts.n_epochs}")
    if facts.batch_size is not None and not min_batch <= facts.batch_size <= max_batch:
        raise ProviderRefused(f"{provider}: batch_size must be within {min_batch}..{max_batch}, "
                              f"got {facts.batch_size}")
    if facts.learning_rate_multiplier is not None and facts.learning_rate_multiplier <= 0:
        raise ProviderRefused(f"{provider}: learning_rate_multiplier must be > 0, "
                              f"got {facts.learning_rate_multiplier:g}")
