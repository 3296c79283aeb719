"""The versioned config store: CAS writes, history, phases, rollback, diff; and the config CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from gateway import config as cfgmod
from gateway import config_edits as edits
from gateway import config_store as cs

BASE = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: base, weight: 0.5}
      - {name: treatment, model: "ft:base:acme::x1", weight: 0.5}
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
"""


def _cfg(text: str = BASE) -> cfgmod.RouterConfig:
    return cfgmod.parse_yaml(text)


def test_versions_are_assigned_monotonically_and_kept(tmp_path: Path) -> None:
    store = cs.FileConfigStore(tmp_path)
    assert store.current() is None
    v1 = store.put(_cfg(), expected_version=None, author="ann", reason="first")
    v2 = store.put(_cfg(BASE.replace("model: base,", "model: base2,")), expected_version=1, author="bob", reason="2nd")
    assert (v1.version, v2.version) == (1, 2)
    assert [v.author for v in store.history()] == ["ann", "bob"]
    assert store.current() == v2
    assert store.get(1).config == v1.config


def test_compare_and_set_rejects_a_stale_writer(tmp_path: Path) -> None:
    store = cs.FileConfigStore(tmp_path)
    store.put(_cfg(), expected_version=None, author="a", reason="r")
    with pytest.raises(cs.VersionConflict, match="expected version None, store is at 1"):
        store.put(_cfg(), expected_version=None, author="b", reason="stale")
    assert store.latest_version() == 1


def test_weight_change_starts_a_new_phase_but_other_changes_do_not(tmp_path: Path) -> None:
    store = cs.FileConfigStore(tmp_path)
    store.put(_cfg(), expected_version=None, author="a", reason="r")
    same_arms = BASE + "models:\n  base: {input_per_mtok: 1.0}\n"
    v2 = store.put(_cfg(same_arms), expected_version=1, author="a", reason="prices")
    assert v2.config.routes["support"].phase == 1
    ramp = BASE.replace("weight: 0.5}\n      - {name: treatment", "weight: 0.2}\n      - {name: treatment").replace(
        'x1", weight: 0.5', 'x1", weight: 0.8'
    )
    v3 = store.put(_cfg(ramp), expected_version=2, author="a", reason="ramp")
    assert [a.weight for a in v3.config.routes["support"].arms] == [0.2, 0.8]
    assert v3.config.routes["support"].phase == 2


def test_rollback_reapplies_an_old_config_as_a_new_version(tmp_path: Path) -> None:
    store = cs.FileConfigStore(tmp_path)
    store.put(_cfg(), expected_version=None, author="a", reason="r")
    store.put(_cfg(BASE.replace("model: base,", "model: other,")), expected_version=1, author="a", reason="r")
    v3 = edits.ConfigEditor(store).rollback_to(1, change=edits.Change("ops", "bad model"))
    assert v3.version == 3 and v3.action == "rollback"
    assert v3.config.routes["support"].arms[0].model == "base"
    assert v3.config.routes["support"].phase == 3  # arms changed twice
    with pytest.raises(edits.EditError, match="no config version 99"):
        edits.ConfigEditor(store).rollback_to(99, change=edits.Change("ops"))
    changed = {line.replace(" ", "") for line in cs.diff(store.get(2), v3).splitlines() if line[:1] in "+-"}
    assert {"-model:other", "+model:base"} <= changed


def test_cli_set_show_history_diff_rollback_and_audit(tmp_path: Path) -> None:
    runner = CliRunner()
    state = tmp_path / "state"
    f = tmp_path / "router.yaml"
    f.write_text(BASE)
    r = runner.invoke(app, ["config", "set", str(f), "--state-dir", str(state), "--reason", "initial", "--author", "ann"])
    assert r.exit_code == 0, r.output
    f.write_text(BASE.replace("model: base,", "model: base-2,"))
    assert runner.invoke(app, ["config", "set", str(f), "--state-dir", str(state), "--author", "bob"]).exit_code == 0
    r = runner.invoke(app, ["config", "show", "--state-dir", str(state), "--json"])
    assert json.loads(r.stdout)["version"] == 2
    r = runner.invoke(app, ["config", "diff", "1", "2", "--state-dir", str(state)])
    changed = {line.replace(" ", "") for line in r.stdout.splitlines() if line[:1] in "+-"}
    assert {"-model:base", "+model:base-2", "-phase:1", "+phase:2"} <= changed
    r = runner.invoke(app, ["config", "rollback", "1", "--state-dir", str(state), "--author", "ops"])
    assert r.exit_code == 0, r.output
    hist = json.loads(runner.invoke(app, ["config", "history", "--state-dir", str(state), "--json"]).stdout)
    assert [h["author"] for h in hist] == ["ann", "bob", "ops"]
    audit = [json.loads(line) for p in (state / "events").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(e["config_version"] for e in audit if e["kind"] == "config") == [1, 2, 3]
    # a stale expected version is refused and nothing is written
    r = runner.invoke(app, ["config", "set", str(f), "--state-dir", str(state), "--expected-version", "1"])
    assert r.exit_code == 1 and "store is at 3" in r.output
    assert cs.FileConfigStore(state).latest_version() == 3


def test_cli_validate_names_the_bad_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(BASE.replace('x1", weight: 0.5', 'x1", weight: 0.6'))
    r = CliRunner().invoke(app, ["config", "validate", str(f)])
    assert r.exit_code == 1
    assert "routes.support.arms: weights must sum to 1" in r.output
    f.write_text(BASE.replace("weight: 0.5}", 'weight: "half"}', 1))
    r = CliRunner().invoke(app, ["config", "validate", str(f)])
    assert r.exit_code == 1 and "routes.support.arms[0].weight" in r.output


def test_yaml_syntax_error_names_line_and_column() -> None:
    # the one message shared by router configs, criteria files and admin request bodies
    with pytest.raises(cfgmod.ConfigError) as ei:
        _cfg("routes:\n  support: {a: 1\n  b: 2\n")
    assert ei.value.field == ""
    assert str(ei.value) == "invalid YAML at line 3, column 4: expected ',' or '}', but got ':'"
