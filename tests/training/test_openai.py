"""The OpenAI provider's 2026 wind-down: recognised from the API, and past the last day refused before upload;
Azure OpenAI chosen by router configuration."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import httpx
import pytest
import respx

from gateway.config import ConfigError, parse_yaml
from tests.training.fakes import AZURE_ENDPOINT, FakeAPI, mock_azure, write_dataset
from training import providers, service
from training.providers.base import ProviderRefused
from training.providers.openai import OpenAIOptions, is_wind_down_refusal, make_openai
from training.registry import Registry

OFFICIAL = "https://api.openai.com/v1"


def _trainer(today: date):
    return make_openai(base_url=OFFICIAL, api_key="sk-test", http_client=httpx.Client(), max_retries=0,
                       options=OpenAIOptions(today=today))


@respx.mock
def test_the_api_refusal_names_the_other_providers(tmp_path: Path) -> None:
    respx.post(f"{OFFICIAL}/files").mock(return_value=httpx.Response(200, json={
        "id": "file-1", "object": "file", "bytes": 1, "created_at": 1, "filename": "t.jsonl", "purpose": "fine-tune",
        "status": "processed"}))
    respx.post(f"{OFFICIAL}/fine_tuning/jobs").mock(return_value=httpx.Response(403, json={"error": {
        "message": "Self-serve fine-tuning is no longer available for new organizations.",
        "type": "invalid_request_error", "code": None}}))
    with Registry(tmp_path) as reg, pytest.raises(ProviderRefused) as err:
        service.launch_file(_trainer(today=date(2026, 12, 2)), reg, write_dataset(tmp_path / "t.jsonl"),
                            model="gpt-4o-mini-2024-07-18")
    msg = str(err.value)
    assert "HTTP 403" in msg and "no longer available for new organizations" in msg
    assert "2026-05-07" in msg and "2027-01-06" in msg
    assert "--provider hf-lora" in msg and "--provider together" in msg and "--provider azure" in msg


@respx.mock
def test_after_the_last_day_nothing_is_uploaded(tmp_path: Path) -> None:
    upload = respx.post(f"{OFFICIAL}/files").mock(return_value=httpx.Response(500))
    with Registry(tmp_path) as reg:
        with pytest.raises(ProviderRefused, match="no new jobs after 2027-01-06.*today is 2027-01-07"):
            service.launch_file(_trainer(today=date(2027, 1, 7)), reg, write_dataset(tmp_path / "t.jsonl"),
                                model="gpt-4o-mini-2024-07-18")
        assert reg.runs() == []
    assert upload.call_count == 0


def test_other_errors_are_not_mistaken_for_the_wind_down() -> None:
    assert not is_wind_down_refusal(400, {"error": {"message": "File is not valid JSONL"}}, "")
    assert not is_wind_down_refusal(500, {"error": {"message": "fine-tuning is not available"}}, "")
    assert is_wind_down_refusal(400, {"error": {"code": "fine_tuning_unavailable", "message": "x"}}, "")


def test_azure_by_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACME_AZURE_KEY", "az-secret")
    cfg = parse_yaml(f"""
upstreams:
  openai: {{base_url: "https://api.openai.com/v1"}}
training:
  default_provider: azure-eu
  providers:
    azure-eu: {{type: azure, base_url: "{AZURE_ENDPOINT}", api_key_env: ACME_AZURE_KEY,
               api_version: "2025-04-01-preview"}}
""")
    api = FakeAPI()
    with respx.mock(assert_all_called=False) as router, Registry(tmp_path) as reg:
        mock_azure(router, api)
        trainer = providers.resolve(None, config=cfg, state_dir=tmp_path)
        launched = service.launch_file(trainer, reg, write_dataset(tmp_path / "t.jsonl"),
                                       model="gpt-4o-mini-2024-07-18", n_epochs=2)
        run = reg.run(launched.run_id)
    assert run["provider"] == "azure-eu" and launched.job.id.startswith("ftjob-az")
    req = next(r for r in api.requests if r.url.path == "/openai/files")
    assert req.headers["api-key"] == "az-secret" and req.url.params["api-version"] == "2025-04-01-preview"
    (job,) = api.jobs.values()  # created through `method.supervised.hyperparameters`
    assert job["hp"] == {"n_epochs": 2} and job["model"] == "gpt-4o-mini-2024-07-18"


def test_training_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as err:
        parse_yaml('upstreams: {o: {base_url: "http://x/v1"}}\ntraining: {providers: {x: {type: sagemaker}}}')
    assert err.value.field == "training.providers.x.type" and "sagemaker" in str(err.value)
    with pytest.raises(ConfigError, match="training.default_provider"):
        parse_yaml('upstreams: {o: {base_url: "http://x/v1"}}\ntraining: {default_provider: nope}')
    with pytest.raises(ConfigError, match="training.providers.lab.upstream"):
        parse_yaml('upstreams: {o: {base_url: "http://x/v1"}}\ntraining: {providers: {lab: {type: openai, '
                   'upstream: missing}}}')
