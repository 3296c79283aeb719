"""The model-migration workflow end to end against the real simulator and a real gateway (README.md).

retiring fine-tune in production (models check: exit 3) -> curated dataset -> candidates on the
replacement base model (plain, curated system prompt, dynamic few-shot) -> offline eval through the
gateway with pinned arms (plain and prompt-only: NO-GO, few-shot: GO) -> ramp with guardrails ->
online gate (GO) -> promote -> models check clean.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from abgate.cli.main import app
from gateway.config_store import FileConfigStore

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples are collected without the tests package on the path
    sys.path.insert(0, str(ROOT))

from tests.support import http  # noqa: E402
from tests.support.archive import archived_events  # noqa: E402
from tests.support.procs import Proc, abgate_cmd, free_port, poll_until, start_simulator, wait_http  # noqa: E402

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROUTE = "support"
FT = "ft:gpt-4o-mini-2024-07-18:acme:support:prod01"
CANDIDATES = ("luna", "luna-prompt", "luna-fewshot")


def abgate(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def ok(r: Result) -> Result:
    assert r.exit_code == 0, r.output
    return r


def traffic(gw: str, users: int, requests: int, seed: int) -> dict:
    t = subprocess.run([sys.executable, "-m", "simulator.traffic", "--gateway", gw, "--route", ROUTE, "--users",
                        str(users), "--requests", str(requests), "--seed", str(seed), "--json"],
                       capture_output=True, text=True, timeout=180, cwd=ROOT)
    assert t.returncode == 0, t.stderr
    return json.loads(t.stdout)


def wait_serving(gw: str, version: int) -> None:
    """The gateway polls the store (0.5 s): wait until it serves `version`."""
    poll_until(lambda: http.get(f"{gw}/admin/config").json()["version"] >= version, f"config v{version}",
               timeout=15, interval=0.1)


def wait_archived(state: Path, phase: int, n: int) -> None:
    def archived() -> bool:
        return sum(1 for e in archived_events(state) if e.get("kind") == "interaction" and e.get("phase") == phase
                   and e.get("traffic") == "live") >= n

    poll_until(archived, f"{n} interactions of phase {phase} archived", timeout=15, interval=0.1)


def current(state: Path):  # noqa: ANN201
    return FileConfigStore(state).current()


def test_model_migration_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_proc, sim = start_simulator(tmp_path, "--latency-ms", "30")
    gw_proc: Proc | None = None
    try:
        state = tmp_path / "state"
        monkeypatch.setenv("ABGATE_HOME", str(state))
        monkeypatch.setenv("OPENAI_BASE_URL", f"{sim}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-simulator")
        monkeypatch.delenv("ABGATE_ADMIN_TOKEN", raising=False)
        router = tmp_path / "router.yaml"
        router.write_text((HERE / "router.yaml").read_text().replace("http://127.0.0.1:8900", sim))

        # 0. production today: the fine-tune, which retires with its base model on 2027-01-14
        ok(abgate("config", "set", str(router), "--reason", "production: the fine-tune"))
        r = abgate("models", "check", "--days", "365", "--json")
        assert r.exit_code == 3, r.output
        (row,) = json.loads(r.stdout)["arms"]
        assert (row["arm"], row["model"], row["shutdown_date"], row["source"]) == (
            "production", FT, "2027-01-14", "config")

        # 1. the curated data: approved, reviewed answers -> dataset (train = few-shot pool, heldout = eval)
        samples = tmp_path / "samples.jsonl"
        g = subprocess.run([sys.executable, str(ROOT / "examples/order-support/generate_samples.py"), "--out",
                            str(samples), "--n", "900", "--seed", "4"], capture_output=True, text=True, timeout=60)
        assert g.returncode == 0, g.stderr
        built = json.loads(ok(abgate("dataset", "build", "--name", "support-gold", "--from-file", str(samples),
                                     "--approved-only", "--rubric-min", "4", "--split", "0.75,0,0.25",
                                     "--json")).stdout)
        ds = built["dataset_id"]
        heldout = tmp_path / "heldout.jsonl"
        ok(abgate("dataset", "export", ds, "--split", "heldout", "--out", str(heldout)))
        n_heldout = len(heldout.read_text().splitlines())
        assert n_heldout >= 100

        # 2. candidates on the replacement model, each a new arm at weight 0
        ok(abgate("models", "add-arm", ROUTE, "gpt-6-luna", "--arm-name", "luna"))
        ok(abgate("variants", "add", ROUTE, "--model", "gpt-6-luna", "--arm", "luna-prompt",
                  "--system-prompt-file", str(HERE / "system_prompt.txt")))
        fs = json.loads(ok(abgate("variants", "build-fewshot", ds, "--upstream", "sim", "--route", ROUTE, "--arm",
                                  "luna-fewshot", "--model", "gpt-6-luna", "--k", "4", "--system-prompt",
                                  (HERE / "system_prompt.txt").read_text().strip(), "--json")).stdout)
        assert fs["examples"] > 300 and fs["arm"] == "luna-fewshot"
        arms = {a.name: a for a in current(state).config.routes[ROUTE].arms}
        assert list(arms) == ["production", *CANDIDATES] and [a.weight for a in arms.values()] == [1, 0, 0, 0]
        variants = {row["arm"]: row["variant"] for row in json.loads(ok(abgate("variants", "show", "--json")).stdout)}

        # 3. offline: the held-out set through the gateway, one pinned arm at a time
        port = free_port()
        gw_proc = Proc(abgate_cmd("serve", "--state-dir", str(state), "--host", "127.0.0.1", "--port", str(port)),
                       log=tmp_path / "gateway.log").start()
        gw = f"http://127.0.0.1:{port}"
        wait_http(f"{gw}/readyz", gw_proc)
        for arm in ("production", *CANDIDATES):
            r = ok(abgate("eval", "run", "--dataset", str(heldout), "--via-gateway", gw, "--route", ROUTE, "--arm",
                          arm, "--name", f"off-{arm}", "--concurrency", "8", "--json"))
            assert json.loads(r.stdout)["n_ok"] == n_heldout
        pinned = [e for e in archived_events(state) if e.get("kind") == "interaction" and e.get("traffic") == "eval"]
        assert {e["arm"]: e["variant"] for e in pinned} == variants  # every answer names its variant
        assert all(e["fewshot"]["status"] == "ok" and len(e["fewshot"]["ids"]) == 4
                   for e in pinned if e["arm"] == "luna-fewshot")
        verdicts = {}
        for arm in CANDIDATES:
            r = abgate("eval", "gate", "--criteria", str(HERE / "criteria-offline.yaml"), "--candidate", f"off-{arm}",
                       "--json")
            verdicts[arm] = json.loads(r.stdout)["verdict"]
            assert r.exit_code == {"GO": 0, "NO-GO": 3, "HOLD": 4}[verdicts[arm]], r.output
        # plain gpt-6-luna and a better prompt alone lose key facts the fine-tune had; retrieved examples close the gap
        assert verdicts == {"luna": "NO-GO", "luna-prompt": "NO-GO", "luna-fewshot": "GO"}

        # 4. ramp with guardrails: 25% then 50% of customers on the few-shot variant
        steps = ("rollout", ROUTE, "--arm", "luna-fewshot", "--steps", "25,50", "--interval", "0s", "--criteria",
                 str(HERE / "guardrails.yaml"), "--once", "--json")
        st = json.loads(ok(abgate(*steps)).stdout)
        assert st["history"][-1]["action"] == "set_weight" and st["history"][-1]["weight"] == 0.25
        cur = current(state)
        wait_serving(gw, cur.version)
        live = traffic(gw, users=300, requests=450, seed=11)
        assert live["ok"] == 450 and live["feedback_errors"] == 0
        wait_archived(state, cur.config.routes[ROUTE].phase, 450)
        st = json.loads(ok(abgate(*steps)).stdout)
        assert [h["action"] for h in st["history"][-2:]] == ["check", "set_weight"], st["history"]
        assert st["history"][-1]["weight"] == 0.5

        # 5. the online gate on the 50/50 phase
        cur = current(state)
        wait_serving(gw, cur.version)
        live = traffic(gw, users=500, requests=900, seed=12)
        assert 0.4 <= live["arms"]["luna-fewshot"]["requests"] / 900 <= 0.6
        assert live["arms"]["luna-fewshot"]["models"] == ["gpt-6-luna"]
        phase = cur.config.routes[ROUTE].phase
        wait_archived(state, phase, 900)
        r = abgate("gate", "--criteria", str(HERE / "criteria-online.yaml"), "--json")
        d = json.loads(r.stdout)
        assert r.exit_code == 0 and d["verdict"] == "GO", r.output
        units = {a["name"]: a["units"] for a in d["arms"]}
        assert d["phase"] == phase and units["production"] >= 150 and units["luna-fewshot"] >= 150
        st = json.loads(ok(abgate(*steps)).stdout)
        assert st["status"] == "completed"

        # 6. promote before the shutdown date; the retiring model no longer carries traffic
        ok(abgate("promote", ROUTE, "--arm", "luna-fewshot", "--decision", d["decision_id"]))
        cur = current(state)
        assert {a.name: a.weight for a in cur.config.routes[ROUTE].arms} == {
            "production": 0.0, "luna": 0.0, "luna-prompt": 0.0, "luna-fewshot": 1.0}
        r = abgate("models", "check", "--days", "365", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["serving_traffic"] == 0, r.output
        wait_serving(gw, cur.version)
        resp = http.post(f"{gw}/v1/chat/completions", json={
            "model": ROUTE, "user": "customer-after", "messages": [{"role": "user", "content": "Where is my order 4411?"}]})
        assert resp.status_code == 200 and resp.headers["x-abgate-arm"] == "luna-fewshot"
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        sim_proc.stop()
        os.environ.pop("ABGATE_HOME", None)
