"""`abgate models add-arm` prices a candidate at its own rate (seed 003: a fine-tune costs more than its base)."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from abgate.cli.main import app
from gateway.config import parse_yaml
from gateway.config_store import FileConfigStore
from training.registry import Registry

ROUTER = """
routes:
  analyst:
    experiment: analyst-1
    arms:
      - {name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}
upstreams:
  openai: {base_url: "http://127.0.0.1:9/v1"}
models:
  gpt-4o-mini-2024-07-18: {upstream: openai, input_per_mtok: 0.15, output_per_mtok: 0.60}
"""
FT = "ft:gpt-4o-mini-2024-07-18:sigmasight:v1:abc123"


def _store(state: Path) -> FileConfigStore:
    store = FileConfigStore(state)
    store.put(parse_yaml(ROUTER), expected_version=None, author="t", reason="init")
    return store


def test_fine_tuned_openai_model_gets_the_fine_tuned_rate(tmp_path: Path) -> None:
    store = _store(tmp_path)
    r = CliRunner().invoke(app, ["models", "add-arm", "analyst", FT, "--state-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    info = store.current().config.models[FT]
    # OpenAI bills a fine-tuned gpt-4o-mini at 2x the base rate: $0.30 / $1.20 per 1M tokens
    assert (info.upstream, info.input_per_mtok, info.output_per_mtok) == ("openai", 0.30, 1.20)


def test_explicit_prices_win_and_unknown_models_say_so(tmp_path: Path) -> None:
    store = _store(tmp_path)
    runner = CliRunner()
    r = runner.invoke(app, ["models", "add-arm", "analyst", "acme/llama-ft", "--input-per-mtok", "0.5",
                            "--output-per-mtok", "0.9", "--state-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    info = store.current().config.models["acme/llama-ft"]
    assert (info.input_per_mtok, info.output_per_mtok) == (0.5, 0.9)
    r = runner.invoke(app, ["models", "add-arm", "analyst", "acme/other-ft", "--state-dir", str(tmp_path)])
    assert r.exit_code == 0 and "no price known for acme/other-ft" in " ".join(r.output.split())


def test_registry_serving_adds_the_hosted_upstream(tmp_path: Path) -> None:
    store = _store(tmp_path)
    with Registry(tmp_path) as reg:
        reg.register_model(tenant="default", model_id="acme/Llama-3.1-8B-ft-0001", base_model="meta-llama/x",
                           examples=50, dataset_id=None, run_id=None, provider="together", serving={
                               "model": "acme/Llama-3.1-8B-ft-0001", "upstream": "together",
                               "upstream_base_url": "https://api.together.xyz/v1",
                               "upstream_api_key_env": "TOGETHER_API_KEY", "input_per_mtok": 0.2,
                               "output_per_mtok": 0.2})
    r = CliRunner().invoke(app, ["models", "add-arm", "analyst", "acme/Llama-3.1-8B-ft-0001", "--state-dir",
                                 str(tmp_path)])
    assert r.exit_code == 0, r.output
    cfg = store.current().config
    assert cfg.upstreams["together"].base_url == "https://api.together.xyz/v1"
    assert cfg.upstreams["together"].api_key_env == "TOGETHER_API_KEY"
    assert cfg.models["acme/Llama-3.1-8B-ft-0001"].upstream == "together"
