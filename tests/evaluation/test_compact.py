"""Compacting closed days to Parquet: same analysis, late appends never missed, corrupt days kept as JSONL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from evaluation import analysis as an
from evaluation import archive_sql, compact, compact_layout, synth
from gateway import events as ev
from gateway.archive import ArchiveWriter

W = {"control": 0.5, "treatment": 0.5}
ARMS = (synth.ArmSpec("control", "a", approved=0.5), synth.ArmSpec("treatment", "b", approved=0.6))


def _summary(a: an.Analysis) -> dict:
    return {name: (r.arms["treatment"].mean, r.arms["treatment"].units, r.lifts["treatment"].absolute.low)
            for name, r in a.metrics.items()} | {"arms": [(s.name, s.units, s.interactions) for s in a.arms]}


def test_compacted_archive_gives_the_same_analysis(tmp_path: Path) -> None:
    synth.generate(tmp_path, synth.Scenario(experiment="exp", arms=ARMS, units=300, days=5, seed=4))
    before = an.analyze(tmp_path, "exp", expected_weights=W)
    res = compact.compact(tmp_path, today=date(2025, 1, 4))
    assert {r.day: r.action for r in res if r.day < "2025-01-04"} == {f"2025-01-0{d}": "compacted" for d in (1, 2, 3)}
    assert all(r.action == "skipped" and "not closed" in r.reason for r in res if r.day >= "2025-01-04")
    parquet, jsonl = compact_layout.split_sources(tmp_path)
    assert len(parquet) == 3 and all("date=2025-01-0" in f for f in jsonl)
    after = an.analyze(tmp_path, "exp", expected_weights=W)
    a, b = _summary(after), _summary(before)
    assert a.keys() == b.keys() and a["arms"] == b["arms"]
    for k in a:
        if k != "arms":  # same numbers up to summation order
            assert a[k] == pytest.approx(b[k], rel=1e-9, nan_ok=True), k
    assert after.first_ts == before.first_ts and after.days == pytest.approx(before.days)
    assert [r.action for r in compact.compact(tmp_path, today=date(2025, 1, 4))][:3] == ["up to date"] * 3


def test_event_appended_to_a_compacted_day_is_read(tmp_path: Path) -> None:
    synth.generate(tmp_path, synth.Scenario(experiment="exp", arms=ARMS, units=100, days=2, seed=5))
    compact.compact(tmp_path, today=date(2025, 2, 1))
    assert len(compact_layout.split_sources(tmp_path)[0]) == 2
    n = an.analyze(tmp_path, "exp", expected_weights=W).arms[0].interactions
    late = ev.Interaction(event_id="late", ts="2025-01-01T12:00:00.000Z", tenant="default", route="support",
                          experiment="exp", arm="control", phase=1, config_version=1, interaction_id="late-1",
                          unit="late-unit", traffic="live", model="a", stream=False, status="ok", http_status=200,
                          latency_ms=5.0)
    ArchiveWriter(tmp_path, writer="replay").write([late])
    assert len(compact_layout.split_sources(tmp_path)[0]) == 1  # that day is read from JSONL again
    assert an.analyze(tmp_path, "exp", expected_weights=W).arms[0].interactions == n + 1


def test_day_with_unreadable_lines_stays_jsonl(tmp_path: Path) -> None:
    synth.generate(tmp_path, synth.Scenario(experiment="exp", arms=ARMS, units=50, days=1, seed=6))
    f = sorted((tmp_path / "events").rglob("*.jsonl"))[0]
    with open(f, "a") as fh:
        fh.write("{not json\n")
    res = compact.compact(tmp_path, today=date(2030, 1, 1))
    assert res[0].action == "skipped" and "unreadable" in res[0].reason
    assert an.analyze(tmp_path, "exp", expected_weights=W).archive.corrupt_lines == 1


def test_latest_feedback_one_form_keeps_whole_rows(tmp_path: Path) -> None:
    con = archive_sql.connect()
    con.execute("CREATE TABLE ev AS SELECT * FROM (VALUES ('feedback', 'i', 'm', '1', '2025-01-01T00:00:05Z', 'z', 'a'),"
                " ('feedback', 'i', 'm', '2', '2025-01-01T00:00:05.5Z', 'a', 'b')) t(kind, interaction_id, metric, value,"
                " ts, event_id, source)")
    rows = con.execute(archive_sql.latest_feedback_sql("ev", ("value", "source"))).fetchall()
    assert rows == [("i", "m", "2", "b")]
