"""One behaviour suite for every event sink backend (FileSink, RedisSink against a real
redis-server), the way Litestar tests its stores: the same tests, each backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from gateway import events as ev
from gateway.sinks import STREAM, EventSink, FileSink, RedisSink, open_sink
from gateway.sinks.rescue import files as rescue_files
from tests.support.archive import archived_events
from tests.support.procs import Proc, free_port, start_redis


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc: Proc
    proc, port = start_redis(tmp_path_factory.mktemp("sink-redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@dataclass
class Backend:
    name: str
    state: Path
    url: str | None

    def sink(self, **kw: Any) -> EventSink:
        kw.setdefault("rescue_dir", self.state.parent / "rescue")
        return open_sink(self.state, self.url, **kw)

    def stored(self) -> list[dict[str, Any]]:
        if self.url is None:
            return archived_events(self.state)
        r = redis.Redis.from_url(self.url)
        return [json.loads(fields[b"e"]) for _, fields in r.xrange(STREAM)]

    def break_storage(self) -> None:
        """Make every durable write of this backend fail (a full or read-only disk)."""
        if self.url is None:
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / "events").write_text("not a directory")
        else:
            self.url = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens
            self.state.mkdir(parents=True, exist_ok=True)
            (self.state / "spool").write_text("not a directory")

    def repair_storage(self, url: str | None) -> None:
        if self.url is None or url is not None:
            for name in ("events", "spool"):
                p = self.state / name
                if p.is_file():
                    p.unlink()
            if url is not None:
                self.url = url


@pytest.fixture(params=["file", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return Backend("file", tmp_path / "state", None)
    url = request.getfixturevalue("redis_url")
    redis.Redis.from_url(url).delete(STREAM)
    return Backend("redis", tmp_path / "state", url)


def _feedback(i: int) -> ev.Feedback:
    return ev.Feedback(event_id=f"fb{i:05d}", ts=ev.now_rfc3339(), tenant="acme", route="support",
                       experiment="exp", arm="control", phase=1, config_version=1, interaction_id=f"iid{i}",
                       metric="thumbs", value=1)


def _interaction(i: int, status: str = "ok") -> ev.Interaction:
    return ev.Interaction(event_id=f"{status[:3]}{i:05d}", ts=ev.now_rfc3339(), tenant="acme", route="support",
                          experiment="exp", arm="control", phase=1, config_version=1, interaction_id=f"iid{i}",
                          unit=None, traffic="live", model="m", stream=False, status=status,  # type: ignore[arg-type]
                          http_status=200 if status == "ok" else 401, latency_ms=1.0)


def test_open_sink_picks_the_backend(backend: Backend) -> None:
    sink = backend.sink()
    assert isinstance(sink, FileSink if backend.name == "file" else RedisSink)


def test_every_event_is_stored_in_order_once(backend: Backend) -> None:
    async def run() -> EventSink:
        sink = backend.sink(flush_interval_s=0.01, batch_max=37)
        await sink.start()
        for i in range(150):
            assert sink.emit(_interaction(i))
            assert sink.emit(_feedback(i))
        await sink.stop()
        return sink

    sink = asyncio.run(run())
    assert sink.clean_stop and sink.written == 300 and sink.queue_depth == 0
    ids = [e["event_id"] for e in backend.stored()]
    assert ids == [x for i in range(150) for x in (f"ok{i:05d}", f"fb{i:05d}")]


def test_rejected_events_never_crowd_out_accepted_ones(backend: Backend) -> None:
    """A full queue of junk (requests refused before routing) makes room for real events."""
    async def run() -> EventSink:
        sink = backend.sink(flush_interval_s=3600, max_queue=40)  # nothing flushes until stop
        await sink.start()
        for i in range(500):  # a flood of rejected requests first
            sink.emit(_interaction(i, "rejected"))
        for i in range(20):
            assert sink.emit(_interaction(i)), f"accepted interaction {i} refused"
            assert sink.emit(_feedback(i)), f"feedback {i} refused"
        assert not sink.emit(_feedback(999))  # the queue is all accepted events now: plain back-pressure
        await sink.stop()
        return sink

    sink = asyncio.run(run())
    stored = backend.stored()
    accepted = [e for e in stored if e.get("status") != "rejected"]
    rejected = [e for e in stored if e.get("status") == "rejected"]
    assert len(accepted) == 40 and not rejected  # the junk was evicted to make room
    assert sink.dropped_rejected == 500 and sink.dropped == 501


def test_rejected_events_get_at_most_their_share(backend: Backend) -> None:
    async def run() -> EventSink:
        sink = backend.sink(flush_interval_s=3600, max_queue=100, max_rejected=5)
        await sink.start()
        kept = sum(sink.emit(_interaction(i, "rejected")) for i in range(50))
        assert kept == 5
        for i in range(10):
            assert sink.emit(_feedback(i))
        await sink.stop()
        return sink

    sink = asyncio.run(run())
    stored = backend.stored()
    assert sum(e.get("status") == "rejected" for e in stored) == 5
    assert sum(e["kind"] == "feedback" for e in stored) == 10
    # accepted events are written before the rejected ones
    kinds = [e["kind"] for e in stored]
    assert kinds[:10] == ["feedback"] * 10
    assert sink.dropped_rejected == 45


def test_stop_with_storage_down_rescues_events_and_the_next_start_restores_them(backend: Backend) -> None:
    live_url = backend.url
    backend.break_storage()
    rescue = backend.state.parent / "rescue"

    async def first() -> EventSink:
        sink = backend.sink(flush_interval_s=0.01)
        await sink.start()
        for i in range(25):
            sink.emit(_feedback(i))
        await sink.stop()
        return sink

    sink = asyncio.run(first())
    assert not sink.clean_stop and sink.rescued == 25 and sink.lost_at_stop == 0 and sink.dropped == 0
    assert len(rescue_files(rescue)) == 1
    backend.repair_storage(live_url)

    async def second() -> EventSink:
        sink = backend.sink(flush_interval_s=0.01)
        await sink.start()
        sink.emit(_feedback(100))
        await sink.stop()
        return sink

    sink = asyncio.run(second())
    assert sink.clean_stop
    assert rescue_files(rescue) == []
    ids = sorted(e["event_id"] for e in backend.stored())
    assert ids == sorted([f"fb{i:05d}" for i in range(25)] + ["fb00100"])


def test_stop_with_nowhere_to_write_counts_the_loss(backend: Backend) -> None:
    backend.break_storage()
    rescue = backend.state.parent / "rescue"
    rescue.write_text("not a directory")

    async def run() -> EventSink:
        sink = backend.sink(flush_interval_s=0.01)
        await sink.start()
        for i in range(7):
            sink.emit(_feedback(i))
        await sink.stop()
        return sink

    sink = asyncio.run(run())
    assert sink.lost_at_stop == 7 and sink.dropped == 7 and not sink.clean_stop
    assert not sink.emit(_feedback(8))  # stopped


def test_unwritable_storage_turns_writable_false(backend: Backend) -> None:
    backend.break_storage()

    async def run() -> bool:
        sink = backend.sink(flush_interval_s=0.01)
        await sink.start()
        sink.emit(_feedback(1))
        await sink.flush()
        writable = sink.writable
        sink.rescue_dir = backend.state.parent / "rescue"
        await sink.stop()
        return writable

    assert asyncio.run(run()) is False


def test_bad_arguments_are_refused(backend: Backend) -> None:
    with pytest.raises(ValueError, match="max_queue"):
        backend.sink(max_queue=0)
    with pytest.raises(ValueError, match="flush_interval_s"):
        backend.sink(flush_interval_s=0)


def test_rescue_dir_is_private_and_never_a_planted_symlink(tmp_path: Path) -> None:
    import os
    import stat

    from gateway.sinks import rescue

    target = tmp_path / "elsewhere"
    target.mkdir()
    planted = tmp_path / "planted"
    planted.symlink_to(target)
    with pytest.raises(OSError, match="not a directory owned"):
        rescue.write(planted, [b'{"kind":"feedback"}'])
    assert list(target.iterdir()) == []
    ok = tmp_path / "rescue"
    path = rescue.write(ok, [b'{"kind":"feedback"}'])
    assert stat.S_IMODE(os.stat(ok).st_mode) == 0o700 and path.read_bytes() == b'{"kind":"feedback"}\n'
