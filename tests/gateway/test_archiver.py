"""Redis mode against a real redis-server: stream, spool + replay, archiver dedupe and recovery."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from gateway import events as ev
from gateway.archive import ArchiveWriter
from gateway.archiver import DEDUPE_PREFIX, GROUP, Archiver, ArchiverError
from gateway.metrics import Metrics
from gateway.sinks import STREAM
from gateway.sinks import open_sink as EventSink
from gateway.spool import Spool
from tests.support.archive import archived_events as archived
from tests.support.procs import apoll_until, start_redis

pytestmark = pytest.mark.integration


def _fb(i: int) -> ev.Feedback:
    return ev.Feedback(event_id=f"ev{i:06d}", ts=ev.now_rfc3339(), tenant="acme", route="support",
                       experiment="exp", arm="control", phase=1, config_version=1, interaction_id=f"iid{i}",
                       metric="csat", value=1 + i % 5)


def test_sink_xadds_batches_and_archiver_writes_them_once(tmp_path: Path, redis_server) -> None:
    _, url = redis_server
    state = tmp_path / "state"

    async def run() -> None:
        sink = EventSink(state, url, flush_interval_s=0.02, batch_max=64)
        await sink.start()
        for i in range(300):
            sink.emit(_fb(i))
        await sink.stop()
        assert sink.written == 300

    asyncio.run(run())
    r = redis.Redis.from_url(url)
    assert r.xlen(STREAM) == 300
    assert not (state / "events").exists()  # the gateway itself writes no archive in Redis mode
    arch = Archiver(url, state, consumer="a1", block_ms=50)
    stats = arch.run(until_idle=True)
    arch.close()
    assert stats.written == 300 and stats.duplicates == 0
    rows = archived(state)
    assert [row["event_id"] for row in rows] == [f"ev{i:06d}" for i in range(300)]
    assert rows[7]["value"] == 3 and rows[7]["kind"] == "feedback"
    assert r.xlen(STREAM) == 0  # acked entries are deleted
    assert r.xinfo_groups(STREAM)[0]["pending"] == 0


def test_redis_outage_spools_then_replays_without_loss_or_duplicates(tmp_path: Path) -> None:
    state = tmp_path / "state"
    proc, port = start_redis(tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    metrics = Metrics()
    try:
        async def run() -> None:
            nonlocal proc
            sink = EventSink(state, url, metrics=metrics, flush_interval_s=0.02)
            await sink.start()
            for i in range(100):
                sink.emit(_fb(i))
            await sink.flush()
            proc.stop()  # Redis goes away mid-run
            for i in range(100, 250):
                assert sink.emit(_fb(i))
                if i % 25 == 0:
                    await asyncio.sleep(0.03)
            await sink.flush()
            assert sink.writable  # the spool is durable storage
            assert not sink.redis_connected
            assert Spool(state).files(), "events must be spooled while Redis is down"
            proc, _ = start_redis(tmp_path, port=port)  # same port and data dir (AOF)
            for i in range(250, 300):
                sink.emit(_fb(i))
            await apoll_until(lambda: not (Spool(state).files() or sink.queue_depth),
                              "the spool replayed once Redis is back", timeout=20)
            await sink.stop()

        asyncio.run(run())
        text = metrics.render()[0].decode()
        assert 'abgate_events_total{kind="feedback",outcome="spooled"}' in text
        assert 'abgate_events_total{kind="feedback",outcome="replayed"}' in text
        arch = Archiver(url, state, consumer="a1", block_ms=50)
        arch.run(until_idle=True)
        arch.close()
        ids = [row["event_id"] for row in archived(state)]
        assert sorted(ids) == [f"ev{i:06d}" for i in range(300)]  # zero loss, zero duplicates
    finally:
        proc.stop()


def test_replayed_copies_are_archived_once(tmp_path: Path, redis_server) -> None:
    """A spool replay that overlaps what already reached the stream (or a second archiver
    reading the copy) must not duplicate: dedupe by event_id across the group."""
    _, url = redis_server
    r = redis.Redis.from_url(url)
    for i in range(20):
        r.xadd(STREAM, {b"e": ev.encode(_fb(i))})
    for i in range(10, 30):  # overlapping replay of 10..19 plus new 20..29
        r.xadd(STREAM, {b"e": ev.encode(_fb(i))})
    a1 = Archiver(url, tmp_path, consumer="a1", batch=7, block_ms=50)
    a2 = Archiver(url, tmp_path, consumer="a2", batch=5, block_ms=50)
    a1.ensure_group()
    # Interleave two archivers of the same group.
    while a1.step(block=False) + a2.step(block=False):
        pass
    a1.close()
    a2.close()
    ids = [row["event_id"] for row in archived(tmp_path)]
    assert sorted(ids) == [f"ev{i:06d}" for i in range(30)]
    assert a1.stats.duplicates + a2.stats.duplicates == 10


def _leave_pending(url: str, consumer: str, n: int) -> list[bytes]:
    """Deliver `n` entries to `consumer` without acking them (the archiver then dies)."""
    r = redis.Redis.from_url(url)
    try:
        r.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError:
        pass
    for i in range(n):
        r.xadd(STREAM, {b"e": ev.encode(_fb(i))})
    resp = r.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=n)
    return [eid for eid, _ in resp[0][1]]


def test_crash_after_write_before_ack_does_not_duplicate(tmp_path: Path, redis_server) -> None:
    _, url = redis_server
    r = redis.Redis.from_url(url)
    ids = _leave_pending(url, "a1", 10)
    # The dead archiver had claimed all 10 and written the first 6 (fsync), then died.
    for i, eid in enumerate(ids):
        r.set(DEDUPE_PREFIX + f"ev{i:06d}", eid)
    ArchiveWriter(tmp_path, writer="archive-a1").write([_fb(i) for i in range(6)])
    arch = Archiver(url, tmp_path, consumer="a1", block_ms=50, lease_s=1)
    stats = arch.run(until_idle=True)
    arch.close()
    assert stats.recovered == 10 and stats.written == 4 and stats.duplicates == 6
    assert sorted(row["event_id"] for row in archived(tmp_path)) == [f"ev{i:06d}" for i in range(10)]
    assert r.xinfo_groups(STREAM)[0]["pending"] == 0


def test_dead_consumers_entries_are_taken_over(tmp_path: Path, redis_server) -> None:
    _, url = redis_server
    _leave_pending(url, "dead", 12)
    arch = Archiver(url, tmp_path, consumer="alive", block_ms=50, claim_idle_ms=0)
    stats = arch.run(until_idle=True)
    arch.close()
    assert stats.written == 12
    assert sorted(row["event_id"] for row in archived(tmp_path)) == [f"ev{i:06d}" for i in range(12)]


def test_unreadable_entries_are_set_aside_and_counted(tmp_path: Path, redis_server) -> None:
    _, url = redis_server
    r = redis.Redis.from_url(url)
    r.xadd(STREAM, {b"e": b"{not json"})
    r.xadd(STREAM, {b"e": b'{"kind":"feedback","event_id":"x"}'})  # missing required fields
    r.xadd(STREAM, {b"e": ev.encode(_fb(1))})
    arch = Archiver(url, tmp_path, consumer="a1", block_ms=50)
    stats = arch.run(until_idle=True)
    arch.close()
    assert stats.rejected == 2 and stats.written == 1
    rejected = (tmp_path / "rejected" / "archive-a1.jsonl").read_text().splitlines()
    assert len(rejected) == 2 and "{not json" in json.loads(rejected[0])["raw"]
    assert r.xinfo_groups(STREAM)[0]["pending"] == 0


def test_two_live_archivers_cannot_share_a_consumer_name(tmp_path: Path, redis_server) -> None:
    _, url = redis_server
    a = Archiver(url, tmp_path, consumer="same", lease_s=30)
    a.ensure_group()
    a.acquire_lease()
    b = Archiver(url, tmp_path, consumer="same", lease_s=30)
    with pytest.raises(ArchiverError, match="another archiver is running as consumer 'same'"):
        b.acquire_lease(wait_s=0.3)
    a.release_lease()
    b.acquire_lease(wait_s=0.3)  # free again once released
    b.release_lease()
    a.close()
    b.close()
