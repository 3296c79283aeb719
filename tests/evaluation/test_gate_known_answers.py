"""Known-answer gate tests on generated archives (real ArchiveWriter, real FileConfigStore)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import criteria as critmod
from evaluation import decisions, gate, synth
from evaluation.decide import decide
from gateway import config as cfgmod
from gateway.config_store import FileConfigStore

CONFIG = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: base-model, weight: 0.5}
      - {name: treatment, model: "ft:base-model:acme:support:abc", weight: 0.5}
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
"""

CRITERIA = """
experiment: support-ft-2
stage: online
control: control
treatment: treatment
alpha: 0.05
min_units_per_arm: 500
min_days: 14
srm_p: 0.001
success:
  - {metric: approved, direction: increase, min_effect: 0.05, effect: absolute}
  - {metric: edited_response, direction: decrease, min_effect: 0.05, effect: absolute}
  - {metric: csat, direction: increase, min_effect: 0.2, effect: absolute}
guardrails:
  - {metric: policy_violation, direction: decrease}
  - {metric: error, direction: decrease}
  - {metric: latency_ms, direction: decrease, tolerance: 0.10, effect: relative}
"""

CONTROL = synth.ArmSpec("control", "base-model", approved=0.55, csat=3.7, edit_rate=0.25, policy_rate=0.01)
WIN = synth.ArmSpec("treatment", "ft:base-model:acme:support:abc", approved=0.72, csat=4.3, edit_rate=0.08,
                    policy_rate=0.01)


def _setup(tmp_path: Path, scenario: synth.Scenario, criteria: str = CRITERIA) -> tuple[Path, Path, FileConfigStore]:
    state = tmp_path / "state"
    store = FileConfigStore(state)
    store.put(cfgmod.parse_yaml(CONFIG), expected_version=None, author="t", reason="init")
    synth.generate(state, scenario)
    crit_path = tmp_path / "criteria.yaml"
    crit_path.write_text(criteria)
    return state, crit_path, store


def _decide(state: Path, crit_path: Path, store: FileConfigStore) -> gate.Decision:
    crit, sha = critmod.load(crit_path)
    return decide(crit, state, store=store, criteria_path=str(crit_path), criteria_sha256=sha, decided_by="t")


def _scenario(**kw) -> synth.Scenario:
    base = dict(arms=(CONTROL, WIN), units=1400, interactions_per_unit=3, days=15, seed=42)
    base.update(kw)
    return synth.Scenario(**base)


def test_clear_win_is_go_and_record_written(tmp_path: Path) -> None:
    state, crit_path, store = _setup(tmp_path, _scenario(eval_interactions=200, anonymous_interactions=200))
    d = _decide(state, crit_path, store)
    assert d.verdict == "GO", d.reasons
    assert d.exit_code == 0
    by = {m.metric: m for m in d.metrics}
    assert by["approved"].verdict == "met" and by["approved"].low > 0.05
    assert by["edited_response"].verdict == "met" and by["edited_response"].high < -0.05
    assert by["csat"].verdict == "met"
    assert all(by[g].verdict == "ok" for g in ("policy_violation", "error", "latency_ms"))
    assert {a.name: a.model for a in d.arms}["treatment"].startswith("ft:")
    assert sum(a.units for a in d.arms) == 1400  # eval and anonymous traffic excluded
    assert d.config_version == 1 and d.phase == 1 and d.srm_p is not None and d.srm_p > 0.001
    path = decisions.write_record(state, d)
    rec = json.loads(path.read_text())
    assert rec["verdict"] == "GO" and rec["criteria_sha256"] == d.criteria_sha256
    assert rec["data_first_ts"] and rec["days"] > 14
    md = path.with_suffix(".md").read_text()
    assert "**GO**" in md and "approved" in md
    # The decision event is in the archive.
    lines = [json.loads(x) for p in (state / "events").rglob("cli-*.jsonl") for x in p.read_text().splitlines()]
    assert [x["decision_id"] for x in lines if x["kind"] == "decision"] == [d.decision_id]


def test_harmful_candidate_is_nogo(tmp_path: Path) -> None:
    harmful = synth.ArmSpec("treatment", "bad-model", approved=0.35, csat=3.0, edit_rate=0.4, error_rate=0.01)
    state, crit_path, store = _setup(tmp_path, _scenario(arms=(CONTROL, harmful)))
    d = _decide(state, crit_path, store)
    assert d.verdict == "NO-GO" and d.exit_code == 3
    assert any("short of its threshold" in r for r in d.reasons)


def test_broken_split_is_hold_srm(tmp_path: Path) -> None:
    state, crit_path, store = _setup(tmp_path, _scenario(unit_counts={"control": 800, "treatment": 600}))
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD" and d.exit_code == 4
    assert d.srm_p is not None and d.srm_p < 0.001
    assert any("sample-ratio mismatch" in r for r in d.reasons)


def test_too_few_units_is_hold(tmp_path: Path) -> None:
    # (Guardrail metrics must be logged: a metric with no events is missing data, also HOLD
    # but for another reason; the sequential, Bonferroni-adjusted guardrails do not misfire.)
    state, crit_path, store = _setup(tmp_path, _scenario(units=300))
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD"
    assert any("min_units_per_arm 500" in r for r in d.reasons)


def test_too_few_days_is_hold(tmp_path: Path) -> None:
    state, crit_path, store = _setup(tmp_path, _scenario(days=5))
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD"
    assert any("min_days 14" in r for r in d.reasons)


def test_missing_metric_is_hold(tmp_path: Path) -> None:
    state, crit_path, store = _setup(tmp_path, _scenario(skip_metrics=("csat",)))
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD"
    assert {m.metric: m.verdict for m in d.metrics}["csat"] == "missing"
    assert any("'csat' has no data" in r for r in d.reasons)


def test_policy_violation_increase_with_quality_win_is_nogo(tmp_path: Path) -> None:
    risky = synth.ArmSpec("treatment", "ft:risky", approved=0.72, csat=4.3, edit_rate=0.08, policy_rate=0.08)
    # Too few days too: harm stops the test before the minimums (rule 2 before rule 3).
    state, crit_path, store = _setup(tmp_path, _scenario(arms=(CONTROL, risky), days=3))
    d = _decide(state, crit_path, store)
    assert d.verdict == "NO-GO", d.reasons
    assert {m.metric: m.verdict for m in d.metrics}["policy_violation"] == "worse"
    assert {m.metric: m.verdict for m in d.metrics}["approved"] == "met"
    assert any("policy_violation" in r for r in d.reasons)


def test_corrupt_archive_line_is_hold_and_counted(tmp_path: Path) -> None:
    state, crit_path, store = _setup(tmp_path, _scenario())
    target = sorted((state / "events").rglob("*.jsonl"))[0]
    n_before = len(target.read_text().splitlines())
    with open(target, "a") as f:
        f.write('{"kind": "interaction", "event_id": "trunc\n')
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD"
    assert d.archive_corrupt_lines == 1
    assert d.archive_corrupt_examples[0].startswith(f"{target}:{n_before + 1}:")
    assert any("unreadable line" in r for r in d.reasons)


def test_guardrails_beat_minimums_but_trust_beats_guardrails(tmp_path: Path) -> None:
    risky = synth.ArmSpec("treatment", "ft:risky", policy_rate=0.1)
    state, crit_path, store = _setup(tmp_path, _scenario(arms=(CONTROL, risky), unit_counts={"control": 900, "treatment": 500}))
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD"  # SRM first: harm measured on a broken split is not trusted
    assert any("sample-ratio" in r for r in d.reasons)


def test_no_experiment_data_is_hold(tmp_path: Path) -> None:
    state, crit_path, store = _setup(tmp_path, _scenario(units=50), CRITERIA.replace("support-ft-2", "other-exp"))
    d = _decide(state, crit_path, store)
    assert d.verdict == "HOLD" and "no data" in d.reasons[0]


def test_relative_success_threshold() -> None:
    c = critmod.Criterion(metric="approved", direction="increase", min_effect=0.1, effect="relative")
    assert gate.judge_success(c, 0.2, 0.12, 0.28)[0] == "met"
    assert gate.judge_success(c, 0.05, 0.01, 0.09)[0] == "short"
    assert gate.judge_success(c, 0.1, 0.05, 0.15)[0] == "inconclusive"
    d = critmod.Criterion(metric="edit", direction="decrease", min_effect=0.05)
    assert gate.judge_success(d, -0.1, -0.12, -0.08)[0] == "met"
    assert gate.judge_success(d, 0.0, -0.02, 0.02)[0] == "short"
    g = critmod.Criterion(metric="latency_ms", direction="decrease", tolerance=0.1, effect="relative")
    assert gate.judge_guardrail(g, 0.15, 0.11, 0.19)[0] == "worse"
    assert gate.judge_guardrail(g, 0.15, 0.05, 0.25)[0] == "ok"
    assert gate.judge_guardrail(g, float("nan"), 0, 0)[0] == "missing"


@pytest.mark.parametrize(
    "text,field",
    [
        ("experiment: e\nsuccess: [{metric: a, direction: up}]", "success.0.direction"),
        ("experiment: e\nalpha: 2\nsuccess: [{metric: a, direction: increase}]", "alpha"),
        ("stage: offline\nbaseline: r1\nsuccess: [{metric: a, direction: increase}]", "candidate"),
        ("experiment: e\nsuccess: [{metric: a, direction: increase, bogus: 1}]", "success.0"),
        ("experiment: e", "success"),
    ],
)
def test_criteria_errors_name_the_field(text: str, field: str) -> None:
    with pytest.raises(critmod.CriteriaError) as ei:
        critmod.parse(text)
    assert ei.value.field.startswith(field), ei.value


def test_criteria_yaml_error_has_line() -> None:
    with pytest.raises(critmod.CriteriaError, match="line 3"):
        critmod.parse("experiment: e\nsuccess: [\n")
