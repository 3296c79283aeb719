"""Online analysis known answers: hand-built archive vs a direct numpy computation."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from evaluation import analysis as an
from evaluation import stats
from gateway import events as ev
from gateway.archive import ArchiveWriter
from tests.support.lazy import LazyModule

st = LazyModule("scipy.stats")

COMMON = dict(tenant="default", route="support", experiment="exp", config_version=1)


def _ix(iid: str, unit: str | None, arm: str, *, phase: int = 1, status: str = "ok", latency: float = 100.0,
        traffic: str = "live", ts: str = "2025-01-01T00:00:00.000Z") -> ev.Interaction:
    return ev.Interaction(event_id=f"e-{iid}", ts=ts, arm=arm, phase=phase, interaction_id=iid, unit=unit,
                          traffic=traffic, model=f"m-{arm}", stream=False, status=status, http_status=200,
                          latency_ms=latency, **COMMON)


def _fb(iid: str, arm: str, metric: str, value: object, ts: str = "2025-01-01T00:01:00.000Z",
        event_id: str | None = None, phase: int = 1) -> ev.Feedback:
    return ev.Feedback(event_id=event_id or ev.new_event_id(), ts=ts, arm=arm, phase=phase, interaction_id=iid,
                       metric=metric, value=value, **COMMON)


def test_rules_dedupe_latest_wins_zero_fill_and_exclusions(tmp_path: Path) -> None:
    events: list[ev.Event] = [
        _ix("a1", "ua", "control", latency=100), _ix("a2", "ua", "control", latency=300, status="timeout"),
        _ix("b1", "ub", "control", latency=200),
        _ix("c1", "uc", "treatment", latency=50), _ix("d1", "ud", "treatment", latency=70),
        _ix("d2", "ud", "treatment", latency=90),
        _ix("x1", None, "control"), _ix("e1", "ue", "treatment", traffic="eval"),
        _ix("p0", "up", "treatment", phase=0),
        # approved: a1 first false then true (latest wins); b1 true; c1 false; d1 true
        _fb("a1", "control", "approved", False, ts="2025-01-01T00:01:00.000Z"),
        _fb("a1", "control", "approved", True, ts="2025-01-01T00:02:00.000Z"),
        _fb("b1", "control", "approved", True), _fb("c1", "treatment", "approved", False),
        _fb("d1", "treatment", "approved", True),
        _fb("x1", "control", "approved", False), _fb("e1", "treatment", "approved", False),  # excluded
        # thumbs -1/+1 -> 0/1; a duplicate event (same id) counted once
        _fb("a1", "control", "thumbs", 1, event_id="dup"), _fb("a1", "control", "thumbs", 1, event_id="dup"),
        _fb("c1", "treatment", "thumbs", -1),
        _fb("d2", "treatment", "edited_response", "fixed text"),
        _fb("a2", "control", "review", {"overall": 4, "quality": 8}),
        _fb("b1", "control", "review", {"overall": 2, "quality": 5}),
    ]
    events.append(_fb("a1", "control", "thumbs", 1, event_id="dup"))
    ArchiveWriter(tmp_path).write(events)
    a = an.analyze(tmp_path, "exp", expected_weights={"control": 0.5, "treatment": 0.5})
    assert a.phase == 1 and a.phases == (0, 1)
    assert {s.name: (s.units, s.interactions) for s in a.arms} == {"control": (2, 3), "treatment": (2, 3)}
    m = a.metrics
    # approved is a ratio metric over interactions with feedback.
    assert m["approved"].kind == "ratio"
    assert m["approved"].arms["control"].mean == pytest.approx(1.0)  # a1 true (latest), b1 true
    assert m["approved"].arms["treatment"].mean == pytest.approx(0.5)
    assert m["approved"].arms["treatment"].observations == 2
    assert m["thumbs"].arms["control"].mean == 1.0 and m["thumbs"].arms["control"].observations == 1
    assert m["thumbs"].arms["treatment"].mean == 0.0
    # edited_response over all interactions, per-unit means: uc 0, ud 1/2 -> 0.25 treatment;
    # control never logged one: no data there (not a zero)
    assert m["edited_response"].arms["treatment"].mean == pytest.approx(0.25)
    assert m["edited_response"].arms["treatment"].coverage == pytest.approx(1 / 3)
    assert not m["edited_response"].has_data("control")
    # error and latency: unit means. ua: error .5, latency 200; ub: 0, 200
    assert m["error"].arms["control"].mean == pytest.approx(0.25)
    assert m["latency_ms"].arms["control"].mean == pytest.approx(200.0)
    assert m["latency_ms"].arms["treatment"].mean == pytest.approx((50 + 80) / 2)
    assert m["review.overall"].arms["control"].mean == pytest.approx(3.0)
    assert m["review.quality"].arms["control"].observations == 2
    assert not m["review.overall"].has_data("treatment")


def test_lifts_match_direct_computation(tmp_path: Path) -> None:
    rng = random.Random(5)
    events: list[ev.Event] = []
    per_unit: dict[str, dict[str, list[float]]] = {"control": {}, "treatment": {}}
    fb_x: dict[str, dict[str, list[float]]] = {"control": {}, "treatment": {}}
    for u in range(300):
        arm = "control" if u % 2 else "treatment"
        for k in range(rng.randint(1, 4)):
            iid = f"i{u}-{k}"
            lat = rng.gauss(500 if arm == "control" else 450, 80)
            events.append(_ix(iid, f"u{u}", arm, latency=lat))
            per_unit[arm].setdefault(f"u{u}", []).append(lat)
            if rng.random() < 0.5:
                v = rng.randint(1, 5)
                events.append(_fb(iid, arm, "csat", v))
                fb_x[arm].setdefault(f"u{u}", []).append(v)
    ArchiveWriter(tmp_path).write(events)
    a = an.analyze(tmp_path, "exp", expected_weights={"control": 0.5, "treatment": 0.5}, method="fixed")
    c = np.array([np.mean(v) for v in per_unit["control"].values()])
    t = np.array([np.mean(v) for v in per_unit["treatment"].values()])
    ref = st.ttest_ind(t, c, equal_var=False)
    lift = a.metrics["latency_ms"].lifts["treatment"]
    assert lift.absolute.estimate == pytest.approx(t.mean() - c.mean())
    assert lift.absolute.p_value == pytest.approx(ref.pvalue)
    assert lift.absolute.low == pytest.approx(ref.confidence_interval().low)
    assert lift.relative.estimate == pytest.approx(t.mean() / c.mean() - 1)
    # csat: ratio of sums with per-unit sums over the units that have a csat
    def moments(arm: str) -> stats.RatioMoments:
        units = fb_x[arm]
        x = [sum(v) for v in units.values()]
        y = [len(v) for v in units.values()]
        return stats.RatioMoments.from_values(x, y)
    exp = stats.ratio_compare(moments("control"), moments("treatment"))
    got = a.metrics["csat"].lifts["treatment"].absolute
    assert got.estimate == pytest.approx(exp.estimate) and got.high == pytest.approx(exp.high)
    assert a.metrics["csat"].arms["control"].units == len(fb_x["control"]) < len(per_unit["control"])
    assert a.srm is not None and a.srm.p_value == pytest.approx(1.0)


def test_unknown_experiment_and_phase_errors(tmp_path: Path) -> None:
    ArchiveWriter(tmp_path).write([_ix("a", "u", "control")])
    with pytest.raises(an.AnalysisError, match="no interactions for experiment 'nope'"):
        an.analyze(tmp_path, "nope")
    with pytest.raises(an.AnalysisError, match="no phase 7"):
        an.analyze(tmp_path, "exp", phase=7)
    with pytest.raises(an.AnalysisError, match="no event archive"):
        an.analyze(tmp_path / "empty", "exp")
