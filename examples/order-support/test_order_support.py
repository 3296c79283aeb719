"""Seed 002 end to end against the real simulator and a real gateway process (see README.md).

samples -> dataset build (approved + rubric >= 4) -> validate (>= 500) -> export -> fine-tune
(refused under 500) -> 50/50 A/B config -> live traffic through the gateway (split ~50/50,
gate HOLD: too early) -> 14-day replay -> gate GO -> promote.
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

from tests.support.procs import start_gateway, start_simulator  # noqa: E402
from tests.support.scripts import run_script  # noqa: E402

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROUTE = "order-support"


def abgate(*args: str) -> Result:
    """The same argv a user types after `abgate` (in-process: the CLI's start-up is most of a run)."""
    return CliRunner().invoke(app, list(args))


def script(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python examples/order-support/NAME ARGS` in-process (its main(argv)); stdout/stderr captured."""
    return run_script(HERE / name, *args)


def with_upstream(src: Path, dst: Path, sim: str, ft_model: str | None = None) -> Path:
    """What the README does with sed: point `sim` at this simulator, fill in the fine-tuned model id."""
    text = src.read_text().replace("http://127.0.0.1:8900", sim)
    if ft_model is not None:
        text = text.replace("FT_MODEL", ft_model)
    dst.write_text(text)
    return dst


def test_order_support_workflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sim_proc, sim = start_simulator(tmp_path, "--ft-seconds", "0.5")
    gw_proc = None
    try:
        state = tmp_path / "state"
        monkeypatch.setenv("ABGATE_HOME", str(state))
        monkeypatch.setenv("OPENAI_BASE_URL", f"{sim}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-simulator")

        # 0. production today: every customer on the base model
        router = with_upstream(HERE / "router.yaml", tmp_path / "router.yaml", sim)
        r = abgate("config", "set", str(router), "--reason", "production: base model only")
        assert r.exit_code == 0, r.output

        # 1. the approved/reviewed samples export, then the seed's filter
        samples = tmp_path / "samples.jsonl"
        g = script("generate_samples.py", "--out", str(samples), "--n", "1400", "--seed", "2")
        assert g.returncode == 0, g.stderr
        rows = [json.loads(line) for line in samples.read_text().splitlines()]
        r = abgate("dataset", "build", "--name", "order-support-v1", "--from-file", str(samples), "--approved-only",
                   "--rubric-min", "4", "--split", "0.9,0.1,0", "--json")
        assert r.exit_code == 0, r.output
        built = json.loads(r.stdout)
        ds = built["dataset_id"]
        assert built["filtered_out"]["not approved"] == sum(1 for x in rows if not x["approved"])
        keep = {x["id"] for x in rows if x["approved"] and x.get("review")
                and all(x["review"][k] >= 4 for k in ("overall", "factuality", "helpfulness", "tone", "policy",
                                                      "completeness"))}
        with Registry(state) as reg:
            stored = reg.examples(dataset_id=ds)
        # exactly the approved, human-reviewed rows with every score >= 4 (minus near-duplicates)
        assert {e["source_id"] for e in stored} <= keep
        assert len(stored) == len(keep) - built["duplicates"]["exact"] - built["duplicates"]["near"]
        assert len(stored) >= 600 and all(e["validated"] for e in stored)
        # the seed's data requirements, checked on the sample pool
        req = {x["name"]: x for x in built["data_requirements"]}
        rate = sum(1 for x in rows if x["approved"]) / len(rows)
        assert req["approval rate > 90% of the pool"]["value"] == pytest.approx(rate, abs=1e-4)
        assert req["approval rate > 90% of the pool"]["status"] == ("pass" if rate > 0.9 else "warn")
        assert req["approval rate plateaued < 85% (signal to fine-tune)"]["status"] == ("yes" if rate < 0.85 else "no")
        assert req["1,000+ examples (ideal)"]["status"] == "warn"  # 500 minimum met, 1,000 ideal not
        # `quality_reviewed=false` rows never pass, whatever rubric scores they carry
        unreviewed = tmp_path / "unreviewed.jsonl"
        fives = {k: 5 for k in ("overall", "factuality", "helpfulness", "tone", "policy", "completeness")}
        unreviewed.write_text("".join(json.dumps({**x, "id": x["id"] + "-u", "quality_reviewed": False,
                                                  "review": fives}) + "\n" for x in rows[:30] if x["approved"]))
        r = abgate("dataset", "build", "--name", "unreviewed", "--from-file", str(unreviewed), "--approved-only",
                   "--rubric-min", "4", "--include-used", "--json")
        assert r.exit_code == 1 and json.loads(r.stdout)["filtered_out"] == {
            "quality_reviewed is false": sum(1 for x in rows[:30] if x["approved"])}

        # 2. export the OpenAI JSONL, validate with the seed's minimum, see the cost estimate
        train, val = tmp_path / "train.jsonl", tmp_path / "validation.jsonl"
        assert abgate("dataset", "export", ds, "--split", "train", "--out", str(train)).exit_code == 0
        assert abgate("dataset", "export", ds, "--split", "validation", "--out", str(val)).exit_code == 0
        n_train = len(train.read_text().splitlines())
        assert n_train >= 500
        line = json.loads(train.read_text().splitlines()[0])
        assert [m["role"] for m in line["messages"]] == ["system", "user", "assistant"]
        r = abgate("dataset", "validate", str(train), "--min-examples", "500", "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["examples"] == n_train, r.output
        r = abgate("dataset", "stats", str(train), "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["estimated_cost_usd"] > 0, r.output

        # 3. fine-tune: fewer than 500 examples is refused before any upload; the full set trains
        r = abgate("finetune", "launch", str(val), "--min-examples", "500")
        assert r.exit_code == 1 and "at least 500 are required" in r.output
        r = abgate("finetune", "launch", str(train), "--validation", str(val), "--model", "gpt-4o-mini-2024-07-18",
                   "--suffix", "order-support", "--min-examples", "500", "--dataset", ds, "--wait", "--poll", "0.2",
                   "--json")
        assert r.exit_code == 0, r.output
        with Registry(state) as reg:
            (run,) = reg.runs()
            (mv,) = reg.model_versions()
        assert run["status"] == "succeeded" and run["n_examples"] == n_train
        ft_model = mv["model_id"]
        assert ft_model.startswith("ft:gpt-4o-mini-2024-07-18:") and mv["dataset_id"] == ds

        # 4. start the 50/50 A/B test (a new config version and phase)
        ab = with_upstream(HERE / "router-ab.yaml", tmp_path / "router-ab.yaml", sim, ft_model)
        r = abgate("config", "set", str(ab), "--reason", "seed 002: start the 14-day 50/50 A/B")
        assert r.exit_code == 0, r.output
        route = FileConfigStore(state).current().config.routes[ROUTE]
        assert [(a.name, a.model, a.weight) for a in route.arms] == [
            ("control", "gpt-4o-mini-2024-07-18", 0.5), ("treatment", ft_model, 0.5)]

        # 5. live: simulated customers through the real gateway; the split is 50/50
        gw_proc, gw = start_gateway(tmp_path, ab, state)
        t = subprocess.run([sys.executable, "-m", "simulator.traffic", "--gateway", gw, "--route", ROUTE, "--users",
                            "400", "--requests", "600", "--seed", "5", "--json"], capture_output=True, text=True,
                           timeout=120, cwd=ROOT)
        assert t.returncode == 0, t.stderr
        live = json.loads(t.stdout)
        assert live["ok"] == 600 and live["feedback_errors"] == 0
        assert live["arms"]["treatment"]["models"] == [ft_model]
        assert live["arms"]["control"]["models"] == ["gpt-4o-mini-2024-07-18"]
        for arm in ("control", "treatment"):
            assert 0.4 <= live["arms"][arm]["requests"] / 600 <= 0.6
        # the fine-tuned model answers better for the same kind of questions
        assert live["arms"]["treatment"]["mean_quality"] > live["arms"]["control"]["mean_quality"]
        gw_proc.stop()  # SIGTERM: a graceful shutdown flushes the event queue to the archive
        assert "Application shutdown complete" in gw_proc.output()
        gw_proc = None
        r = abgate("analyze", "order-support-ft-1", "--json")
        assert r.exit_code == 0, r.output
        an = json.loads(r.stdout)
        units = {a["name"]: a["units"] for a in an["arms"]}
        assert 0.4 <= units["treatment"] / sum(units.values()) <= 0.6 and an["srm"]["p_value"] > 0.001
        # too early to decide: minutes of data, < 500 customers per arm
        r = abgate("gate", "--criteria", str(HERE / "criteria.yaml"), "--json")
        assert r.exit_code == 4, r.output
        assert json.loads(r.stdout)["verdict"] == "HOLD"

        # 6. the 14 days, replayed (simulated customers, simulator's answers and feedback)
        g = script("replay_ab.py", "--state-dir", str(state), "--users", "1400", "--per-user", "4", "--seed", "2")
        assert g.returncode == 0, g.stderr
        r = abgate("gate", "--criteria", str(HERE / "criteria.yaml"), "--json")
        assert r.exit_code == 0, r.output
        d = json.loads(r.stdout)
        assert d["verdict"] == "GO" and d["phase"] == route.phase
        assert all(a["units"] >= 500 for a in d["arms"]) and d["days"] >= 14
        verdicts = {m["metric"]: m["verdict"] for m in d["metrics"]}
        assert verdicts == {"approved": "met", "edited_response": "met", "csat": "met", "policy_violation": "ok",
                            "error": "ok"}

        # 7. promote, citing the decision
        r = abgate("promote", ROUTE, "--arm", "treatment", "--decision", d["decision_id"])
        assert r.exit_code == 0, r.output
        cur = FileConfigStore(state).current()
        assert cur.decision_id == d["decision_id"]
        assert {a.name: a.weight for a in cur.config.routes[ROUTE].arms} == {"control": 0.0, "treatment": 1.0}
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        sim_proc.stop()
