"""Analysis rules from issue 16: parsed timestamps, units with data, coverage, count metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import analysis as an
from gateway import events as ev
from gateway import metric_catalog as catalog
from gateway.archive import ArchiveWriter

COMMON = dict(tenant="default", route="support", experiment="exp", config_version=1, phase=1)
W = {"control": 0.5, "treatment": 0.5}


def _ix(iid: str, unit: str, arm: str, ts: str = "2025-01-01T00:00:00.000Z") -> ev.Interaction:
    return ev.Interaction(event_id=f"e-{iid}", ts=ts, arm=arm, interaction_id=iid, unit=unit, traffic="live",
                          model="m", stream=False, status="ok", http_status=200, latency_ms=10.0, **COMMON)


def _fb(iid: str, unit: str, arm: str, metric: str, value: object, ts: str, eid: str | None = None) -> ev.Feedback:
    return ev.Feedback(event_id=eid or ev.new_event_id(), ts=ts, arm=arm, interaction_id=iid, unit=unit,
                       metric=metric, value=value, **COMMON)


def test_latest_feedback_wins_by_parsed_time_not_text(tmp_path: Path) -> None:
    # As text "...:05Z" > "...:05.900Z" ('Z' > '.'), but 05.900 is later. And an offset:
    # 01:00:06+01:00 is 00:00:06Z, later than both.
    events: list[ev.Event] = [_ix("a", "ua", "control"), _ix("b", "ub", "control"), _ix("c", "uc", "treatment")]
    events += [
        _fb("a", "ua", "control", "approved", True, "2025-01-01T00:00:05Z", "z-1"),
        _fb("a", "ua", "control", "approved", False, "2025-01-01T00:00:05.900Z", "a-2"),
        _fb("b", "ub", "control", "approved", False, "2025-01-01T00:00:05.900Z", "b-1"),
        _fb("b", "ub", "control", "approved", True, "2025-01-01T01:00:06+01:00", "b-2"),
    ]
    ArchiveWriter(tmp_path).write(events)
    a = an.analyze(tmp_path, "exp", expected_weights=W)
    # a -> False (later by time), b -> True (the offset time is the latest)
    assert a.metrics["approved"].arms["control"].mean == pytest.approx(0.5)


def test_days_from_parsed_timestamps(tmp_path: Path) -> None:
    ArchiveWriter(tmp_path).write([_ix("a", "ua", "control", "2025-01-01T00:00:00Z"),
                                   _ix("b", "ub", "treatment", "2025-01-03T12:00:00.500+00:00")])
    a = an.analyze(tmp_path, "exp", expected_weights=W)
    assert a.days == pytest.approx(2.5, abs=1e-5)
    assert a.first_ts == "2025-01-01T00:00:00.000Z"


def test_ratio_units_count_units_with_data_and_coverage(tmp_path: Path) -> None:
    events: list[ev.Event] = []
    for u in range(10):
        arm = "control" if u < 5 else "treatment"
        for k in range(2):
            events.append(_ix(f"i{u}-{k}", f"u{u}", arm))
        if u % 5 < 2:  # 2 units per arm rate csat on one interaction each
            events.append(_fb(f"i{u}-0", f"u{u}", arm, "csat", 3 + u % 2, "2025-01-01T00:01:00Z"))
    events.append(_fb("i0-1", "u0", "control", "policy_violation", True, "2025-01-01T00:01:00Z"))
    ArchiveWriter(tmp_path).write(events)
    a = an.analyze(tmp_path, "exp", expected_weights=W, metrics=["policy_violation"])
    csat = a.metrics["csat"]
    assert csat.kind == "ratio" and catalog.aggregation("csat") == "ratio"
    assert csat.arms["control"].units == 2  # not the 5 units of the arm
    assert csat.arms["control"].coverage == pytest.approx(2 / 10)
    pv = a.metrics["policy_violation"]
    assert pv.kind == "mean" and pv.arms["control"].units == 5 and pv.arms["control"].mean == pytest.approx(0.1)
    assert not pv.has_data("treatment")  # never logged there: no data, not zero
    assert "unit_mean" in pv.definition


def test_thumbs_values_are_what_the_api_accepts() -> None:
    # The catalog says +1/-1; the old SQL also took 'up'/'down' strings the API never lets in.
    assert catalog.THUMBS_VALUES == (1, -1)
    assert "'up'" not in an._VALUE_SQL


def test_analyze_cli_reports_method_coverage_and_definitions(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from abgate.cli.main import app

    events: list[ev.Event] = []
    for u in range(20):
        arm = "control" if u % 2 else "treatment"
        events.append(_ix(f"i{u}", f"u{u}", arm))
        events.append(_fb(f"i{u}", f"u{u}", arm, "approved", u % 3 == 0, "2025-01-01T00:01:00Z"))
    ArchiveWriter(tmp_path).write(events)
    r = CliRunner().invoke(app, ["analyze", "exp", "--json", "--state-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["inference"]["method"] == "sequential"
    m = out["metrics"]["approved"]
    assert m["definition"].startswith("ratio:") and m["arms"]["control"]["coverage"] == 1.0
    assert m["lifts"]["treatment"]["absolute"]["method"] == "sequential"
    r = CliRunner().invoke(app, ["analyze", "exp", "--json", "--inference", "fixed", "--state-dir", str(tmp_path)])
    assert json.loads(r.output)["metrics"]["approved"]["lifts"]["treatment"]["absolute"]["method"] == "fixed"
    r = CliRunner().invoke(app, ["analyze", "exp", "--inference", "bayes", "--state-dir", str(tmp_path)])
    assert r.exit_code == 2


def test_an_interaction_logged_twice_counts_once_and_errs_if_either_event_did(tmp_path: Path) -> None:
    # "a" is a replayed line (the same event twice); "b" has a second, failed event a minute later
    a = _ix("a", "ua", "control")
    b_ok = _ix("b", "ub", "control")
    b_err = ev.Interaction(event_id="e-b-2", ts="2025-01-01T00:01:00.000Z", arm="control", interaction_id="b",
                           unit="ub", traffic="live", model="m", stream=False, status="upstream_error",
                           http_status=502, latency_ms=30.0, **COMMON)
    events: list[ev.Event] = [a, a, b_ok, b_err, _ix("c", "uc", "treatment")]
    ArchiveWriter(tmp_path).write(events)
    res = an.analyze(tmp_path, "exp", expected_weights=W)
    assert [(a.name, a.interactions) for a in res.arms] == [("control", 2), ("treatment", 1)]
    err = res.metrics["error"].arms["control"]
    assert err.units == 2 and err.mean == pytest.approx(0.5)  # ua: 0, ub: 1 (one of its events failed)
    assert res.first_ts == "2025-01-01T00:00:00.000Z" and res.last_ts == "2025-01-01T00:00:00.000Z"


def test_event_files_outside_a_date_partition_are_read(tmp_path: Path) -> None:
    ArchiveWriter(tmp_path).write([_ix("a", "ua", "control")])
    stray = tmp_path / "events" / "restored" / "old.jsonl"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(ev.encode(_ix("b", "ub", "treatment")) + b"\n")
    res = an.analyze(tmp_path, "exp", expected_weights=W)
    assert [a.interactions for a in res.arms] == [1, 1]
