"""`abgate analyze|gate|promote|rollback|rollout` on a generated archive.

In-process (typer's runner) except one real process: the exit code a cron job or CI step sees."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from evaluation import synth
from gateway import config as cfgmod
from gateway.config_store import FileConfigStore

pytestmark = pytest.mark.integration

CONFIG = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: base, weight: 0.5}
      - {name: treatment, model: "ft:base:x", weight: 0.5}
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
"""
CRITERIA = """
experiment: support-ft-2
min_units_per_arm: 500
min_days: 14
success:
  - {metric: approved, direction: increase, min_effect: 0.05}
guardrails:
  - {metric: policy_violation, direction: decrease}
"""


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


def abgate(*args: str, state: Path) -> Ran:
    r = CliRunner().invoke(app, [*args, "--state-dir", str(state)])
    return Ran(r.exit_code, r.stdout, r.stderr)


def abgate_process(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "abgate.cli.main", *args, "--state-dir", str(state)],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    s = tmp_path / "state"
    FileConfigStore(s).put(cfgmod.parse_yaml(CONFIG), expected_version=None, author="t", reason="init")
    # policy_violation is logged in both arms (never logged in an arm = missing data = HOLD)
    arms = (synth.ArmSpec("control", "base", approved=0.5, policy_rate=0.02),
            synth.ArmSpec("treatment", "ft:base:x", approved=0.7, policy_rate=0.02))
    synth.generate(s, synth.Scenario(arms=arms, units=1200, days=15, seed=3))
    (tmp_path / "criteria.yaml").write_text(CRITERIA)
    return s


def test_analyze_json(state: Path) -> None:
    r = abgate("analyze", "support-ft-2", "--json", state=state)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["phase"] == 1 and out["control"] == "control"
    assert sum(a["units"] for a in out["arms"]) == 1200
    assert out["metrics"]["approved"]["lifts"]["treatment"]["absolute"]["low"] > 0.1
    assert out["srm"]["p_value"] > 0.001
    r = abgate("analyze", "nope", state=state)
    assert r.returncode == 1 and "no interactions for experiment 'nope'" in r.stderr


def test_gate_go_apply_promotes_then_rollback(state: Path, tmp_path: Path) -> None:
    r = abgate("gate", "--criteria", str(tmp_path / "criteria.yaml"), "--apply", "--json", state=state)
    assert r.returncode == 0, r.stdout + r.stderr
    d = json.loads(r.stdout)
    assert d["verdict"] == "GO" and d["extra"]["applied"]["action"] == "promote"
    assert Path(d["record_path"]).exists() and Path(d["record_path"]).with_suffix(".md").exists()
    cur = FileConfigStore(state).current()
    assert cur.decision_id == d["decision_id"]
    assert {a.name: a.weight for a in cur.config.routes["support"].arms} == {"control": 0.0, "treatment": 1.0}
    # The promote CLI refuses a missing decision, then accepts the GO one.
    r = abgate("promote", "support", "--arm", "treatment", "--weight", "0.8", "--decision", "dec-missing", state=state)
    assert r.returncode == 1 and "no decision record" in r.stderr
    r = abgate("promote", "support", "--arm", "treatment", "--weight", "0.8", "--decision", d["decision_id"], state=state)
    assert r.returncode == 0, r.stderr
    assert FileConfigStore(state).current().config.routes["support"].arms[1].weight == pytest.approx(0.8)
    r = abgate("rollback", "support", "--json", state=state)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["config"]["routes"]["support"]["arms"][0]["weight"] == 1.0


def test_gate_hold_exit_code_and_bad_criteria(state: Path, tmp_path: Path) -> None:
    crit = tmp_path / "strict.yaml"
    crit.write_text(CRITERIA.replace("min_units_per_arm: 500", "min_units_per_arm: 5000"))
    r = abgate_process("gate", "--criteria", str(crit), "--apply", state=state)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "HOLD" in r.stdout and "min_units_per_arm 5000" in r.stdout
    assert FileConfigStore(state).latest_version() == 1  # HOLD applies nothing
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: e\nsuccess: [{metric: a, direction: sideways}]\n")
    r = abgate("gate", "--criteria", str(bad), state=state)
    assert r.returncode == 2 and "success.0.direction" in r.stderr
    # rollout guardrail files may omit the experiment; an online gate may not
    bad.write_text("stage: online\nsuccess: [{metric: a, direction: increase}]\n")
    r = abgate("gate", "--criteria", str(bad), state=state)
    assert r.returncode == 2 and "experiment: required for stage: online" in r.stderr


def test_rollout_once_cli_resumes(state: Path, tmp_path: Path) -> None:
    args = ("rollout", "support", "--arm", "treatment", "--steps", "25,100", "--interval", "1h",
            "--criteria", str(tmp_path / "criteria.yaml"), "--once", "--json")
    r = abgate(*args, state=state)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["index"] == 0
    r = abgate(*args, state=state)  # second cron tick inside the interval: waits
    out = json.loads(r.stdout)
    assert out["index"] == 0 and out["history"][-1]["action"] == "wait"
    assert FileConfigStore(state).current().config.routes["support"].arms[1].weight == pytest.approx(0.25)
