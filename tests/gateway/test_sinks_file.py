"""EventSink in embedded mode: batching, bounds, unwritable archive, graceful stop."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gateway import events as ev
from gateway.archive import ArchiveWriter
from gateway.metrics import Metrics
from gateway.sinks import open_sink as EventSink


def _feedback(i: int, ts: str | None = None) -> ev.Feedback:
    return ev.Feedback(event_id=f"fb{i:06d}", ts=ts or ev.now_rfc3339(), tenant="acme", route="support",
                       experiment="exp", arm="control", phase=1, config_version=3, interaction_id=f"iid{i}",
                       metric="thumbs", value=1 if i % 2 else -1)


def _interaction(i: int) -> ev.Interaction:
    return ev.Interaction(event_id=f"in{i:06d}", ts=ev.now_rfc3339(), tenant="acme", route="support",
                          experiment="exp", arm="treatment", phase=1, config_version=3, interaction_id=f"iid{i}",
                          unit="u" * 64, traffic="live", model="m", stream=False, status="ok", http_status=200,
                          latency_ms=12.5, messages=[{"role": "user", "content": f"hi {i}"}], response="ok")


def archived(state: Path) -> list[dict]:
    out = []
    for p in sorted((state / "events").rglob("*.jsonl")):
        out += [json.loads(line) for line in p.read_text().splitlines() if line]
    return out


def counter(metrics: Metrics, kind: str, outcome: str) -> float:
    text = metrics.render()[0].decode()
    needle = f'abgate_events_total{{kind="{kind}",outcome="{outcome}"}} '
    for line in text.splitlines():
        if line.startswith(needle):
            return float(line.split()[-1])
    return 0.0


def test_events_are_written_in_batches_with_every_field(tmp_path: Path) -> None:
    metrics = Metrics()

    async def run() -> None:
        sink = EventSink(tmp_path, metrics=metrics, flush_interval_s=0.02, batch_max=50)
        await sink.start()
        for i in range(120):
            assert sink.emit(_interaction(i))
            assert sink.emit(_feedback(i))
        await sink.stop()
        assert sink.queue_depth == 0

    asyncio.run(run())
    rows = archived(tmp_path)
    assert len(rows) == 240
    assert len({r["event_id"] for r in rows}) == 240
    inter = next(r for r in rows if r["event_id"] == "in000007")
    assert inter["kind"] == "interaction" and inter["arm"] == "treatment" and inter["latency_ms"] == 12.5
    assert inter["messages"] == [{"role": "user", "content": "hi 7"}]
    fb = next(r for r in rows if r["event_id"] == "fb000007")
    assert fb["kind"] == "feedback" and fb["value"] == 1 and fb["interaction_id"] == "iid7"
    # Order within one writer is preserved.
    assert [r["event_id"] for r in rows if r["kind"] == "interaction"] == [f"in{i:06d}" for i in range(120)]
    assert counter(metrics, "interaction", "written") == 120
    assert counter(metrics, "feedback", "written") == 120


def test_events_land_in_their_date_partition(tmp_path: Path) -> None:
    async def run() -> None:
        sink = EventSink(tmp_path, flush_interval_s=0.02)
        await sink.start()
        sink.emit(_feedback(1, ts="2024-03-01T23:59:59.999Z"))
        sink.emit(_feedback(2, ts="2024-03-02T00:00:00.000Z"))
        await sink.stop()

    asyncio.run(run())
    parts = sorted(p.parent.name for p in (tmp_path / "events").rglob("*.jsonl"))
    assert parts == ["date=2024-03-01", "date=2024-03-02"]


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    metrics = Metrics()

    async def run() -> None:
        # Long interval and a batch bigger than the bound: nothing flushes during emits.
        sink = EventSink(tmp_path, metrics=metrics, flush_interval_s=60, max_queue=10, batch_max=1000)
        await sink.start()
        results = [sink.emit(_feedback(i)) for i in range(15)]
        assert results == [True] * 10 + [False] * 5
        assert sink.queue_depth == 10 and sink.dropped == 5
        await sink.stop()

    asyncio.run(run())
    assert len(archived(tmp_path)) == 10
    assert counter(metrics, "feedback", "dropped") == 5
    assert counter(metrics, "feedback", "written") == 10


def test_stop_flushes_everything_queued(tmp_path: Path) -> None:
    async def run() -> None:
        sink = EventSink(tmp_path, flush_interval_s=3600, batch_max=100)
        await sink.start()
        for i in range(1234):
            sink.emit(_feedback(i))
        await sink.stop()
        # After stop nothing is accepted (and the refusal is counted).
        assert sink.emit(_feedback(99999)) is False

    asyncio.run(run())
    assert len(archived(tmp_path)) == 1234


def test_unwritable_archive_keeps_events_bounded_then_recovers(tmp_path: Path) -> None:
    """Disk-full stand-in: `events` is a file, so no partition directory can be created."""
    blocker = tmp_path / "events"
    blocker.write_text("not a directory")
    metrics = Metrics()

    async def run() -> None:
        sink = EventSink(tmp_path, metrics=metrics, flush_interval_s=0.01, max_queue=50)
        await sink.start()
        for i in range(30):
            assert sink.emit(_feedback(i))
        for _ in range(200):
            if not sink.writable:
                break
            await asyncio.sleep(0.01)
        assert sink.writable is False
        assert sink.queue_depth == 30  # kept in memory, not lost
        accepted = [sink.emit(_feedback(100 + i)) for i in range(40)]
        assert accepted.count(True) == 20 and accepted.count(False) == 20
        assert counter(metrics, "feedback", "dropped") == 20
        # The disk comes back: everything kept is written, in order, exactly once.
        blocker.unlink()
        await sink.flush()
        assert sink.writable is True
        assert sink.queue_depth == 0
        await sink.stop()

    asyncio.run(run())
    ids = [r["event_id"] for r in archived(tmp_path)]
    assert ids == [f"fb{i:06d}" for i in range(30)] + [f"fb{100 + i:06d}" for i in range(20)]


def test_stop_with_unwritable_archive_counts_the_loss(tmp_path: Path) -> None:
    """Archive and rescue spool both unwritable: the loss is counted and the stop is unclean."""
    (tmp_path / "events").write_text("x")
    (tmp_path / "rescue").write_text("x")  # not a directory either
    metrics = Metrics()

    async def run() -> EventSink:
        sink = EventSink(tmp_path, metrics=metrics, flush_interval_s=0.01, rescue_dir=tmp_path / "rescue")
        await sink.start()
        for i in range(7):
            sink.emit(_feedback(i))
        await sink.stop()
        return sink

    sink = asyncio.run(run())
    assert sink.dropped == 7 and sink.lost_at_stop == 7 and not sink.clean_stop
    assert counter(metrics, "feedback", "dropped") == 7


def test_archive_writer_cuts_a_torn_tail_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails part-way leaves the file as it was, so a retry cannot duplicate."""
    import gateway.archive as archive

    w = ArchiveWriter(tmp_path, writer="t")
    w.write_lines([("2024-01-01", b'{"a":1}')])
    real_write = archive.os.write
    calls = {"n": 0}

    def flaky(fd: int, data: memoryview) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, data[:5])  # partial write...
        raise OSError(28, "No space left on device")  # ...then the disk is full

    monkeypatch.setattr(archive.os, "write", flaky)
    with pytest.raises(OSError):
        w.write_lines([("2024-01-01", b'{"b":2}'), ("2024-01-01", b'{"c":3}')])
    monkeypatch.setattr(archive.os, "write", real_write)
    files = list((tmp_path / "events").rglob("*.jsonl"))
    assert len(files) == 1 and files[0].read_bytes() == b'{"a":1}\n'


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_queue"):
        EventSink(tmp_path, max_queue=0)
    with pytest.raises(ValueError, match="flush_interval_s"):
        EventSink(tmp_path, flush_interval_s=0)
