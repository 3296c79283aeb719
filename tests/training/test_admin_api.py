"""Seed 003/004's admin API on the real simulator: a launch by dataset id trains only validated examples,
under the dataset's tenant, exactly the file the export returns; the runs log has the provider's times."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from litestar import Litestar, Response
from litestar.testing import TestClient

from gateway.errors import ApiError
from tests.support.procs import poll_until, start_simulator
from training.admin_api import handlers
from training.registry import Registry

BASE = "gpt-4o-mini-2024-07-18"


def _examples(n: int, *, validated: bool, split: str, start: int = 0) -> list[dict]:
    return [{"source_id": f"c{start + i}", "content_sha": f"h{start + i}", "quality": 0.9, "quality10": 9.0,
             "validated": validated, "status": "accepted" if validated else "pending", "split": split,
             "messages": [{"role": "system", "content": "You summarise support calls."},
                          {"role": "user", "content": f"Transcript {start + i}: the caller asks about invoice"},
                          {"role": "assistant", "content": f"Invoice question {start + i}, resolved."}]}
            for i in range(n)]


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.delenv("ABGATE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("ABGATE_FINETUNE_PROVIDER", raising=False)
    sim, base = start_simulator(tmp_path, "--ft-seconds", "2")
    monkeypatch.setenv("OPENAI_BASE_URL", f"{base}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-sim")

    def err(_req: object, exc: ApiError) -> Response[bytes]:
        return Response(content=exc.body(), status_code=exc.status, media_type="application/json")

    app = Litestar(route_handlers=handlers, exception_handlers={ApiError: err})
    app.state.runtime = SimpleNamespace(state_dir=tmp_path / "state", config=None, sink=None)
    try:
        with TestClient(app) as c:
            yield c
    finally:
        sim.stop()


def test_launch_by_dataset_id(client: TestClient, tmp_path: Path) -> None:
    with Registry(tmp_path / "state") as reg:
        ds = reg.create_dataset(tenant="globex", name="calls-week-48", source="calls", examples=[
            *_examples(30, validated=True, split="train"), *_examples(5, validated=True, split="validation", start=30),
            *_examples(5, validated=True, split="heldout", start=35),
            *_examples(60, validated=False, split="train", start=40)])
        unreviewed = reg.create_dataset(tenant="globex", name="raw", source="calls",
                                        examples=_examples(20, validated=False, split="train", start=200))

    export = client.get("/admin/export/jsonl", params={"dataset_id": ds})
    assert export.status_code == 200 and export.headers["x-abgate-examples"] == "30"
    assert export.headers["x-abgate-split"] == "train"

    r = client.post("/admin/fine-tune/create", json={"base_model": BASE, "dataset_id": ds,
                                                     "hyperparameters": {"n_epochs": 3}})
    assert r.status_code == 201, r.text
    job = r.json()
    # 30 validated train examples (not the 60 unreviewed, not the held-out), filed under the dataset's tenant
    assert job["n_examples"] == 30 and job["tenant"] == "globex" and job["provider"] == "openai"
    assert job["dataset_name"] == "calls-week-48"
    assert job["dataset_version"] == hashlib.sha256(export.content).hexdigest()[:16]  # the exported file, trained
    assert job["estimated_completion"] and job["estimated_completion"] > "2026"

    refused = client.post("/admin/fine-tune/create", json={"base_model": BASE, "dataset_id": ds, "tenant": "acme"})
    assert refused.status_code == 422 and "belongs to tenant 'globex'" in refused.json()["error"]["message"]
    none = client.post("/admin/fine-tune/create", json={"base_model": BASE, "dataset_id": unreviewed})
    assert none.status_code == 422 and "none is validated" in none.json()["error"]["message"]
    missing = client.post("/admin/fine-tune/create", json={"base_model": BASE, "dataset_id": "ds_nope"})
    assert missing.status_code == 404
    bad_model = client.post("/admin/fine-tune/create", json={"base_model": "llama-9", "dataset_id": ds})
    assert bad_model.status_code == 400 and "does not offer 'llama-9'" in bad_model.json()["error"]["message"]

    def status() -> dict[str, Any]:
        out: dict[str, Any] = client.get(f"/admin/fine-tune/{job['job_id']}/status").json()
        return out

    poll_until(lambda: status()["status"] in ("succeeded", "failed", "cancelled"), "the job to end", timeout=30,
               interval=0.2)
    st = status()
    assert st["status"] == "succeeded", st
    run = st["run"]
    assert run["tenant_id"] == "globex" and run["dataset_name"] == "calls-week-48"
    # the provider's own times: training started after validation/queueing, before it finished
    assert run["started_at"] and run["finished_at"] and run["started_at"] < run["finished_at"]
    globex = client.get("/admin/fine-tune/models", params={"tenant": "globex"}).json()["data"]
    assert [m["model_id"] for m in globex] == [st["fine_tuned_model"]]
    assert client.get("/admin/fine-tune/models", params={"tenant": "default"}).json()["data"] == []


def test_export_options(client: TestClient, tmp_path: Path) -> None:
    with Registry(tmp_path / "state") as reg:
        ds = reg.create_dataset(tenant="globex", name="d", source="t", examples=[
            *_examples(3, validated=True, split="train"), *_examples(2, validated=False, split="train", start=3),
            *_examples(1, validated=True, split="heldout", start=5)])
    q = {"dataset_id": ds}
    assert client.get("/admin/export/jsonl", params=q).headers["x-abgate-examples"] == "3"
    assert client.get("/admin/export/jsonl", params={**q, "validated_only": "false"}).headers[
        "x-abgate-examples"] == "5"
    assert client.get("/admin/export/jsonl", params={**q, "split": "all"}).headers["x-abgate-examples"] == "4"
    bad = client.get("/admin/export/jsonl", params={**q, "validated_only": "yes"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "validated_only"
