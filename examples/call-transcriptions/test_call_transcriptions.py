"""Seed 004 end to end against the real simulator process (see README.md), for two tenants.

transcriptions (CSV + JSONL) -> per-tenant dataset (confidence >= 0.8, > 20 chars, up to N)
-> quality scores 0-1 + validation -> export JSONL (tenant-isolated) -> cost estimate ->
launch with hyperparameters -> status -> runs log -> model versions -> use the model.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from abgate.cli.main import app
from gateway.config_store import FileConfigStore
from training.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # examples are collected without the tests package on the path
    sys.path.insert(0, str(ROOT))

from tests.support import http  # noqa: E402
from tests.support.procs import start_gateway, start_simulator  # noqa: E402
from tests.support.scripts import run_script  # noqa: E402

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
TENANTS = ("acme", "globex")
HYPER = {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.0}


def abgate(*args: str) -> Result:
    """The same argv a user types after `abgate` (in-process: the CLI's start-up is most of a run)."""
    return CliRunner().invoke(app, list(args))


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python examples/call-transcriptions/NAME ARGS` in-process (its main(argv)); output captured."""
    return run_script(HERE / name, *args)


def lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


def test_call_transcriptions_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_proc, sim = start_simulator(tmp_path, "--ft-seconds", "0.5")
    try:
        state = tmp_path / "state"
        monkeypatch.setenv("ABGATE_HOME", str(state))
        for var in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):  # the config's `sim` upstream is the only provider
            monkeypatch.delenv(var, raising=False)
        router = tmp_path / "router.yaml"
        router.write_text((HERE / "router.yaml").read_text().replace("http://127.0.0.1:8900", sim))
        assert abgate("config", "set", str(router), "--reason", "tenants acme and globex").exit_code == 0

        calls_jsonl, calls_csv = tmp_path / "calls.jsonl", tmp_path / "calls.csv"
        g = script("generate_calls.py", "--jsonl", str(calls_jsonl), "--csv", str(calls_csv), "--tenants",
                   ",".join(TENANTS), "--per-tenant", "200", "--seed", "4")
        assert g.returncode == 0, g.stderr
        rows = {r["id"]: r for r in lines(calls_jsonl)}

        datasets: dict[str, str] = {}
        exports: dict[str, Path] = {}
        for tenant, source in zip(TENANTS, (calls_csv, calls_jsonl), strict=True):  # CSV for one, JSONL for the other
            # Step 1-2: a dataset per tenant, collected with confidence >= 0.8, > 20 chars, at most 100
            r = abgate("dataset", "build", "--name", "Customer Service Model v1", "--from-file", str(source),
                       "--tenant", tenant, "--min-confidence", "0.8", "--min-chars", "20", "--max", "100",
                       "--split", "1,0,0", "--json")
            assert r.exit_code == 0, r.output
            rep = json.loads(r.stdout)
            ds = datasets[tenant] = rep["dataset_id"]
            eligible = [x for x in rows.values() if x["tenant_id"] == tenant and x["confidence"] >= 0.8
                        and len(x["user_message"].strip()) > 20]
            assert rep["filtered_out"]["other tenant"] == sum(1 for x in rows.values() if x["tenant_id"] != tenant)
            assert len(eligible) > 100 and rep["examples"] == 100 and rep["over_max"] == len(eligible) - 100 - (
                rep["duplicates"]["exact"] + rep["duplicates"]["near"])
            with Registry(state) as reg:
                exs = reg.examples(dataset_id=ds)
            assert len(exs) == 100
            for e in exs:
                src = rows[e["source_id"]]
                assert src["tenant_id"] == tenant == e["tenant_id"]
                assert src["confidence"] >= 0.8 and len(src["user_message"]) > 20
                assert e["confidence"] == pytest.approx(src["confidence"])
                assert not e["validated"]  # collected, not yet reviewed

            # Step 3: quality scores 0-1, validated (by, at) when >= 0.85
            decisions = tmp_path / f"{tenant}-decisions.jsonl"
            s = script("score_examples.py", ds, "--out", str(decisions), "--state-dir", str(state))
            assert s.returncode == 0, s.stderr
            r = abgate("dataset", "review", ds, "--decisions", str(decisions), "--reviewer", f"reviewer@{tenant}")
            assert r.exit_code == 0, r.output
            with Registry(state) as reg:
                exs = reg.examples(dataset_id=ds)
            good = [e for e in exs if e["quality"] >= 0.85]
            assert all(0 <= e["quality"] <= 1 for e in exs) and 10 <= len(good) < len(exs)
            assert all(e["validated"] and e["validated_by"] == f"reviewer@{tenant}" and e["validated_at"]
                       for e in good)
            assert not any(e["validated"] for e in exs if e["quality"] < 0.85)
            # the seed's review query: examples with quality_score and validated, best first
            r = abgate("dataset", "examples", ds, "--json")
            listed = json.loads(r.stdout)
            assert [x["quality_score"] for x in listed] == sorted((e["quality"] for e in exs), reverse=True)
            assert {x["id"] for x in listed if x["validated"]} == {e["id"] for e in good}
            # the seed's `UPDATE ... SET validated = true WHERE quality_score >= 0.85`: already done, so 0 new
            r = abgate("dataset", "mark-validated", ds, "--min-quality-score", "0.85", "--json")
            assert json.loads(r.stdout)["newly_validated"] == 0 and json.loads(r.stdout)["validated"] == len(good)

            # Step 4: export the validated examples as OpenAI JSONL
            out = exports[tenant] = tmp_path / f"{tenant}.jsonl"
            r = abgate("dataset", "export", ds, "--validated-only", "--min-quality", "8.5", "--out", str(out))
            assert r.exit_code == 0, r.output
            exported = lines(out)
            assert len(exported) == len(good)
            assert {json.dumps(x["messages"]) for x in exported} == {json.dumps(e["messages"]) for e in good}

        # Tenants are isolated: A's export never holds B's examples, even when asked for B's dataset.
        brand = {"acme": "Acme", "globex": "Globex"}
        for tenant in TENANTS:
            other = next(t for t in TENANTS if t != tenant)
            text = exports[tenant].read_text(encoding="utf-8")
            assert brand[tenant] in text and brand[other] not in text
            r = abgate("dataset", "export", "--tenant", tenant, "--validated-only")
            assert r.exit_code == 0 and brand[other] not in r.stdout
            assert len(r.stdout.splitlines()) == len(lines(exports[tenant]))
            r = abgate("dataset", "export", datasets[other], "--tenant", tenant)
            assert r.exit_code == 1 and r.stdout.strip() == "" and f"belongs to tenant {other!r}" in r.output
        r = abgate("dataset", "list", "--tenant", "acme", "--json")
        assert [d["id"] for d in json.loads(r.stdout)] == [datasets["acme"]]

        # Cost estimate, then Step 5: launch with the seed's hyperparameters, wait, status
        jobs: dict[str, str] = {}
        for tenant in TENANTS:
            r = abgate("dataset", "stats", str(exports[tenant]), "--epochs", "3", "--json")
            assert r.exit_code == 0, r.output
            st = json.loads(r.stdout)
            assert st["epochs"] == 3 and st["billed_tokens"] == 3 * st["tokens"]["total"]
            assert st["estimated_cost_usd"] == pytest.approx(st["billed_tokens"] * 3.00 / 1e6)
            r = abgate("finetune", "launch", str(exports[tenant]), "--model", "gpt-4o-mini-2024-07-18", "--epochs",
                       "3", "--batch-size", "1", "--lr-mult", "1", "--suffix", f"{tenant}-cs", "--tenant", tenant,
                       "--dataset", datasets[tenant], "--upstream", "sim", "--wait", "--poll", "0.2", "--json")
            assert r.exit_code == 0, r.output
            out = json.loads(r.stdout)
            jobs[tenant] = out["job"]["id"]
            assert out["job"]["status"] == "succeeded" and out["job"]["hyperparameters"] == HYPER
            assert out["run"]["estimated_cost_usd"] == pytest.approx(st["estimated_cost_usd"])
            r = abgate("finetune", "status", jobs[tenant], "--upstream", "sim", "--json")
            assert r.exit_code == 0, r.output
            status = json.loads(r.stdout)
            assert status["job"]["status"] == "succeeded"
            assert status["job"]["fine_tuned_model"].startswith(f"ft:gpt-4o-mini-2024-07-18:abgate-sim:{tenant}-cs:")

        # Runs log (registry) and the provider's job list
        r = abgate("finetune", "runs", "--json")
        runs = json.loads(r.stdout)
        assert {x["tenant_id"] for x in runs} == set(TENANTS)
        for x in runs:
            assert x["status"] == "succeeded" and x["hyperparameters"] == HYPER
            assert x["dataset_id"] == datasets[x["tenant_id"]] and x["provider_job_id"] == jobs[x["tenant_id"]]
            assert x["trained_tokens"] > 0 and x["actual_cost_usd"] > 0 and x["finished_at"]
        r = abgate("finetune", "runs", "--tenant", "globex", "--json")
        assert [x["provider_job_id"] for x in json.loads(r.stdout)] == [jobs["globex"]]
        r = abgate("finetune", "list", "--upstream", "sim", "--json")
        assert {x["job"]["id"] for x in json.loads(r.stdout)} == set(jobs.values())

        # Serving is tenant-scoped too: a tenant's key reaches its own route only.
        gw_proc, gw = start_gateway(tmp_path, router, state)
        try:
            ask = {"messages": [{"role": "user", "content": "Can you track my order 123456, please?"}], "user": "c1"}
            ok = http.post(f"{gw}/v1/chat/completions", headers={"authorization": "Bearer sk-acme-demo"},
                            json={**ask, "model": "acme-support"}, timeout=10)
            assert ok.status_code == 200 and ok.headers["x-abgate-route"] == "acme-support"
            denied = http.post(f"{gw}/v1/chat/completions", headers={"authorization": "Bearer sk-acme-demo"},
                                json={**ask, "model": "globex-support"}, timeout=10)
            assert denied.status_code in (403, 404) and "message" in denied.json()["error"]
        finally:
            gw_proc.stop()

        # Step 6: each tenant's model version, added to that tenant's route only; the model answers
        for tenant in TENANTS:
            r = abgate("models", "list", "--tenant", tenant, "--json")
            (mv,) = json.loads(r.stdout)
            assert mv["dataset_id"] == datasets[tenant]
            r = abgate("models", "add-arm", f"{tenant}-support", mv["model_id"], "--arm-name", "fine-tuned")
            assert r.exit_code == 0, r.output
            resp = http.post(f"{sim}/v1/chat/completions", timeout=10, json={
                "model": mv["model_id"], "messages": [
                    {"role": "system", "content": f"You are the customer service assistant of {brand[tenant]}."},
                    {"role": "user", "content": "Can you track my order 123456, please?"}]})
            assert resp.status_code == 200 and resp.json()["model"] == mv["model_id"]
        routes = FileConfigStore(state).current().config.routes
        for tenant in TENANTS:
            arms = routes[f"{tenant}-support"].arms
            assert [a.name for a in arms] == ["control", "fine-tuned"] and arms[1].weight == 0.0
            assert f":{tenant}-cs:" in arms[1].model
    finally:
        sim_proc.stop()
