"""respx stand-ins for the fine-tuning APIs we cannot run here (Azure OpenAI, Together AI), and a training file.

Each follows the provider's documented request and response shapes and moves a job one status
forward per retrieve, so a `--wait` loop sees the whole lifecycle deterministically.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import respx

AZURE_ENDPOINT = "https://abgate-test.openai.azure.com"
TOGETHER_BASE = "https://together.test/v1"


def write_dataset(path: Path, n: int = 12) -> Path:
    path.write_text("".join(json.dumps({"messages": [
        {"role": "system", "content": "You classify intents."},
        {"role": "user", "content": f"Busco un regalo numero {i} para mi madre"},
        {"role": "assistant", "content": f"GIFT mid_range {i}"}]}) + "\n" for i in range(n)), encoding="utf-8")
    return path


@dataclass
class FakeAPI:
    uploads: list[bytes] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)


def _multipart_file(request: httpx.Request) -> bytes:
    body = request.content
    m = re.search(rb'name="file"; filename="[^"]*"\r\nContent-Type: [^\r]*\r\n\r\n(.*?)\r\n--', body, re.S)
    return m.group(1) if m else b""


# -- Azure OpenAI (the OpenAI fine-tuning API under {endpoint}/openai, `api-version` query) -------------

AZURE_FLOW = ("validating_files", "queued", "running", "succeeded")


def mock_azure(router: respx.MockRouter, api: FakeAPI, *, offered: tuple[str, ...] = ("gpt-4o-mini-2024-07-18",)
               ) -> None:
    base = f"{AZURE_ENDPOINT}/openai"

    def upload(request: httpx.Request) -> httpx.Response:
        api.requests.append(request)
        assert request.headers.get("api-key"), "Azure authenticates with the api-key header"
        assert "api-version" in request.url.params
        api.uploads.append(_multipart_file(request))
        return httpx.Response(200, json={"id": f"file-{len(api.uploads)}", "object": "file", "bytes": 1,
                                         "created_at": 1_700_000_000, "filename": "train.jsonl",
                                         "purpose": "fine-tune", "status": "processed"})

    def view(j: dict[str, Any]) -> dict[str, Any]:
        status = j["status"]
        done = status in ("succeeded", "failed", "cancelled")
        return {"id": j["id"], "object": "fine_tuning.job", "created_at": j["created_at"], "model": j["model"],
                "status": status, "training_file": j["training_file"], "validation_file": None, "result_files": [],
                "fine_tuned_model": f"{j['model']}.ft-{j['id'][6:]}" if status == "succeeded" else None,
                "finished_at": j["created_at"] + 60 if done else None,
                "trained_tokens": j["tokens"] if status == "succeeded" else None, "error": None, "seed": 1,
                "organization_id": "org", "estimated_finish": j["created_at"] + 60 if not done else None,
                "method": {"type": "supervised", "supervised": {"hyperparameters": j["hp"]}}}

    def create(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body["model"] not in offered:
            return httpx.Response(400, json={"error": {"message": f"model {body['model']} not supported"}})
        jid = f"ftjob-az{len(api.jobs) + 1:04d}"
        lines = api.uploads[int(body["training_file"].split("-")[1]) - 1].decode().splitlines()
        api.jobs[jid] = {"id": jid, "model": body["model"], "status": "validating_files", "created_at": 1_700_000_000,
                         "training_file": body["training_file"], "tokens": 40 * len(lines),
                         "hp": body["method"]["supervised"]["hyperparameters"]}
        return httpx.Response(200, json=view(api.jobs[jid]))

    def retrieve(request: httpx.Request, jid: str) -> httpx.Response:
        j = api.jobs.get(jid)
        if j is None:
            return httpx.Response(404, json={"error": {"message": f"no job {jid}"}})
        if j["status"] in AZURE_FLOW[:-1]:
            j["status"] = AZURE_FLOW[AZURE_FLOW.index(j["status"]) + 1]
        return httpx.Response(200, json=view(j))

    def events(request: httpx.Request, jid: str) -> httpx.Response:
        j = api.jobs[jid]
        evs = [{"id": f"ev-{jid}-0", "object": "fine_tuning.job.event", "created_at": j["created_at"], "level": "info",
                "message": "Created fine-tuning job"}]
        if j["status"] in ("running", "succeeded"):
            evs.append({"id": f"ev-{jid}-1", "object": "fine_tuning.job.event", "created_at": j["created_at"] + 10,
                        "level": "info", "message": "Fine-tuning job started"})
        if j["status"] == "succeeded":
            evs.append({"id": f"ev-{jid}-2", "object": "fine_tuning.job.event", "created_at": j["created_at"] + 60,
                        "level": "info", "message": "The job has successfully completed"})
        return httpx.Response(200, json={"object": "list", "has_more": False, "data": list(reversed(evs))})

    def cancel(request: httpx.Request, jid: str) -> httpx.Response:
        api.jobs[jid]["status"] = "cancelled"
        return httpx.Response(200, json=view(api.jobs[jid]))

    def listing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"object": "list", "has_more": False,
                                         "data": [view(j) for j in reversed(api.jobs.values())]})

    router.post(f"{base}/files").mock(side_effect=upload)
    router.post(f"{base}/fine_tuning/jobs").mock(side_effect=create)
    router.get(f"{base}/fine_tuning/jobs").mock(side_effect=listing)
    router.get(url__regex=rf"{re.escape(base)}/fine_tuning/jobs/(?P<jid>[^/?]+)/events").mock(side_effect=events)
    router.post(url__regex=rf"{re.escape(base)}/fine_tuning/jobs/(?P<jid>[^/?]+)/cancel").mock(side_effect=cancel)
    router.get(url__regex=rf"{re.escape(base)}/fine_tuning/jobs/(?P<jid>[^/?]+)(\?.*)?$").mock(side_effect=retrieve)


# -- Together AI --------------------------------------------------------------------------------------

TOGETHER_FLOW = ("pending", "queued", "running", "uploading", "completed")
TOGETHER_MODEL = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"


def mock_together(router: respx.MockRouter, api: FakeAPI) -> None:
    def auth(request: httpx.Request) -> httpx.Response | None:
        api.requests.append(request)
        if request.headers.get("authorization") != "Bearer tg-test-key":
            return httpx.Response(401, json={"error": {"message": "Invalid API key provided"}})
        return None

    def upload(request: httpx.Request) -> httpx.Response:
        if (bad := auth(request)) is not None:
            return bad
        assert b'name="purpose"\r\n\r\nfine-tune' in request.content and b'name="file_name"' in request.content
        api.uploads.append(_multipart_file(request))
        return httpx.Response(200, json={"id": f"file-tg-{len(api.uploads)}", "object": "file",
                                         "created_at": 1_700_000_000, "filename": "train.jsonl", "bytes": 10,
                                         "purpose": "fine-tune", "Processed": True, "FileType": "jsonl",
                                         "LineCount": 12})

    def limits(request: httpx.Request) -> httpx.Response:
        if (bad := auth(request)) is not None:
            return bad
        if request.url.params.get("model_name") != TOGETHER_MODEL:
            return httpx.Response(404, json={"error": {"message": "Model not found or not available for fine-tuning"}})
        return httpx.Response(200, json={
            "model_name": TOGETHER_MODEL, "max_num_epochs": 20, "max_learning_rate": 1.0, "min_learning_rate": 0,
            "max_seq_length": 8192, "full_training": {"max_batch_size": 96, "min_batch_size": 8},
            "lora_training": {"max_batch_size": 128, "min_batch_size": 1, "max_rank": 64,
                              "target_modules": ["q_proj", "v_proj"]}})

    def ts(offset: int) -> str:
        return f"2026-12-01T10:{offset // 60:02d}:{offset % 60:02d}Z"

    def view(j: dict[str, Any]) -> dict[str, Any]:
        done = j["status"] in ("completed", "cancelled", "error")
        started = TOGETHER_FLOW.index(j["status"]) >= 2 if j["status"] in TOGETHER_FLOW else j.get("ran", False)
        return {"id": j["id"], "status": j["status"], "model": j["model"], "training_file": j["training_file"],
                "model_output_name": f"acme/{j['model'].split('/')[-1]}-{j.get('suffix') or 'ft'}-{j['id'][3:]}",
                "created_at": ts(0), "started_at": ts(30) if started else None,
                "updated_at": ts(90) if done else ts(10), "n_epochs": j["n_epochs"], "batch_size": j["batch_size"],
                "learning_rate": j["learning_rate"], "token_count": 400, "total_price": 0,
                "training_type": j["training_type"], "events": []}

    def create(request: httpx.Request) -> httpx.Response:
        if (bad := auth(request)) is not None:
            return bad
        body = json.loads(request.content)
        assert body["training_type"]["type"] == "Lora" and body["training_method"] == {"method": "sft"}
        jid = f"ft-{len(api.jobs) + 1:04d}"
        api.jobs[jid] = {"id": jid, "status": "pending", "model": body["model"], "suffix": body.get("suffix"),
                         "training_file": body["training_file"], "n_epochs": body.get("n_epochs", 1),
                         "batch_size": body.get("batch_size", "max"), "learning_rate": body.get("learning_rate", 1e-5),
                         "training_type": body["training_type"]}
        return httpx.Response(200, json=view(api.jobs[jid]))

    def retrieve(request: httpx.Request, jid: str) -> httpx.Response:
        if (bad := auth(request)) is not None:
            return bad
        j = api.jobs.get(jid)
        if j is None:
            return httpx.Response(404, json={"error": {"message": f"fine-tune {jid} not found"}})
        if j["status"] in TOGETHER_FLOW[:-1]:
            j["status"] = TOGETHER_FLOW[TOGETHER_FLOW.index(j["status"]) + 1]
        return httpx.Response(200, json=view(j))

    def events(request: httpx.Request, jid: str) -> httpx.Response:
        j = api.jobs[jid]
        evs = [{"object": "fine-tune-event", "created_at": ts(0), "message": "Fine tune request created",
                "type": "job_pending", "level": None}]
        if view(j)["started_at"]:
            evs.append({"object": "fine-tune-event", "created_at": ts(30), "message": "Training started",
                        "type": "job_start", "level": "info"})
        if j["status"] == "completed":
            evs.append({"object": "fine-tune-event", "created_at": ts(90), "message": "Job finished",
                        "type": "job_complete", "level": "info"})
        return httpx.Response(200, json={"data": evs})

    def cancel(request: httpx.Request, jid: str) -> httpx.Response:
        api.jobs[jid]["status"] = "cancelled"
        return httpx.Response(200, json=view(api.jobs[jid]))

    def listing(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [view(j) for j in reversed(api.jobs.values())]})

    router.post(f"{TOGETHER_BASE}/files/upload").mock(side_effect=upload)
    router.get(f"{TOGETHER_BASE}/fine-tunes/models/limits").mock(side_effect=limits)
    router.post(f"{TOGETHER_BASE}/fine-tunes").mock(side_effect=create)
    router.get(f"{TOGETHER_BASE}/fine-tunes").mock(side_effect=listing)
    router.get(url__regex=rf"{re.escape(TOGETHER_BASE)}/fine-tunes/(?P<jid>ft-[^/]+)/events").mock(side_effect=events)
    router.post(url__regex=rf"{re.escape(TOGETHER_BASE)}/fine-tunes/(?P<jid>ft-[^/]+)/cancel").mock(side_effect=cancel)
    router.get(url__regex=rf"{re.escape(TOGETHER_BASE)}/fine-tunes/(?P<jid>ft-[^/]+)$").mock(side_effect=retrieve)
