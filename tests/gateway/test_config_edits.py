"""gateway.config_edits: authored spec vs managed traffic state, file sync by content hash,
conflicts refused with the field, one promote rule, gate verdicts, audit events, history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from gateway import config as cfgmod
from gateway import config_edits as edits
from gateway import config_store as cs
from gateway.events import ConfigChange


def _yaml(w: tuple[float, ...] = (0.5, 0.5), model: str = "ft:base:x", experiment: str = "exp-1",
          third: str = "") -> str:
    return f"""
routes:
  support:
    experiment: {experiment}
    arms:
      - {{name: control, model: base, weight: {w[0]}}}
      - {{name: treatment, model: "{model}", weight: {w[1]}}}
{third}  other:
    experiment: other-exp
    arms: [{{name: a, model: base, weight: 0.5}}, {{name: b, model: base, weight: 0.5}}]
upstreams:
  sim: {{base_url: "http://127.0.0.1:9/v1"}}
"""


def _weights(v: cs.ConfigVersion, route: str = "support") -> dict[str, float]:
    return {a.name: a.weight for a in v.config.routes[route].arms}


class Env:
    def __init__(self, tmp: Path) -> None:
        self.store = cs.FileConfigStore(tmp / "state")
        self.events: list[ConfigChange] = []
        self.ed = edits.ConfigEditor(self.store, audit=self.events.append)
        self.file = tmp / "router.yaml"

    def write(self, text: str) -> Path:
        self.file.write_text(text)
        return self.file


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_file_seeds_an_empty_store_then_an_unchanged_file_changes_nothing(env: Env) -> None:
    out = env.ed.sync_file(env.write(_yaml()))
    assert out.written is not None and out.written.version == 1 and out.written.action == "seed"
    assert out.written.file_sha256 == edits.file_sha256(env.file.read_bytes())
    again = env.ed.sync_file(env.file)
    assert again.written is None and again.current.version == 1 and "unchanged" in again.notes[0]
    assert env.store.latest_version() == 1 and len(env.events) == 1


def test_restart_with_the_original_file_keeps_promotion_and_phase(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    promoted = env.ed.promote("support", "treatment", 1.0, change=edits.Change("ann", decision_id="dec-1"))
    assert _weights(promoted) == {"control": 0.0, "treatment": 1.0} and promoted.managed["support"].action == "promote"
    out = env.ed.sync_file(env.file)  # what `abgate serve --config router.yaml` does on restart
    assert out.written is None and out.current == promoted
    assert env.store.latest_version() == 2


def test_confirming_the_weights_in_force_makes_them_managed(env: Env) -> None:
    # the file already says 50/50 and an operator confirms 50/50: a later file edit must not undo it
    env.ed.sync_file(env.write(_yaml()))
    v = env.ed.set_weights("support", {"control": 0.5, "treatment": 0.5}, change=edits.Change("ann", "hold at 50/50"))
    assert v.managed["support"].action == "set_weights" and "other" not in v.managed
    out = env.ed.sync_file(env.write(_yaml(w=(0.9, 0.1))))
    assert _weights(out.current) == {"control": 0.5, "treatment": 0.5}
    assert "kept managed traffic control=0.5, treatment=0.5" in " ".join(out.notes)


def test_a_changed_file_keeps_managed_weights_and_says_so(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.move_traffic("support", "treatment", 0.8, change=edits.Change("rollout"), action="rollout_step")
    env.write(_yaml(model="ft:base:y"))  # authored change: the treatment's model
    out = env.ed.sync_file(env.file)
    assert out.written is not None and out.written.version == 3 and out.written.action == "file"
    assert _weights(out.written) == pytest.approx({"control": 0.2, "treatment": 0.8})
    assert out.written.config.routes["support"].arms[1].model == "ft:base:y"
    assert out.written.config.routes["support"].phase == 3  # model changed: a new phase, as always
    assert "support" in out.written.managed
    assert "routes.support: kept managed traffic control=0.2, treatment=0.8 (authored: control=0.5, " \
           "treatment=0.5; managed since v2 (rollout_step by rollout))" in out.written.reason
    # the other route is not managed: its authored weights still apply
    env.write(_yaml(model="ft:base:y").replace("weight: 0.5}, {name: b, model: base, weight: 0.5}",
                                                "weight: 0.9}, {name: b, model: base, weight: 0.1}"))
    out = env.ed.sync_file(env.file)
    assert out.written is not None and _weights(out.written, "other") == {"a": 0.9, "b": 0.1}
    assert _weights(out.written) == pytest.approx({"control": 0.2, "treatment": 0.8})
    assert [e.config_version for e in env.events] == [1, 2, 3, 4]
    assert [e.previous_version for e in env.events] == [None, 1, 2, 3]


def test_removing_an_arm_that_carries_traffic_is_refused_with_the_field(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.promote("support", "treatment", 1.0, change=edits.Change("ann", decision_id="dec-7"))
    env.write(_yaml().replace('      - {name: treatment, model: "ft:base:x", weight: 0.5}\n', "")
              .replace("weight: 0.5}\n", "weight: 1.0}\n", 1))
    with pytest.raises(edits.TrafficConflict) as ei:
        env.ed.sync_file(env.file)
    assert ei.value.field == "routes.support.arms"
    assert str(ei.value) == (
        "routes.support.arms: removes arm 'treatment', which carries 100% of the route's traffic "
        "(weights control=0, treatment=1, managed since v2 (promote by ann, decision dec-7)); move its traffic "
        "first (`abgate rollback support` or `abgate promote`), or apply with --reset-traffic")
    assert env.store.latest_version() == 2
    # once its traffic is moved away, the same edit applies
    env.ed.rollback_route("support", change=edits.Change("ops"))
    out = env.ed.sync_file(env.file)
    assert out.written is not None and [a.name for a in out.written.config.routes["support"].arms] == ["control"]


def test_a_new_arm_on_a_managed_route_starts_at_weight_zero(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.promote("support", "treatment", 0.7, change=edits.Change("ann", decision_id="d"))
    canary = '      - {name: canary, model: "ft:base:z", weight: 0.1}\n'
    env.write(_yaml((0.5, 0.4), third=canary))
    with pytest.raises(edits.TrafficConflict) as ei:
        env.ed.sync_file(env.file)
    assert ei.value.field == "routes.support.arms[2].weight" and "add it at weight 0" in str(ei.value)
    assert env.store.latest_version() == 2
    env.write(_yaml((0.5, 0.5), third=canary.replace("weight: 0.1", "weight: 0")))
    out = env.ed.sync_file(env.file)
    assert out.written is not None
    assert _weights(out.written) == pytest.approx({"control": 0.3, "treatment": 0.7, "canary": 0.0})


def test_reset_traffic_takes_the_files_weights_and_clears_the_marks(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.promote("support", "treatment", 1.0, change=edits.Change("ann", decision_id="d"))
    out = env.ed.sync_file(env.file, reset_traffic=True)  # unchanged file, explicit flag
    assert out.written is not None and _weights(out.written) == {"control": 0.5, "treatment": 0.5}
    assert out.written.managed == {} and "reset" in out.written.reason


def test_a_new_experiment_takes_the_authored_traffic(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.promote("support", "treatment", 1.0, change=edits.Change("ann", decision_id="d"))
    out = env.ed.sync_file(env.write(_yaml((0.8, 0.2), experiment="exp-2")))
    assert out.written is not None and _weights(out.written) == {"control": 0.8, "treatment": 0.2}
    assert "support" not in out.written.managed


def test_rollback_to_a_version_survives_the_next_restart(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.promote("support", "treatment", 1.0, change=edits.Change("ann", decision_id="d"))
    env.ed.promote("support", "treatment", 0.25, change=edits.Change("ann", decision_id="d2"))
    back = env.ed.rollback_to(2, change=edits.Change("ops", "bad ramp"))
    assert _weights(back) == {"control": 0.0, "treatment": 1.0} and back.managed["support"].action == "rollback"
    assert env.ed.sync_file(env.file).written is None and env.store.current() == back


def test_authored_config_through_the_api_keeps_managed_traffic_and_cas(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    env.ed.promote("support", "treatment", 1.0, change=edits.Change("ann", decision_id="d"))
    with pytest.raises(cs.VersionConflict):
        env.ed.apply_authored(cfgmod.parse_yaml(_yaml()), change=edits.Change("bob"), expected_version=1)
    out = env.ed.apply_authored(cfgmod.parse_yaml(_yaml()), change=edits.Change("bob"), expected_version=2)
    assert out.written is None and out.current.version == 2  # nothing authored changed
    out = env.ed.apply_authored(cfgmod.parse_yaml(_yaml(model="ft:base:q")), change=edits.Change("bob", "model"),
                                expected_version=2)
    assert out.written is not None and _weights(out.written) == {"control": 0.0, "treatment": 1.0}


def test_weight_edits_validate_once_and_name_the_field(env: Env) -> None:
    env.ed.sync_file(env.write(_yaml()))
    with pytest.raises(edits.EditError) as ei:
        env.ed.set_weights("support", {"control": 0.7, "treatment": 0.7}, change=edits.Change("x"))
    assert ei.value.code == "invalid_config" and ei.value.field == "routes.support.arms"
    with pytest.raises(edits.EditError) as ei:
        env.ed.set_weights("support", {"nope": 1.0}, change=edits.Change("x"))
    assert ei.value.code == "unknown_arm"
    with pytest.raises(edits.EditError) as ei:
        env.ed.promote("missing", "treatment", change=edits.Change("x", decision_id="d"))
    assert ei.value.code == "unknown_route"
    with pytest.raises(edits.EditError) as ei:
        env.ed.promote("support", "treatment", change=edits.Change("x"))
    assert ei.value.field == "decision_id"
    with pytest.raises(edits.EditError, match="within"):
        env.ed.move_traffic("support", "treatment", 1.5, change=edits.Change("x"), action="promote")
    assert env.store.latest_version() == 1 and len(env.events) == 1


@pytest.mark.parametrize(("verdict", "action", "weights"), [
    ("GO", "promote", {"control": 0.0, "treatment": 1.0}),
    ("NO-GO", "rollback", {"control": 1.0, "treatment": 0.0}),
])
def test_gate_verdicts_decide_promote_or_rollback(env: Env, verdict: str, action: str,
                                                  weights: dict[str, float]) -> None:
    env.ed.sync_file(env.write(_yaml()))
    act = env.ed.apply_gate_verdict(verdict, route="support", treatment="treatment", decision_id="dec-3",
                                    reasons=["guardrail latency_ms worse"], author="gate")
    assert act is not None and act.action == action and _weights(act.version) == weights
    assert act.version.decision_id == "dec-3" and act.version.action == action
    assert env.events[-1].decision_id == "dec-3" and env.events[-1].action == action
    assert env.ed.apply_gate_verdict("HOLD", route="support", treatment="treatment", decision_id="d",
                                     reasons=[], author="gate") is None


def test_config_history_shows_who_moved_traffic_and_why(tmp_path: Path) -> None:
    runner = CliRunner()
    state = tmp_path / "state"
    f = tmp_path / "router.yaml"
    f.write_text(_yaml())
    assert runner.invoke(app, ["config", "set", str(f), "--state-dir", str(state), "--author", "ann"]).exit_code == 0
    r = runner.invoke(app, ["config", "weights", "support", "control=0.2", "treatment=0.8", "--reason",
                            "seed 003: 80/20", "--author", "bob", "--state-dir", str(state)])
    assert r.exit_code == 0, r.output
    # config set of the same file: nothing to change; the managed 80/20 stays
    r = runner.invoke(app, ["config", "set", str(f), "--state-dir", str(state), "--author", "ann"])
    assert r.exit_code == 0 and "nothing to change" in r.output
    r = runner.invoke(app, ["config", "history", "--state-dir", str(state)], env={"COLUMNS": "250"})
    assert r.exit_code == 0
    row = next(line for line in r.output.splitlines() if "bob" in line)
    assert "set_weights" in row and "treatment 0.5->0.8" in row and "seed 003: 80/20" in row
    hist = json.loads(runner.invoke(app, ["config", "history", "--state-dir", str(state), "--json"]).stdout)
    assert [h["version"] for h in hist] == [1, 2] and hist[1]["managed"]["support"]["author"] == "bob"
    r = runner.invoke(app, ["config", "weights", "support", "control=x", "--state-dir", str(state)])
    assert r.exit_code == 2 and "ARM=WEIGHT" in r.output
    audit = [json.loads(line) for p in (state / "events").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert [(e["config_version"], e["author"]) for e in audit if e["kind"] == "config"] == [(1, "ann"), (2, "bob")]
