"""Promote / rollback / rollout against a real FileConfigStore (phase bumps, audit, resume)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import rollout, synth
from gateway import config as cfgmod
from gateway import routing
from gateway.config_store import FileConfigStore

CONFIG = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: base, weight: 1.0}
      - {name: treatment, model: "ft:base:x", weight: 0.0}
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
"""
GUARDS = """
experiment: support-ft-2
guardrails:
  - {metric: policy_violation, direction: decrease}
  - {metric: error, direction: decrease}
"""


@pytest.fixture
def env(tmp_path: Path):
    state = tmp_path / "state"
    store = FileConfigStore(state)
    store.put(cfgmod.parse_yaml(CONFIG), expected_version=None, author="t", reason="init")
    crit = tmp_path / "guards.yaml"
    crit.write_text(GUARDS)
    return state, store, crit


def _audit(state: Path) -> list[dict]:
    return [json.loads(x) for p in sorted((state / "events").rglob("cli-*.jsonl")) for x in p.read_text().splitlines()
            if json.loads(x)["kind"] == "config"]


def _weights(store: FileConfigStore) -> dict[str, float]:
    return {a.name: a.weight for a in store.current().config.routes["support"].arms}


def test_set_arm_weight_uses_the_one_promote_rule(env) -> None:
    state, store, _ = env
    new = rollout.set_arm_weight(store, state, "support", "treatment", 0.4, author="t", reason="r", decision_id=None,
                                 action="rollout_step")
    assert [a.weight for a in new.config.routes["support"].arms] == routing.promoted_weights([0.5, 0.5], 1, 0.4)
    with pytest.raises(rollout.RolloutError, match="within"):
        rollout.set_arm_weight(store, state, "support", "treatment", 1.5, author="t", reason="r", decision_id=None,
                               action="rollout_step")


def test_promote_and_rollback_bump_phase_and_audit(env) -> None:
    state, store, _ = env
    v = rollout.promote(store, state, "support", "treatment", weight=0.5, decision_id="dec-1", author="me")
    assert v.version == 2 and v.decision_id == "dec-1" and v.action == "promote"
    assert _weights(store) == {"control": 0.5, "treatment": 0.5}
    assert v.config.routes["support"].phase == 2
    r = rollout.rollback(store, state, "support", author="me")
    assert _weights(store) == {"control": 1.0, "treatment": 0.0} and r.config.routes["support"].phase == 3
    r2 = rollout.rollback(store, state, "support", to_version=2, author="me")
    assert _weights(store) == {"control": 0.5, "treatment": 0.5} and r2.version == 4
    audit = _audit(state)
    assert [(e["action"], e["config_version"], e["previous_version"]) for e in audit] == [
        ("promote", 2, 1), ("rollback", 3, 2), ("rollback", 4, 3)]
    with pytest.raises(rollout.RolloutError, match="no arm 'ghost'"):
        rollout.promote(store, state, "support", "ghost", decision_id="d", author="me")
    with pytest.raises(rollout.RolloutError, match="unknown route"):
        rollout.rollback(store, state, "nope", author="me")
    with pytest.raises(rollout.RolloutError, match="no config version 99"):
        rollout.rollback(store, state, "support", to_version=99, author="me")
    with pytest.raises(rollout.RolloutError, match="--decision"):
        rollout.promote(store, state, "support", "treatment", decision_id="", author="me")


def _traffic(state: Path, store: FileConfigStore, seed: int, policy_rate: float) -> None:
    cur = store.current()
    r = cur.config.routes["support"]
    # Both guardrail metrics are logged in both arms: a metric never logged in an arm is
    # missing data (HOLD), not a zero.
    arms = (synth.ArmSpec("control", "base", weight=r.arms[0].weight, policy_rate=0.05, error_rate=0.05),
            synth.ArmSpec("treatment", "ft:base:x", weight=r.arms[1].weight, policy_rate=policy_rate,
                          error_rate=0.05))
    synth.generate(state, synth.Scenario(arms=arms, units=600, interactions_per_unit=2, days=0.01, seed=seed,
                                         phase=r.phase, config_version=cur.version))


def test_rollout_walks_steps_resumes_and_completes(env) -> None:
    state, store, crit = env
    rollout.start(state, "support", "treatment", rollout.parse_steps("10,50,100"), 60.0, crit)
    st = rollout.step(state, store, "support", author="me", now=1000.0)
    assert st.index == 0 and _weights(store)["treatment"] == pytest.approx(0.1)
    # Interval not over: nothing changes (and the state file says so).
    st = rollout.step(state, store, "support", author="me", now=1030.0)
    assert st.history[-1].action == "wait" and _weights(store)["treatment"] == pytest.approx(0.1)
    # No traffic in the new phase yet -> hold at this step.
    st = rollout.step(state, store, "support", author="me", now=1100.0)
    assert st.history[-1].action == "hold" and st.index == 0
    _traffic(state, store, seed=1, policy_rate=0.05)
    st = rollout.step(state, store, "support", author="me", now=1200.0)
    assert st.index == 1 and _weights(store)["treatment"] == pytest.approx(0.5)
    # Resume from the persisted state (a new process would do exactly this).
    assert rollout.load_state(state, "support").index == 1
    _traffic(state, store, seed=2, policy_rate=0.05)
    st = rollout.step(state, store, "support", author="me", now=1300.0)
    assert st.index == 2 and _weights(store) == {"control": 0.0, "treatment": 1.0}
    _traffic(state, store, seed=3, policy_rate=0.05)
    st = rollout.step(state, store, "support", author="me", now=1400.0)
    assert st.status == "completed"
    assert [e["action"] for e in _audit(state)] == ["rollout_step"] * 3
    assert len(list((state / "decisions").glob("*.json"))) == 3  # one per check (incl. the hold)


def test_rollout_rolls_back_on_guardrail_harm(env) -> None:
    state, store, crit = env
    rollout.start(state, "support", "treatment", rollout.parse_steps("50,100"), 10.0, crit)
    rollout.step(state, store, "support", author="me", now=0.0)
    _traffic(state, store, seed=4, policy_rate=0.3)
    st = rollout.step(state, store, "support", author="me", now=20.0)
    assert st.status == "rolled_back"
    assert _weights(store) == {"control": 1.0, "treatment": 0.0}
    last = store.current()
    assert last.action == "rollback" and last.decision_id == st.history[-1].decision_id
    rec = json.loads((state / "decisions" / f"{last.decision_id}.json").read_text())
    assert rec["verdict"] == "NO-GO" and "policy_violation" in rec["reasons"][0]
    # A finished rollout does nothing more.
    assert rollout.step(state, store, "support", author="me", now=99.0).status == "rolled_back"


def test_rollout_arguments() -> None:
    assert rollout.parse_interval("1h") == 3600 and rollout.parse_interval("30s") == 30
    with pytest.raises(rollout.RolloutError):
        rollout.parse_interval("soon")
    with pytest.raises(rollout.RolloutError):
        rollout.parse_steps("50,25")
    with pytest.raises(rollout.RolloutError):
        rollout.parse_steps("5,x")
