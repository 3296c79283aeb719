"""Offline gate known answers: GO, NO-GO, HOLD in the online gate's order."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest

from evaluation import criteria as critmod
from evaluation import decisions
from evaluation.decide import decide
from evaluation.offline import gate as og
from tests.support.offline_eval import make_run, pattern

N = 200


def crit(**over) -> critmod.Criteria:
    c = critmod.parse(og.SEED001_CRITERIA.read_text())
    return msgspec.structs.replace(c, **{"baseline": "base", "candidate": "cand", **over})


def test_seed001_defaults_parse_and_read_10_percent_as_relative() -> None:
    c = critmod.parse(og.SEED001_CRITERIA.read_text())
    [s] = c.success
    assert (s.metric, s.effect, s.min_effect, s.min_value) == ("all_fields_correct", "relative", 0.10, 0.85)
    assert {g.metric for g in c.guardrails} == {"json_valid", "latency_ms"}


def test_clear_win_is_go_and_records_runs(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 150))  # 75%
    make_run(tmp_path, "cand", acc=pattern(N, 188), model="ft:m")  # 94%, superset of base's right answers
    d = og.decide(crit(), tmp_path)
    assert d.verdict == "GO", d.reasons
    lift, floor = [m for m in d.metrics if m.metric == "all_fields_correct"]
    assert lift.verdict == "met" and lift.estimate == pytest.approx(188 / 150 - 1) and lift.low > 0.10
    assert floor.effect == "value" and floor.verdict == "met" and floor.low >= 0.85
    assert [a.name for a in d.arms] == ["base", "cand"] and d.arms[1].model == "ft:m"
    assert d.extra["paired_examples"] == N and d.stage == "offline"
    path = decisions.write_record(tmp_path, d)
    rec = json.loads(path.read_text())
    assert rec["verdict"] == "GO" and path.with_suffix(".md").read_text().startswith(f"# Decision {d.decision_id}: **GO**")


def test_worse_candidate_is_nogo(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 150))
    make_run(tmp_path, "cand", acc=pattern(N, 100))
    d = og.decide(crit(), tmp_path)
    assert d.verdict == "NO-GO" and "short of its threshold" in d.reasons[0]


def test_improvement_below_10_percent_relative_is_nogo(tmp_path: Path) -> None:
    # 85% -> 90%: +5.9% relative (the whole CI under +10%) although +5 points absolute
    make_run(tmp_path, "base", acc=pattern(1000, 850))
    make_run(tmp_path, "cand", acc=pattern(1000, 900))
    d = og.decide(crit(), tmp_path)
    assert d.verdict == "NO-GO", d.reasons


def test_absolute_floor_short_is_nogo_and_inconclusive_is_hold(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 100))  # 50%
    make_run(tmp_path, "cand", acc=pattern(N, 150))  # 75%: +50% relative but under the 85% floor
    d = og.decide(crit(), tmp_path)
    assert d.verdict == "NO-GO" and any("all_fields_correct" in r for r in d.reasons)
    make_run(tmp_path, "base2", acc=pattern(N, 130))
    make_run(tmp_path, "cand2", acc=pattern(N, 174))  # 87%: Wilson CI straddles 85%
    d2 = og.decide(crit(baseline="base2", candidate="cand2"), tmp_path)
    assert d2.verdict == "HOLD" and "not yet conclusive" in d2.reasons[0]


def test_json_validity_guardrail_stops_even_a_quality_win(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 150))
    make_run(tmp_path, "cand", acc=pattern(N, 190), json_ok=pattern(N, 170))
    d = og.decide(crit(), tmp_path)
    assert d.verdict == "NO-GO" and d.reasons[0].startswith("guardrail 'json_valid' significantly worse")


def test_latency_guardrail_is_relative(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 150), latency=[1000.0 + i % 9 for i in range(N)])
    make_run(tmp_path, "cand", acc=pattern(N, 190), latency=[1050.0 + i % 9 for i in range(N)])  # +5%: tolerated
    assert og.decide(crit(), tmp_path).verdict == "GO"
    make_run(tmp_path, "slow", acc=pattern(N, 190), latency=[1300.0 + i % 9 for i in range(N)])  # +30%
    d = og.decide(crit(candidate="slow"), tmp_path)
    assert d.verdict == "NO-GO" and "latency_ms" in d.reasons[0]


@pytest.mark.parametrize("case", ["failed", "dataset", "missing_run", "missing_metric", "few"])
def test_untrustworthy_or_thin_data_holds(tmp_path: Path, case: str) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 150))
    c = crit()
    if case == "failed":
        make_run(tmp_path, "cand", acc=pattern(N, 190), failed=[5])
        want = "1 failed example"
    elif case == "dataset":
        make_run(tmp_path, "cand", acc=pattern(N, 190), dataset_sha="f" * 64)
        want = "different datasets"
    elif case == "missing_run":
        want = "candidate run unavailable"
    elif case == "missing_metric":
        make_run(tmp_path, "cand", acc=pattern(N, 190))
        c = crit(success=(critmod.Criterion(metric="similarity", direction="increase"),))
        want = "no metric 'similarity'"
    else:
        make_run(tmp_path, "cand", acc=pattern(N, 190))
        c = crit(min_examples=500)
        want = "200 paired examples < min_examples 500"
    d = og.decide(c, tmp_path)
    assert d.verdict == "HOLD" and any(want in r for r in d.reasons), d.reasons


def test_online_gate_dispatches_offline_criteria(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(N, 150))
    make_run(tmp_path, "cand", acc=pattern(N, 100))
    d = decide(crit(), tmp_path, criteria_path="/x.yaml", criteria_sha256="abc", decided_by="me")
    assert d.verdict == "NO-GO" and d.exit_code == 3
    assert (d.criteria_path, d.criteria_sha256, d.decided_by) == ("/x.yaml", "abc", "me")
