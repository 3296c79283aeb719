"""Seed 003 (SigmaSight) end to end against real simulator + gateway processes: feedback capture,
weekly curation, checklist, admin-API fine-tune with job monitoring, held-out eval, offline gate,
80/20 routing, version table, retrain triggers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:  # examples are collected without the tests package on the path
    sys.path.insert(0, str(ROOT))

from tests.support import http  # noqa: E402
from tests.support.procs import start_gateway, start_simulator  # noqa: E402
from tests.support.scripts import run_script  # noqa: E402

BASE = "gpt-4o-mini-2024-07-18"
ADMIN = "admin-secret-for-tests"
pytestmark = pytest.mark.integration


def _run(args: list[str], env: dict[str, str], cwd: Path, code: int | None = 0) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert code is None or res.returncode == code, f"{args[2:]} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
    return res


class _Result:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def _cli(env: dict[str, str]):  # noqa: ANN202
    """`abgate ...` in-process (CliRunner): the CLI's start-up is most of a subprocess run."""
    from typer.testing import CliRunner

    from abgate.cli.main import app

    def abg(*args: str, code: int | None = 0) -> _Result:
        r = CliRunner().invoke(app, list(args), env=env)
        assert code is None or r.exit_code == code, f"{args} -> {r.exit_code}\n{r.stdout}\n{r.stderr}\n{r.exception}"
        return _Result(r.exit_code, r.stdout, r.stderr)

    return abg


def _script(name: str, *args: str) -> None:
    """An example script's main() in-process (what `python examples/analyst-assistant/<name> ...` runs)."""
    r = run_script(HERE / name, *args)
    assert r.returncode == 0, r.stdout + r.stderr


def test_analyst_assistant_end_to_end(tmp_path: Path) -> None:
    state, data = tmp_path / "state", tmp_path / "data"
    sim, base = start_simulator(tmp_path, "--ft-seconds", "1.5", "--state-dir", str(tmp_path / "sim"))
    gw = None
    try:
        env = {"ABGATE_HOME": str(state), "OPENAI_BASE_URL": f"{base}/v1", "OPENAI_API_KEY": "sk-simulator",
               "ABGATE_ADMIN_TOKEN": ADMIN}
        abg = _cli(env)
        router = tmp_path / "router.yaml"
        router.write_text((HERE / "router.yaml").read_text().replace("https://api.openai.com/v1", f"{base}/v1"))
        gw, url = start_gateway(tmp_path, router, state, env=env)
        admin = {"Authorization": f"Bearer {ADMIN}"}

        # Phase 1: interactions + feedback (thumbs, edits, follow-ups) from simulated analysts
        _run([sys.executable, "-m", "simulator.traffic", "--gateway", url, "--route", "analyst", "--task", "analyst",
              "--users", "60", "--requests", "400", "--seed", "3"], env, tmp_path)
        # ... and the UI's own calls: one answer, thumbs up, an edit
        from simulator.tasks import ANALYST_SYSTEM_PROMPT  # noqa: PLC0415  (the app's system prompt)

        r = http.post(f"{url}/v1/chat/completions", json={"model": "analyst", "user": "ui-analyst", "messages": [
            {"role": "system", "content": ANALYST_SYSTEM_PROMPT},
            {"role": "user", "content": "What was NVDA's SBC in Q3?"}]}, timeout=10)
        assert r.status_code == 200
        iid = r.headers["x-abgate-interaction-id"]
        for metric, value in (("thumbs", 1), ("edited_response", "NVDA's SBC in Q3 was $1.4B (10-Q).")):
            fb = http.post(f"{url}/v1/feedback", json={"interaction_id": iid, "metric": metric, "value": value},
                            timeout=10)
            assert fb.status_code in (200, 201, 202), fb.text
        # the seed's curl as written (no header): 401, and the error says which header to send
        denied = http.get(f"{url}/admin/export/jsonl", params={"min_quality": 6}, timeout=10)
        assert denied.status_code == 401 and "Authorization: Bearer" in denied.json()["error"]["message"]

        # the sink writes in order: once the last feedback is archived, all the traffic before it is
        from tests.support.gateway_helpers import wait_events  # noqa: PLC0415

        wait_events(state, lambda e: e.get("kind") == "feedback" and e.get("metric") == "edited_response"
                    and e.get("interaction_id") == iid, timeout=30)

        # Phase 2: weekly curation over the last 7 days
        since = (datetime.now(UTC) - timedelta(days=6)).strftime("%Y-%m-%d")
        built = json.loads(abg("dataset", "build", "--name", "sigmasight-week-1", "--route", "analyst",
                               "--since", since, "--out", str(data), "--json").stdout)
        ds = built["dataset_id"]
        assert built["signals"].get("edited", 0) > 0 and built["examples"] >= 50
        decisions = tmp_path / "decisions.jsonl"
        _script("curate.py", ds, "--out", str(decisions), "--state-dir", str(state))
        rows = [json.loads(x) for x in decisions.read_text().splitlines()]
        sys.path.insert(0, str(HERE))
        from categories import CATEGORIES  # noqa: PLC0415
        assert {r["category"] for r in rows} <= set(CATEGORIES) and {r["action"] for r in rows} >= {"accept"}
        abg("dataset", "review", ds, "--decisions", str(decisions), "--reviewer", "analyst@sigmasight")
        # curation as the seed's SQL: no answer that had a follow-up; every kept example (also those
        # auto-accepted from reviewer feedback) in the seed's category table, none accepted with a 1-4 score
        from training.registry import Registry  # noqa: PLC0415

        with Registry(state) as reg:
            kept = [e for e in reg.examples(dataset_id=ds) if e["status"] == "accepted"]
        assert kept and {e["category"] for e in kept} <= set(CATEGORIES)
        assert all(e["quality10"] is None or e["quality10"] >= 5 for e in kept)
        listed = json.loads(abg("dataset", "examples", ds, "--json").stdout)
        assert len(listed) == built["examples"]
        # the same week again proposes nothing already curated (same interaction or same content)
        again = abg("dataset", "build", "--name", "sigmasight-week-1-again", "--route", "analyst", "--since", since,
                    "--json", code=None)
        rep = json.loads(again.stdout)
        assert rep["dataset_id"] is None and rep["examples"] == 0, rep["filtered_out"]

        # pre-training checklist on the exported training file
        exported = http.get(f"{url}/admin/export/jsonl", params={"min_quality": 6, "dataset_id": ds}, headers=admin,
                             timeout=30)
        assert exported.status_code == 200
        train = tmp_path / "training.jsonl"
        train.write_bytes(exported.content)
        n_export = int(exported.headers["x-abgate-examples"])
        assert n_export == len(exported.text.splitlines()) and n_export >= 10
        check = json.loads(abg("dataset", "validate", str(train), "--json", code=None).stdout)
        assert check["ok"], check
        items = {c["name"]: c for c in check["checklist"]}
        assert items["examples reviewed in the past 2 weeks"]["status"] == "pass"
        assert items["balanced across categories"]["status"] in ("pass", "warn")

        trig_before = {t["name"]: t for t in json.loads(abg("dataset", "triggers", "--route", "analyst",
                                                           "--min-new", "10", "--json").stdout)}
        assert trig_before["new quality examples"]["fired"]

        # Phase 3: fine-tune through the admin API, monitor with the CLI
        created = http.post(f"{url}/admin/fine-tune/create", headers=admin, timeout=60, json={
            "base_model": BASE, "min_quality_score": 6, "dataset_id": ds, "suffix": "sigmasight-v1",
            "hyperparameters": {"n_epochs": 3}})
        assert created.status_code == 201, created.text
        job_id = created.json()["job_id"]
        assert created.json()["estimated_cost_usd"] > 0
        abg("finetune", "wait", job_id, "--poll", "0.3")
        events = json.loads(abg("finetune", "events", job_id, "--json").stdout)
        assert events and any("succeeded" in str(e).lower() or "complete" in str(e).lower() for e in events)
        status = http.get(f"{url}/admin/fine-tune/{job_id}/status", headers=admin, timeout=30).json()
        assert status["status"] == "succeeded"
        model = status["fine_tuned_model"]
        listed = http.get(f"{url}/admin/fine-tune/models", headers=admin, timeout=10).json()["data"]
        assert any(v["model_id"] == model for v in listed)

        # Phase 4: held-out eval (key facts, length ratio, similarity), compare, offline gate
        heldout = data / "eval.jsonl"
        _script("generate_eval.py", "--exclude", str(train), "--out", str(heldout))
        for name, m in (("base", BASE), ("finetuned", model)):
            abg("eval", "run", "--dataset", str(heldout), "--model", m, "--base-url", f"{base}/v1", "--name", name,
                "--scorers", "key_facts,length_ratio,similarity,latency")
        abg("eval", "compare", "base", "finetuned")
        decision = json.loads(abg("gate", "--criteria", str(HERE / "criteria.yaml"), "--json").stdout)
        assert decision["verdict"] == "GO", decision["reasons"]

        # Phase 5: 80% fine-tuned / 20% base
        abg("models", "add-arm", "analyst", model, "--arm-name", "finetuned")
        abg("promote", "analyst", "--arm", "finetuned", "--weight", "0.8", "--decision", decision["decision_id"])
        cfg = json.loads(abg("config", "show", "--json").stdout)
        weights = {a["name"]: a["weight"] for a in cfg["config"]["routes"]["analyst"]["arms"]}
        assert weights == {"control": pytest.approx(0.2), "finetuned": pytest.approx(0.8)}
        version = str(cfg["version"])
        arms: dict[str, int] = {}
        with httpx.Client(timeout=10) as c:
            for i in range(200):
                for _ in range(50):
                    r = c.post(f"{url}/v1/chat/completions", json={"model": "analyst", "user": f"analyst-{i}",
                               "messages": [{"role": "user", "content": "What was AAPL's revenue in Q2?"}]})
                    if r.headers.get("x-abgate-config-version") == version:
                        break
                    time.sleep(0.1)  # hot reload of the promoted config
                arms[r.headers["x-abgate-arm"]] = arms.get(r.headers["x-abgate-arm"], 0) + 1
        assert 0.7 <= arms.get("finetuned", 0) / 200 <= 0.9, arms

        # version table and retrain triggers after training
        versions = json.loads(abg("models", "list", "--json").stdout)
        assert [v["model_id"] for v in versions] == [model] and versions[0]["examples"] == created.json()["n_examples"] <= n_export
        trig_after = {t["name"]: t for t in json.loads(abg("dataset", "triggers", "--route", "analyst",
                                                          "--min-new", "10", "--json").stdout)}
        assert not trig_after["new quality examples"]["fired"]
        assert not trig_after["system prompt changed"]["fired"]
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
