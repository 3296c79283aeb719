"""Seed 003's admin API mounted on a real `abgate serve` process, fine-tuning on the real simulator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.events import decode
from tests.conftest import write_config
from tests.support.procs import poll_until, start_gateway, start_simulator
from training.registry import Registry

pytestmark = pytest.mark.integration

ADMIN = "adm1n-t0ken"
CLIENT_KEY = "sk-acme-client"
SYS = "You are Order Support."
BASE = "gpt-4o-mini-2024-07-18"


def _examples(tenant: str, n: int, q10: float) -> list[dict]:
    return [{"source_id": f"{tenant}-{q10}-{i}", "tenant_id": tenant, "content_sha": f"{tenant}-{q10}-{i}",
             "quality10": q10, "validated": True, "status": "accepted", "split": "validation" if i % 5 == 4 else "train",
             "messages": [{"role": "system", "content": SYS},
                          {"role": "user", "content": f"{tenant}: where is order {1000 + i}?"},
                          {"role": "assistant", "content": f"Order {1000 + i} ships on day {i % 7}."}]}
            for i in range(n)]


def test_admin_export_and_fine_tune_on_a_real_gateway(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Registry(state) as reg:
        reg.create_dataset(tenant="acme", name="weekly", source="t",
                           examples=_examples("acme", 20, 8.0) + _examples("acme", 5, 5.0))
        reg.create_dataset(tenant="beta", name="other", source="t", examples=_examples("beta", 15, 9.0))
    sim, sim_base = start_simulator(tmp_path, "--ft-seconds", "1")
    gw = None
    try:
        extra = f"""
auth:
  admin_token_env: TR2_ADMIN_TOKEN
  keys:
    - {{sha256: "{hashlib.sha256(CLIENT_KEY.encode()).hexdigest()}", tenant: acme, routes: [support]}}
"""
        config = write_config(tmp_path / "router.yaml", sim_base, extra=extra)
        gw, base = start_gateway(tmp_path, config, state, env={"TR2_ADMIN_TOKEN": ADMIN})
        admin = {"Authorization": f"Bearer {ADMIN}"}
        with httpx.Client(base_url=base, timeout=30) as c:
            # admin token required: none, a wrong one, or a client key -> 401 in OpenAI's error shape
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {CLIENT_KEY}"}):
                r = c.get("/admin/export/jsonl", params={"min_quality": "7"}, headers=headers)
                assert r.status_code == 401, r.text
                assert r.json()["error"]["code"] == "invalid_admin_token"
                assert "admin token required" in r.json()["error"]["message"]
            assert c.post("/admin/fine-tune/create", json={"base_model": BASE}).status_code == 401
            assert c.get("/admin/fine-tune/models").status_code == 401

            # export: tenant-scoped, min_quality on the 1-10 scale, one OpenAI chat object a line
            r = c.get("/admin/export/jsonl", params={"min_quality": "7", "tenant": "acme", "split": "all"},
                      headers=admin)
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/jsonl")
            rows = [json.loads(line) for line in r.text.splitlines()]
            assert len(rows) == 20 == int(r.headers["x-abgate-examples"])
            assert all(set(x) == {"messages"} and x["messages"][1]["content"].startswith("acme:") for x in rows)
            everyone = c.get("/admin/export/jsonl", params={"min_quality": "5", "split": "all"},
                             headers=admin).text.splitlines()
            assert len(everyone) == 40
            beta = c.get("/admin/export/jsonl", params={"tenant": "beta", "split": "train"}, headers=admin)
            assert len(beta.text.splitlines()) == 12
            bad = c.get("/admin/export/jsonl", params={"min_quality": "high"}, headers=admin)
            assert bad.status_code == 400 and bad.json()["error"]["param"] == "min_quality"

            # fine-tune create: refused clearly when the curated set is too small
            small = c.post("/admin/fine-tune/create", headers=admin,
                           json={"base_model": BASE, "tenant": "acme", "min_quality_score": 9, "upstream": "sim"})
            assert small.status_code == 422 and small.json()["error"]["code"] == "dataset_invalid"
            unknown = c.post("/admin/fine-tune/create", headers=admin, json={"base_model": BASE, "epochs": 3})
            assert unknown.status_code == 400 and "epochs" in unknown.json()["error"]["message"]

            r = c.post("/admin/fine-tune/create", headers=admin, json={
                "base_model": BASE, "tenant": "acme", "min_quality_score": 7, "suffix": "support", "upstream": "sim",
                "hyperparameters": {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 2}})
            assert r.status_code == 201, r.text
            job = r.json()
            assert job["job_id"].startswith("ftjob") and job["n_examples"] == 16 and job["epochs"] == 2
            assert job["estimated_cost_usd"] > 0 and job["status"] in ("validating_files", "queued", "running")

            seen: list[str] = []
            last: dict[str, Any] = {}

            def terminal() -> bool:
                s = c.get(f"/admin/fine-tune/{job['job_id']}/status", params={"upstream": "sim"}, headers=admin)
                assert s.status_code == 200, s.text
                last.update(s.json())
                if not seen or seen[-1] != last["status"]:
                    seen.append(last["status"])
                return last["status"] in ("succeeded", "failed", "cancelled")

            poll_until(terminal, "the fine-tune to finish", timeout=30, interval=0.2)
            st = last
            assert st["status"] == "succeeded", (seen, st)
            assert st["run"]["status"] == "succeeded" and st["run"]["trained_tokens"] > 0
            model = st["fine_tuned_model"]
            assert model.startswith(f"ft:{BASE}") and "support" in model
            assert st["model_version"]["model_id"] == model and st["model_version"]["version"] == "v1"
            assert c.get("/admin/fine-tune/ftjob-nope/status", headers=admin).status_code == 404

            models = c.get("/admin/fine-tune/models", headers=admin).json()["data"]
            assert [(m["version"], m["model_id"], m["tenant_id"], m["examples"]) for m in models] == \
                [("v1", model, "acme", 16)]
            assert c.get("/admin/fine-tune/models", params={"tenant": "beta"}, headers=admin).json() == {"data": []}
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
    # every admin action is an audit event in the archive (flushed on graceful stop)
    audits = [decode(line) for p in sorted(state.glob("events/**/*.jsonl")) for line in p.read_text().splitlines()
              if '"kind":"audit"' in line]
    actions = [a.action for a in audits]
    assert actions.count("export_jsonl") == 3 and actions.count("finetune_create") == 1
