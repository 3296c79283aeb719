"""respx tests for every fine-tuning SDK call path, and the registry mapping of job states."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import respx

from training import service
from training.registry import Registry
from training.trainer import TrainerError, make_trainer, sync_run

BASE = "http://ft.test/v1"


def _job(status: str, **kw) -> dict:
    return {"id": "ftjob-1", "object": "fine_tuning.job", "created_at": 1700000000, "model": "gpt-4o-mini-2024-07-18",
            "status": status, "training_file": "file-train", "validation_file": None, "result_files": [],
            "fine_tuned_model": None, "finished_at": None, "trained_tokens": None, "error": None, "seed": 1,
            "organization_id": "org", "hyperparameters": {"n_epochs": 3, "batch_size": 1,
                                                          "learning_rate_multiplier": 2.0}, **kw}


def _dataset(path: Path, n: int = 12) -> Path:
    path.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": "You classify intents."},
        {"role": "user", "content": f"Busco un regalo número {i} para mi madre"},
        {"role": "assistant", "content": json.dumps({"intent_type": "GIFT", "budget_tier": "mid_range", "n": i})}]})
        + "\n" for i in range(n)))
    return path


@pytest.fixture
def trainer():
    return make_trainer(base_url=BASE, api_key="sk-test", http_client=httpx.Client(), max_retries=2)


@respx.mock
def test_launch_uploads_creates_with_method_and_records_run(tmp_path: Path, trainer) -> None:
    upload = respx.post(f"{BASE}/files").mock(return_value=httpx.Response(200, json={
        "id": "file-train", "object": "file", "bytes": 1, "created_at": 1, "filename": "t.jsonl",
        "purpose": "fine-tune", "status": "processed"}))
    create = respx.post(f"{BASE}/fine_tuning/jobs").mock(return_value=httpx.Response(200, json=_job("validating_files")))
    with Registry(tmp_path) as reg:
        launched = service.launch_file(trainer, reg, _dataset(tmp_path / "t.jsonl"), model="gpt-4o-mini-2024-07-18",
                                       suffix="intents", n_epochs=3, batch_size=1, learning_rate_multiplier=2.0)
        run = reg.run(launched.run_id)
    assert upload.call_count == 1 and b'name="purpose"' in upload.calls[0].request.content
    body = json.loads(create.calls[0].request.content)
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 2.0}}}
    assert "hyperparameters" not in body and body["suffix"] == "intents" and body["training_file"] == "file-train"
    assert run["status"] == "validating_files" and run["provider_job_id"] == "ftjob-1"
    assert run["estimated_tokens"] == launched.estimate.billed_tokens and launched.estimate.epochs == 3
    assert run["estimated_cost_usd"] == pytest.approx(launched.estimate.billed_tokens * 3.0 / 1e6)


@respx.mock
def test_refuses_invalid_or_small_dataset_before_any_upload(tmp_path: Path, trainer) -> None:
    upload = respx.post(f"{BASE}/files").mock(return_value=httpx.Response(500))
    with Registry(tmp_path) as reg:
        with pytest.raises(service.LaunchRefused, match="at least 500"):
            service.launch_file(trainer, reg, _dataset(tmp_path / "t.jsonl"), model="gpt-4o-mini-2024-07-18",
                                min_examples=500)
        bad = tmp_path / "bad.jsonl"
        bad.write_text(_dataset(tmp_path / "x.jsonl").read_text() + "{oops\n")
        with pytest.raises(service.LaunchRefused, match="line 13"):
            service.launch_file(trainer, reg, bad, model="gpt-4o-mini-2024-07-18")
        assert reg.runs() == []
    assert upload.call_count == 0


@respx.mock
def test_api_error_is_explained(tmp_path: Path, trainer) -> None:
    respx.post(f"{BASE}/files").mock(return_value=httpx.Response(
        400, json={"error": {"message": "File is not valid JSONL", "type": "invalid_request_error", "code": None}}))
    with Registry(tmp_path) as reg, pytest.raises(TrainerError, match="HTTP 400.*File is not valid JSONL"):
        service.launch_file(trainer, reg, _dataset(tmp_path / "t.jsonl"), model="gpt-4o-mini-2024-07-18")


@respx.mock
def test_rate_limit_is_retried(trainer) -> None:
    route = respx.get(f"{BASE}/fine_tuning/jobs/ftjob-1").mock(side_effect=[
        httpx.Response(429, headers={"retry-after-ms": "1"}, json={"error": {"message": "slow down"}}),
        httpx.Response(200, json=_job("running")),
    ])
    assert trainer.retrieve("ftjob-1").status == "running"
    assert route.call_count == 2


@respx.mock
def test_rate_limit_exhausted_gives_clear_error(trainer) -> None:
    respx.get(f"{BASE}/fine_tuning/jobs/ftjob-1").mock(return_value=httpx.Response(
        429, headers={"retry-after-ms": "1"}, json={"error": {"message": "Rate limit reached"}}))
    with pytest.raises(TrainerError, match="HTTP 429"):
        trainer.retrieve("ftjob-1")


def _launched_run(tmp_path: Path, trainer) -> None:
    respx.post(f"{BASE}/files").mock(return_value=httpx.Response(200, json={
        "id": "file-train", "object": "file", "bytes": 1, "created_at": 1, "filename": "t.jsonl",
        "purpose": "fine-tune", "status": "processed"}))
    respx.post(f"{BASE}/fine_tuning/jobs").mock(return_value=httpx.Response(200, json=_job("queued")))
    with Registry(tmp_path) as reg:
        service.launch_file(trainer, reg, _dataset(tmp_path / "t.jsonl"), model="gpt-4o-mini-2024-07-18",
                            suffix="intents")


@respx.mock
def test_failed_job_maps_error_into_registry(tmp_path: Path, trainer) -> None:
    _launched_run(tmp_path, trainer)
    respx.get(f"{BASE}/fine_tuning/jobs/ftjob-1").mock(return_value=httpx.Response(200, json=_job(
        "failed", finished_at=1700000100, error={"code": "invalid_training_file", "message": "line 3 is bad",
                                                 "param": "training_file"})))
    with Registry(tmp_path) as reg:
        run = sync_run(reg, trainer.retrieve("ftjob-1"))
        assert run["status"] == "failed" and "line 3 is bad" in run["error"] and run["finished_at"]
        assert reg.model_versions() == []


@respx.mock
def test_succeeded_job_registers_model_version_once(tmp_path: Path, trainer) -> None:
    _launched_run(tmp_path, trainer)
    respx.get(f"{BASE}/fine_tuning/jobs/ftjob-1").mock(return_value=httpx.Response(200, json=_job(
        "succeeded", finished_at=1700000100, trained_tokens=12_000,
        fine_tuned_model="ft:gpt-4o-mini-2024-07-18:acme:intents:abc")))
    events = respx.get(f"{BASE}/fine_tuning/jobs/ftjob-1/events").mock(return_value=httpx.Response(200, json={
        "object": "list", "has_more": False, "data": [
            {"id": "ev2", "object": "fine_tuning.job.event", "created_at": 20, "level": "info", "message": "done"},
            {"id": "ev1", "object": "fine_tuning.job.event", "created_at": 10, "level": "info", "message": "start"}]}))
    respx.get(f"{BASE}/fine_tuning/jobs").mock(return_value=httpx.Response(200, json={
        "object": "list", "has_more": False, "data": [_job("succeeded")]}))
    respx.post(f"{BASE}/fine_tuning/jobs/ftjob-1/cancel").mock(return_value=httpx.Response(200, json=_job("cancelled")))
    with Registry(tmp_path) as reg:
        for _ in range(2):
            run = sync_run(reg, trainer.retrieve("ftjob-1"))
        assert run["status"] == "succeeded" and run["trained_tokens"] == 12_000
        assert run["actual_cost_usd"] == pytest.approx(0.036)
        (mv,) = reg.model_versions()
        assert mv["version"] == "v1" and mv["model_id"].endswith(":abc") and mv["examples"] == 12
    assert [e.message for e in trainer.events("ftjob-1")] == ["start", "done"] and events.called
    assert [j.id for j in trainer.list()] == ["ftjob-1"]
    assert trainer.cancel("ftjob-1").status == "cancelled"


def test_without_mock_the_calls_really_go_out(trainer) -> None:
    # proves the respx tests above exercise real HTTP paths: unmocked, the host does not resolve
    with pytest.raises(TrainerError, match="cannot reach"):
        make_trainer(base_url="http://ft.invalid/v1", api_key="k", http_client=httpx.Client(),
                     max_retries=0).retrieve("ftjob-1")


def test_no_api_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(TrainerError, match="OPENAI_API_KEY"):
        make_trainer()
