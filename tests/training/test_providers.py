"""One suite, every provider: the same CLI lifecycle and refusals against each Trainer implementation.

- openai: the simulator's fine-tuning API as a real process on loopback (end to end over HTTP);
- azure: the AzureOpenAI client against a respx stand-in of Azure's documented shapes;
- together: Together AI's documented REST shapes under respx;
- hf-lora: a real TRL + PEFT LoRA run on the CPU with a tiny model built here from a config
  (its own promises, the adapter and the serving config, are `test_hf_lora.verify_trained`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import respx
from typer.testing import CliRunner

from abgate.cli.main import app
from tests.support import http
from tests.support.procs import start_simulator
from tests.training.fakes import (
    AZURE_ENDPOINT,
    TOGETHER_BASE,
    TOGETHER_MODEL,
    FakeAPI,
    mock_azure,
    mock_together,
    write_dataset,
)
from tests.training.test_hf_lora import verify_trained
from training.providers.base import STATUSES
from training.registry import Registry

PROVIDERS = ("openai", "azure", "together", "hf-lora")
ENV_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_KEY",
            "OPENAI_API_VERSION", "TOGETHER_API_KEY", "TOGETHER_BASE_URL", "ABGATE_FINETUNE_PROVIDER")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("trl")
    from training.providers.tiny_model import _texts, build

    root = tmp_path_factory.mktemp("tiny")
    data = write_dataset(root / "corpus.jsonl")
    return build(root / "tiny-llama", _texts([data]))


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = start_simulator(tmp_path_factory.mktemp("sim"), "--ft-seconds", "1")
    try:
        yield base
    finally:
        proc.stop()


@dataclass
class Harness:
    provider: str
    model: str
    state: Path
    uploads: Callable[[], int]
    env: dict[str, str] = field(default_factory=dict)
    # what this provider promises beyond the shared checks, given (state, run, model version, CLI output)
    verify: Callable[[Path, dict[str, Any], dict[str, Any], str], None] | None = None


@pytest.fixture(params=PROVIDERS)
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    state = tmp_path / "state"
    name = request.param
    with contextlib.ExitStack() as stack:
        if name == "openai":

            base = request.getfixturevalue("simulator")
            env = {"OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEY": "sk-sim"}
            h = Harness(name, "gpt-4o-mini-2024-07-18", state, env=env,
                        uploads=lambda: len(http.get(f"{base}/v1/files").json()["data"]))
        elif name == "azure":
            api = FakeAPI()
            mock_azure(stack.enter_context(respx.mock(assert_all_called=False)), api)
            env = {"AZURE_OPENAI_ENDPOINT": AZURE_ENDPOINT, "AZURE_OPENAI_API_KEY": "az-key",
                   "OPENAI_API_VERSION": "2025-04-01-preview"}
            h = Harness(name, "gpt-4o-mini-2024-07-18", state, env=env, uploads=lambda: len(api.uploads))
        elif name == "together":
            api = FakeAPI()
            mock_together(stack.enter_context(respx.mock(assert_all_called=False)), api)
            env = {"TOGETHER_API_KEY": "tg-test-key", "TOGETHER_BASE_URL": TOGETHER_BASE}
            h = Harness(name, TOGETHER_MODEL, state, env=env, uploads=lambda: len(api.uploads))
        else:
            model = request.getfixturevalue("tiny_model")
            files = state / "hf-lora" / "files"
            h = Harness(name, str(model), state, uploads=lambda: len(list(files.glob("*"))) if files.is_dir() else 0,
                        verify=lambda st, run, mv, out: verify_trained(st, run, mv, out, model))
        for k, v in h.env.items():
            monkeypatch.setenv(k, v)
        yield h


def cli(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.output


def test_launch_wait_registers_a_model_version(harness: Harness, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "train.jsonl")
    code, out = cli("finetune", "launch", str(data), "--provider", harness.provider, "--model", harness.model,
                    "--epochs", "1", "--batch-size", "4", "--suffix", "intents", "--wait", "--poll", "0.2",
                    "--state-dir", str(harness.state))
    assert code == 0, out
    assert "succeeded" in out
    with Registry(harness.state) as reg:
        (run,) = reg.runs()
        (mv,) = reg.model_versions()
    assert run["provider"] == harness.provider and run["status"] == "succeeded"
    assert run["provider_job_id"] and run["base_model"] == harness.model
    assert run["hyperparameters"]["n_epochs"] == 1 and run["hyperparameters"]["batch_size"] == 4
    assert run["dataset_version"] == hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    assert run["dataset_name"] == "train.jsonl"
    assert run["started_at"] and run["finished_at"] and run["started_at"] <= run["finished_at"]
    assert (run["trained_tokens"] or 0) > 0 or (run["gpu_seconds"] or 0) > 0
    assert mv["provider"] == harness.provider and mv["model_id"] == run["result_model"] and mv["examples"] == 12
    if harness.verify is not None:
        harness.verify(harness.state, run, mv, out)
    job = run["provider_job_id"]

    code, out = cli("finetune", "events", job, "--json", "--state-dir", str(harness.state))
    assert code == 0, out
    events = json.loads(out)
    assert events and [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)
    code, out = cli("finetune", "status", job, "--json", "--state-dir", str(harness.state))
    assert code == 0 and json.loads(out)["job"]["status"] == "succeeded" and json.loads(out)["job"]["status"] in STATUSES
    code, out = cli("finetune", "list", "--provider", harness.provider, "--json", "--state-dir", str(harness.state))
    assert code == 0, out
    assert job in [x["job"]["id"] for x in json.loads(out)]
    code, out = cli("finetune", "runs", "--json", "--state-dir", str(harness.state))
    assert json.loads(out)[0]["provider"] == harness.provider


def test_cancel(harness: Harness, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "train.jsonl")
    code, out = cli("finetune", "launch", str(data), "--provider", harness.provider, "--model", harness.model,
                    "--epochs", "3", "--json", "--state-dir", str(harness.state))
    assert code == 0, out
    job = json.loads(out)["job_id"]
    code, out = cli("finetune", "cancel", job, "--json", "--state-dir", str(harness.state))
    assert code == 0, out
    assert json.loads(out)["job"]["status"] == "cancelled"
    with Registry(harness.state) as reg:
        (run,) = reg.runs()
    assert run["status"] == "cancelled" and run["finished_at"]


@pytest.mark.parametrize(("args", "reason"), [
    (["--model", "no-such-base-model"], "no-such-base-model"),
    (["--epochs", "500"], "n_epochs must be within 1.."),
])
def test_refused_before_anything_is_uploaded(harness: Harness, tmp_path: Path, args: list[str], reason: str) -> None:
    data = write_dataset(tmp_path / "train.jsonl")
    before = harness.uploads()  # the simulator is shared by the module's tests
    argv = ["finetune", "launch", str(data), "--provider", harness.provider, "--state-dir", str(harness.state)]
    if "--model" not in args:
        argv += ["--model", harness.model]
    code, out = cli(*argv, *args)
    assert code == 1, out
    flat = " ".join(out.split())  # wrapped at the console width
    assert "refused" in flat and reason in flat
    assert harness.uploads() == before
    with Registry(harness.state) as reg:
        assert reg.runs() == []


def test_missing_credentials_are_refused(harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if harness.provider == "hf-lora":
        pytest.skip("self-hosted: no credentials (its missing prerequisites are the model dir and the train extra)")
    for var in harness.env:
        monkeypatch.delenv(var)
    data = write_dataset(tmp_path / "train.jsonl")
    before = harness.uploads()
    code, out = cli("finetune", "launch", str(data), "--provider", harness.provider, "--model", harness.model,
                    "--state-dir", str(harness.state))
    assert code == 1 and "no credentials" in out, out
    assert harness.uploads() == before


def test_unknown_provider(tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "train.jsonl")
    code, out = cli("finetune", "launch", str(data), "--provider", "sagemaker", "--state-dir", str(tmp_path / "s"))
    assert code == 1
    assert "unknown fine-tuning provider 'sagemaker'" in out and "hf-lora" in out and "together" in out
