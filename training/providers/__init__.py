"""Fine-tuning providers, one module each, behind `training.providers.base.Trainer`.

`resolve(name, ...)` picks one: a name from the router config's `training.providers`, else a
built-in type (openai, azure, hf-lora, together) with its defaults from the environment, else
`training.default_provider`, else openai. Every caller (CLI, admin API, service) goes through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config import RouterConfig, TrainingProvider
from training.providers.base import BUILTIN_PROVIDERS, ProviderRefused, Trainer

if TYPE_CHECKING:
    import httpx  # annotations only: `abgate serve` mounts these routes and never needs httpx

__all__ = ["BUILTIN_PROVIDERS", "ProviderRefused", "Trainer", "default_name", "entry_for", "provider_names", "resolve", "upstream_credentials"]

_BUILTIN: dict[str, TrainingProvider] = {
    "openai": TrainingProvider(type="openai"), "azure": TrainingProvider(type="azure"),
    "hf-lora": TrainingProvider(type="hf-lora"), "together": TrainingProvider(type="together"),
}
assert tuple(_BUILTIN) == BUILTIN_PROVIDERS


def provider_names(config: RouterConfig | None) -> list[str]:
    configured = list(config.training.providers) if config is not None else []
    return configured + [p for p in BUILTIN_PROVIDERS if p not in configured]


def default_name(config: RouterConfig | None) -> str:
    env = os.environ.get("ABGATE_FINETUNE_PROVIDER")
    if env:
        return env
    if config is not None and config.training.default_provider:
        return config.training.default_provider
    return "openai"


def entry_for(name: str, config: RouterConfig | None) -> TrainingProvider:
    if config is not None and name in config.training.providers:
        return config.training.providers[name]
    if name in _BUILTIN:
        return _BUILTIN[name]
    raise ProviderRefused(f"unknown fine-tuning provider {name!r} (known: {', '.join(provider_names(config))}; "
                          "add others under training.providers in the router config)")


def upstream_credentials(config: RouterConfig | None, name: str) -> tuple[str, str | None]:
    """(base URL, API key from its env var) of the router config's upstream `name`."""
    if config is None or name not in config.upstreams:
        known = ", ".join(config.upstreams) if config else "no config stored"
        raise ProviderRefused(f"unknown upstream {name!r} (known: {known})")
    up = config.upstreams[name]
    return up.base_url, os.environ.get(up.api_key_env) if up.api_key_env else None


def resolve(
    name: str | None = None,
    *,
    config: RouterConfig | None = None,
    state_dir: Path | None = None,
    upstream: str | None = None,
    http_client: httpx.Client | None = None,
) -> Trainer:
    """The trainer for `name` (see the module doc); `upstream` = OpenAI-compatible API of a config upstream."""
    if name is None and upstream is not None:
        name = "openai"
    name = name or default_name(config)
    entry = entry_for(name, config)
    trainer: Trainer
    if entry.type == "openai":
        from training.providers.openai import OpenAIOptions, make_openai

        up_name = upstream or entry.upstream
        base_url, api_key = entry.base_url, os.environ.get(entry.api_key_env) if entry.api_key_env else None
        if up_name is not None:
            up_url, up_key = upstream_credentials(config, up_name)
            base_url, api_key = base_url or up_url, api_key if api_key is not None else up_key
        trainer = make_openai(base_url=base_url, api_key=api_key, http_client=http_client, options=OpenAIOptions(
            models=entry.models, training_per_mtok=entry.training_per_mtok, upstream=up_name))
    elif entry.type == "azure":
        from training.providers.azure import make_azure
        from training.providers.openai import OpenAIOptions

        trainer = make_azure(endpoint=entry.base_url, api_key_env=entry.api_key_env, api_version=entry.api_version,
                             http_client=http_client, options=OpenAIOptions(
                                 models=entry.models, training_per_mtok=entry.training_per_mtok,
                                 upstream=entry.upstream))
    elif entry.type == "together":
        from training.providers.together import make_together

        trainer = make_together(base_url=entry.base_url, api_key_env=entry.api_key_env, http_client=http_client,
                                models=entry.models, training_per_mtok=entry.training_per_mtok,
                                lora_r=entry.lora_r, lora_alpha=entry.lora_alpha, upstream=entry.upstream)
    else:
        from training.providers.hf_lora import HFLoraOptions, HFLoraTrainer

        if state_dir is None and entry.output_dir is None:
            raise ProviderRefused("hf-lora needs a state directory or training.providers.<name>.output_dir")
        root = (Path(entry.output_dir).expanduser() if entry.output_dir else (state_dir or Path()) / "hf-lora").resolve()
        trainer = HFLoraTrainer(HFLoraOptions(
            root=root, lora_r=entry.lora_r, lora_alpha=entry.lora_alpha, max_seq_length=entry.max_seq_length,
            launcher=entry.launcher, num_processes=entry.num_processes, serve_base_url=entry.serve_base_url,
            serve_upstream=entry.serve_upstream, gpu_hour_usd=entry.gpu_hour_usd, models=entry.models))
    trainer.name = name
    return trainer
