"""Azure OpenAI fine-tuning: the same `openai` SDK through its `AzureOpenAI` client and your resource endpoint.

Configuration (router config `training.providers.<name>`, type `azure`) or the SDK's own
environment: `AZURE_OPENAI_ENDPOINT`, `AZURE_OPENAI_API_KEY`, `OPENAI_API_VERSION`. A fine-tuned
Azure model must be deployed before it serves traffic; `serving()` says so.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from training.providers.base import JobInfo, ProviderRefused, Serving
from training.providers.openai import OpenAIOptions, OpenAITrainer, _sdk

DEFAULT_API_VERSION = "2025-04-01-preview"
# Base models Azure OpenAI offers for fine-tuning (regional availability varies; `models:` overrides).
AZURE_FINE_TUNABLE = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-2025-04-14",
                      "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14", "gpt-35-turbo-0125")


class AzureTrainer(OpenAITrainer):
    def offered(self) -> tuple[str, ...]:
        return self.options.models or AZURE_FINE_TUNABLE

    def serving(self, job: JobInfo) -> Serving | None:
        if not job.fine_tuned_model:
            return None
        return Serving(model=job.fine_tuned_model, upstream=self.options.upstream,
                       command=f"deploy {job.fine_tuned_model} on your Azure OpenAI resource (portal or "
                               f"`az cognitiveservices account deployment create --model-name {job.fine_tuned_model}"
                               f" --model-format OpenAI --sku-name standard`), then route to the deployment name")


def make_azure(
    *,
    endpoint: str | None = None,
    api_key: str | None = None,
    api_key_env: str | None = None,
    api_version: str | None = None,
    http_client: httpx.Client | None = None,
    max_retries: int = 3,
    options: OpenAIOptions | None = None,
) -> AzureTrainer:
    endpoint = endpoint or os.environ.get("AZURE_OPENAI_ENDPOINT")
    key_env = api_key_env or "AZURE_OPENAI_API_KEY"
    api_key = api_key or os.environ.get(key_env)
    missing = [n for n, v in (("endpoint (training.providers.<name>.base_url or AZURE_OPENAI_ENDPOINT)", endpoint),
                              (f"API key (${key_env})", api_key)) if not v]
    if missing:
        raise ProviderRefused("azure: no credentials: missing " + " and ".join(missing))
    kw: dict[str, Any] = {"azure_endpoint": endpoint, "api_key": api_key, "max_retries": max_retries,
                          "api_version": api_version or os.environ.get("OPENAI_API_VERSION") or DEFAULT_API_VERSION}
    # plain httpx (like the Together provider), so one transport stack serves every hosted provider
    kw["http_client"] = http_client or httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0))
    return AzureTrainer(_sdk().AzureOpenAI(**kw), options or OpenAIOptions(), name="azure")
