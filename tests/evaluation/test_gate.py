"""Gate defects from issue 16, each on a hand-built archive (real ArchiveWriter):
tiny samples, zero variance, never-logged metrics, units in two arms, guardrails on two
units, multiplicity, and the inference method named in the record."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import criteria as critmod
from evaluation import decisions, gate, synth
from evaluation.decide import decide
from gateway import events as ev
from gateway.archive import ArchiveWriter

COMMON = dict(tenant="default", route="support", experiment="exp", config_version=1, phase=1)
W = "expected_weights: {control: 0.5, treatment: 0.5}\n"


def _ix(iid: str, unit: str, arm: str, *, latency: float = 100.0, day: int = 1) -> ev.Interaction:
    return ev.Interaction(event_id=f"e-{iid}", ts=f"2025-01-{day:02d}T00:00:00.000Z", arm=arm, interaction_id=iid,
                          unit=unit, traffic="live", model=f"m-{arm}", stream=False, status="ok", http_status=200,
                          latency_ms=latency, **COMMON)


def _fb(iid: str, unit: str, arm: str, metric: str, value: object, day: int = 1) -> ev.Feedback:
    return ev.Feedback(event_id=ev.new_event_id(), ts=f"2025-01-{day:02d}T00:01:00.000Z", arm=arm,
                       interaction_id=iid, unit=unit, metric=metric, value=value, **COMMON)


def _decide(state: Path, text: str) -> gate.Decision:
    return decide(critmod.parse("experiment: exp\n" + W + text), state)


def _tiny(state: Path) -> None:
    """3 control units approving 1 of 2, 3 treatment units approving 2 of 2 (issue 16)."""
    events: list[ev.Event] = []
    for arm, approvals in (("control", (True, False)), ("treatment", (True, True))):
        for u in range(3):
            for k, ok in enumerate(approvals):
                iid = f"{arm}-{u}-{k}"
                events += [_ix(iid, f"{arm}{u}", arm, day=1 + 14 * k), _fb(iid, f"{arm}{u}", arm, "approved", ok)]
    ArchiveWriter(state).write(events)


def test_three_units_per_arm_never_go(tmp_path: Path) -> None:
    _tiny(tmp_path)
    succ = "success: [{metric: approved, direction: increase}]\n"
    d = _decide(tmp_path, succ)  # default minimums
    assert d.verdict == "HOLD", d.reasons
    # Even with the minimums switched off: zero variance is no evidence (used to be GO, CI [0.5, 0.5]).
    d = _decide(tmp_path, "min_units_per_arm: 0\nmin_days: 0\n" + succ)
    assert d.verdict == "HOLD"
    assert d.metrics[0].verdict == "insufficient" and "zero variance" in d.metrics[0].note
    d = _decide(tmp_path, "min_units_per_arm: 0\nmin_days: 0\ninference: fixed\n" + succ)
    assert d.verdict == "HOLD" and "zero variance" in d.reasons[0]


def test_default_minimums_are_not_zero() -> None:
    crit = critmod.parse("experiment: e\nsuccess: [{metric: approved, direction: increase}]")
    assert crit.min_units_per_arm >= 100 and crit.min_days >= 7 and crit.guardrail_min_units >= 30
    assert crit.inference == "sequential"


def _scenario(state: Path, **kw: object) -> None:
    arms = (synth.ArmSpec("control", "m-c", approved=0.5), synth.ArmSpec("treatment", "m-t", approved=0.5))
    synth.generate(state, synth.Scenario(experiment="exp", arms=arms, units=600, days=15, seed=11, **kw))


@pytest.mark.parametrize("metric,role", [("edited_response", "success"), ("followup", "guardrails"),
                                         ("policy_violation", "guardrails")])
def test_never_logged_count_metric_is_hold_not_zero(tmp_path: Path, metric: str, role: str) -> None:
    _scenario(tmp_path, skip_metrics=(metric,))
    d = _decide(tmp_path, f"min_units_per_arm: 0\nmin_days: 0\n{role}: [{{metric: {metric}, direction: decrease}}]\n")
    assert d.verdict == "HOLD", d.reasons
    assert d.metrics[0].verdict == "missing" and d.metrics[0].low is None  # never a CI [0, 0]
    assert any(f"{metric!r} has no data" in r for r in d.reasons)


def test_units_in_two_arms_of_one_phase_is_hold(tmp_path: Path) -> None:
    _scenario(tmp_path)
    # A hash change without a new phase: some units now also show up in the other arm.
    ArchiveWriter(tmp_path).write([_ix(f"moved-{u}", f"u11-{u:08d}", "treatment", day=10) for u in range(40)]
                                  + [_ix(f"moved2-{u}", f"u11-{u:08d}", "control", day=10) for u in range(40)])
    d = _decide(tmp_path, "min_units_per_arm: 0\nmin_days: 0\nguardrails: [{metric: error, direction: decrease}]\n")
    assert d.verdict == "HOLD"
    assert any("more than one arm" in r for r in d.reasons)


def test_guardrail_on_two_treatment_units_cannot_stop(tmp_path: Path) -> None:
    events: list[ev.Event] = []
    for u in range(60):
        events += [_ix(f"c{u}-{k}", f"c{u}", "control", latency=100 + (u * 7 + k) % 13, day=1 + 7 * k) for k in range(3)]
    for u in range(2):
        events += [_ix(f"t{u}-{k}", f"t{u}", "treatment", latency=900 + u * 50 + k, day=1 + 7 * k) for k in range(3)]
    ArchiveWriter(tmp_path).write(events)
    d = decide(critmod.parse("experiment: exp\nmin_units_per_arm: 0\nmin_days: 0\nsrm_p: 0\n"
                                  "guardrails: [{metric: latency_ms, direction: decrease}]\n"), tmp_path)
    assert d.verdict == "HOLD", d.reasons  # used to be NO-GO on 2 units
    assert d.metrics[0].verdict == "insufficient" and "guardrail_min_units" in d.metrics[0].note


def test_multiplicity_bonferroni_per_family_and_recorded(tmp_path: Path) -> None:
    crit = critmod.parse(
        "experiment: e\nsuccess: [{metric: approved, direction: increase}, {metric: csat, direction: increase}]\n"
        "guardrails: [{metric: error, direction: decrease}, {metric: latency_ms, direction: decrease},"
        " {metric: policy_violation, direction: decrease}]\n")
    assert crit.family_alpha("success") == pytest.approx(0.025)
    assert crit.family_alpha("guardrail") == pytest.approx(0.05 / 3)
    assert critmod.parse("experiment: e\nmultiplicity: none\nsuccess: [{metric: a, direction: increase},"
                         " {metric: b, direction: increase}]").family_alpha("success") == 0.05
    _scenario(tmp_path)
    d = decide(msgspec_replace(crit, experiment="exp", min_units_per_arm=0, min_days=0,
                                    expected_weights={"control": 0.5, "treatment": 0.5}), tmp_path)
    by = {m.metric: m for m in d.metrics}
    assert by["approved"].alpha == pytest.approx(0.025) and by["error"].alpha == pytest.approx(0.05 / 3)
    assert "bonferroni" in d.multiplicity and "sequential" in d.inference
    assert by["approved"].definition and by["approved"].coverage_control == pytest.approx(0.6, abs=0.05)
    assert d.look == 1
    decisions.write_record(tmp_path, d)
    assert decide(msgspec_replace(crit, experiment="exp"), tmp_path).look == 2  # the looks are counted
    md = decisions.markdown(d)
    assert "confidence sequence" in md and "bonferroni" in md and "coverage" in md


def test_fixed_inference_is_named_and_narrower(tmp_path: Path) -> None:
    _scenario(tmp_path)
    base = "min_units_per_arm: 0\nmin_days: 0\nsuccess: [{metric: approved, direction: increase}]\n"
    seq, fix = _decide(tmp_path, base), _decide(tmp_path, "inference: fixed\n" + base)
    assert seq.inference.startswith("sequential") and fix.inference.startswith("fixed")
    s, f = seq.metrics[0], fix.metrics[0]
    assert s.estimate == pytest.approx(f.estimate)
    assert (s.high - s.low) > (f.high - f.low) > 0


def msgspec_replace(crit: critmod.Criteria, **kw: object) -> critmod.Criteria:
    import msgspec

    return msgspec.structs.replace(crit, **kw)


def test_guardrail_without_variation_in_either_arm_is_ok_but_success_is_not(tmp_path: Path) -> None:
    # No errors at all in either arm (error rate 0 everywhere): the guardrail cannot be worse.
    events: list[ev.Event] = []
    for u in range(80):
        arm = ARMS[u % 2]
        events += [_ix(f"i{u}-{k}", f"u{u}", arm, latency=100.0 + (u * 7 + k) % 13, day=1 + 7 * k) for k in range(2)]
    ArchiveWriter(tmp_path).write(events)
    d = _decide(tmp_path, "min_units_per_arm: 0\nmin_days: 0\nguardrails: [{metric: error, direction: decrease}]\n")
    assert d.verdict == "GO", d.reasons
    assert d.metrics[0].verdict == "ok" and "no variation" in d.metrics[0].note
    d = _decide(tmp_path, "min_units_per_arm: 0\nmin_days: 0\nsuccess: [{metric: error, direction: decrease}]\n")
    assert d.verdict == "HOLD" and d.metrics[0].verdict == "insufficient"


ARMS = ("control", "treatment")
