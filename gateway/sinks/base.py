"""The event sink interface and the queue every backend shares.

`emit(event)` encodes the event (about a microsecond; the event object is freed at once,
so queued events never burden the cyclic GC) and appends the line to an in-memory queue
(never blocks, never raises). A background task flushes what is queued every
`flush_interval_s` (sooner when a batch fills): one batch, one write and one fsync per
interval. Only the blocking syscalls run in a worker thread. A backend (`FileSink`,
`RedisSink`) only says how a batch is stored (`_store`).

Priority: interactions with `status: rejected` (requests refused before routing: no or
invalid key, bad body) go to their own queue, bounded to `max_rejected` (default a tenth
of `max_queue`) and flushed after the accepted events. When the queue is full, the oldest
rejected event is dropped to make room for an accepted interaction or feedback; a
rejected event is never stored at an accepted one's expense. Every drop is counted
(`abgate_events_total{outcome="dropped"}`, and `dropped_rejected` on the sink).

Bounds and loss window:
  Events are buffered in memory for at most `flush_interval_s` (default 200 ms) before
  they are written. A graceful stop (SIGTERM) flushes everything; when the primary
  storage still refuses the rest (disk full), the rest is written to the rescue spool
  (`gateway.sinks.rescue`, another file system) and the stop is reported unclean; the
  next start moves rescued events back. So the only loss window is a hard kill (kill -9,
  OOM, power loss): up to one flush interval of events, never more than `max_queue`
  (default 100,000). While the storage is unwritable, requests keep flowing, `writable`
  turns false (so /readyz answers 503), events stay queued up to `max_queue`, and every
  event beyond that is dropped and counted.
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import msgspec
import structlog

import gateway.sinks.rescue as rescue
from gateway import events as ev

log = structlog.get_logger("gateway.sinks")

MAX_BACKOFF_S = 5.0
STOP_ATTEMPTS = 5


class SinkMetrics(Protocol):
    def event(self, kind: str, outcome: str, n: int = 1) -> None: ...
    def set_queue_depth(self, n: int) -> None: ...


# A queued event: (kind, date partition YYYY-MM-DD, encoded JSON line).
Queued = tuple[str, str, bytes]
_encode = msgspec.json.Encoder().encode


def kind_of(event: ev.Event) -> str:
    return str(type(event).__struct_config__.tag)


def is_rejected(event: ev.Event) -> bool:
    return isinstance(event, ev.Interaction) and event.status == "rejected"


class EventSink:
    """The sink interface and shared queue; one per process, started in the app lifespan.
    Subclasses implement `_store` (and may hook `_open`, `_close`, `_before_flush`)."""

    backend = "abstract"

    def __init__(
        self,
        state_dir: Path | str,
        *,
        metrics: SinkMetrics | None = None,
        flush_interval_s: float = 0.2,
        max_queue: int = 100_000,
        max_rejected: int | None = None,
        batch_max: int = 2_000,
        rescue_dir: Path | None = None,
    ):
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be > 0")
        self.state_dir = Path(state_dir)
        self.metrics = metrics
        self.flush_interval_s = flush_interval_s
        self.max_queue = max_queue
        self.max_rejected = max(0, min(max_queue, max_queue // 10 if max_rejected is None else max_rejected))
        self.batch_max = max(1, batch_max)
        self.rescue_dir = rescue_dir or rescue.rescue_dir(self.state_dir)
        self._queue: deque[Queued] = deque()
        self._rejected: deque[Queued] = deque()
        self._inflight = 0  # events taken from the queues but not yet stored
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = False
        self._lock = asyncio.Lock()  # one flush at a time (loop vs. stop)
        self._storage_ok = True  # last write succeeded
        self._failures = 0
        self.dropped = 0
        self.dropped_rejected = 0
        self.written = 0
        self.rescued = 0  # events written to the rescue spool at stop
        self.lost_at_stop = 0
        self.rescue_file: Path | None = None

    # -- public interface --------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return len(self._queue) + len(self._rejected) + self._inflight

    @property
    def writable(self) -> bool:
        """False while events cannot be stored anywhere durable (readyz -> 503)."""
        return self._storage_ok

    @property
    def clean_stop(self) -> bool:
        """After `stop()`: True when every queued event reached the primary storage."""
        return self._stopped and self.rescued == 0 and self.lost_at_stop == 0

    def emit(self, event: ev.Event) -> bool:
        """Queue `event`; False = dropped and counted. Loop thread only, never raises."""
        kind = kind_of(event)
        low = is_rejected(event)
        if self._stopped:
            return self._drop(kind, low, "sink stopped")
        if low:
            if len(self._rejected) >= self.max_rejected or self.queue_depth >= self.max_queue:
                return self._drop(kind, low, "rejected-event share full")
        elif self.queue_depth >= self.max_queue:
            if not self._rejected:
                return self._drop(kind, low, "queue full")
            self._rejected.popleft()  # make room: a rejected event goes first, never an accepted one
            self._drop("interaction", True, "evicted for an accepted event")
        try:
            line = _encode(event)
        except (TypeError, ValueError, msgspec.EncodeError) as exc:  # a value JSON cannot hold
            self.dropped += 1
            self._count(kind, "dropped")
            log.error("event_unencodable", kind=kind, error=str(exc))
            return False
        (self._rejected if low else self._queue).append((kind, event.ts[:10], line))
        if len(self._queue) >= self.batch_max and self._wake is not None:
            self._wake.set()
        return True

    async def start(self) -> None:
        if self._task is not None:
            return
        await self._open()
        await self._recover_rescued()
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"abgate-event-sink-{self.backend}")

    async def stop(self) -> None:
        """Flush every queued event; what the primary storage still refuses goes to the
        rescue spool (reported, `clean_stop` false); only what no disk takes is lost (logged)."""
        if self._stopped:
            return
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            try:
                await self._task
            except Exception:  # the loop logs its own errors; the drain below still runs
                log.exception("event_sink_loop_failed")
        for attempt in range(STOP_ATTEMPTS):  # a brief outage at shutdown does not push events aside
            await self._flush_all()
            if not self._queue and not self._rejected:
                break
            if attempt + 1 < STOP_ATTEMPTS:
                await asyncio.sleep(min(0.1 * 2**attempt, 1.0))  # 0.1 + 0.2 + 0.4 + 0.8 s in all
        rest = [*self._queue, *self._rejected]
        self._queue.clear()
        self._rejected.clear()
        if rest:
            await self._rescue(rest)
        self._stopped = True
        self._set_depth()
        await self._close()

    async def flush(self) -> None:
        """Store everything queued right now (tests, admin)."""
        await self._flush_all()

    # -- backend hooks -----------------------------------------------------------------------

    async def _open(self) -> None:
        return None

    async def _close(self) -> None:
        return None

    async def _before_flush(self) -> None:
        return None

    async def _store(self, batch: list[Queued]) -> list[Queued]:
        """Store a batch; return the events that could not be stored (requeued in order)."""
        raise NotImplementedError

    async def _store_lines(self, lines: list[bytes]) -> None:
        """Store recovered encoded lines (rescue files) now; raise OSError/ConnectionError if not."""
        batch = [(_line_kind(ln), _line_date(ln), ln) for ln in lines]
        rest = await self._store(batch)
        if rest:
            raise OSError("primary event storage refused the rescued events")

    def _backoff_active(self) -> bool:
        return not self._storage_ok

    # -- background loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._next_wait())
            except TimeoutError:
                pass
            self._wake.clear()
            if self._stopping:
                break
            try:
                await self._flush_all()
            except Exception:  # never let the loop die: events would pile up silently
                log.exception("event_flush_failed")

    def _next_wait(self) -> float:
        if self._backoff_active():
            return float(min(self.flush_interval_s * 2 ** min(self._failures, 8), MAX_BACKOFF_S))
        return self.flush_interval_s

    async def _flush_all(self) -> None:
        async with self._lock:
            await self._before_flush()
            # Only what is queued now: events arriving during the write wait for the next
            # interval. Accepted events first; rejected ones only once those are stored.
            for queue in (self._queue, self._rejected):
                if not await self._flush_queue(queue):
                    break
            self._set_depth()

    async def _flush_queue(self, queue: deque[Queued]) -> bool:
        todo = len(queue)
        while queue and todo > 0:
            batch = [queue.popleft() for _ in range(min(self.batch_max, len(queue), todo))]
            todo -= len(batch)
            self._inflight = len(batch)
            try:
                rest = await self._store(batch)
            finally:
                self._inflight = 0
            if rest:
                queue.extendleft(reversed(rest))  # keep order; retried next round
                return False
        return True

    # -- rescue spool (stop with the storage down) ---------------------------------------------

    async def _rescue(self, rest: list[Queued]) -> None:
        try:
            path = await asyncio.to_thread(rescue.write, self.rescue_dir, [line for _, _, line in rest])
        except OSError as exc:
            self.lost_at_stop = len(rest)
            self.dropped += len(rest)
            self._count_each(rest, "dropped")
            log.error("events_lost_at_shutdown", n=len(rest), reason="storage and rescue spool unwritable",
                      rescue_dir=str(self.rescue_dir), error=str(exc))
            rescue.report_unclean(self.rescue_dir, lost=len(rest))
            return
        self.rescued = len(rest)
        self.rescue_file = path
        self._count_each(rest, "spooled")
        log.error("events_rescued_at_shutdown", n=len(rest), file=str(path),
                  detail="primary event storage unwritable; moved back into it on the next start")

    async def _recover_rescued(self) -> None:
        files = await asyncio.to_thread(rescue.files, self.rescue_dir)
        for path in files:
            with rescue.claim(path) as lines:
                if lines is None:
                    continue
                try:
                    for i in range(0, len(lines), self.batch_max):
                        await self._store_lines(lines[i:i + self.batch_max])
                except (OSError, ConnectionError) as exc:
                    log.error("rescued_events_not_recovered", file=str(path), error=str(exc))
                    return
                await asyncio.to_thread(rescue.done, path)
            log.warning("rescued_events_recovered", file=str(path), events=len(lines))

    # -- bookkeeping --------------------------------------------------------------------------

    def _drop(self, kind: str, rejected: bool, reason: str) -> bool:
        self.dropped += 1
        if rejected:
            self.dropped_rejected += 1
        self._count(kind, "dropped")
        if rejected:
            if self.dropped_rejected == 1 or self.dropped_rejected % 10_000 == 0:
                log.warning("rejected_event_dropped", dropped_rejected=self.dropped_rejected, reason=reason)
        elif self.dropped - self.dropped_rejected in (1,) or self.dropped % 1000 == 0:
            log.warning("event_dropped", kind=kind, dropped_total=self.dropped, reason=reason,
                        max_queue=self.max_queue)
        return False

    def _mark_storage(self, ok: bool, exc: Exception | None = None) -> None:
        if ok:
            if not self._storage_ok:
                log.info("event_storage_recovered")
            self._storage_ok = True
            self._failures = 0
        else:
            if self._storage_ok:
                log.error("event_storage_unwritable", error=str(exc), queued=self.queue_depth)
            self._storage_ok = False
            self._failures += 1

    def _count(self, kind: str, outcome: str, n: int = 1) -> None:
        if self.metrics is not None:
            self.metrics.event(kind, outcome, n)

    def _count_each(self, batch: Sequence[Queued], outcome: str) -> None:
        if self.metrics is None:
            return
        for kind, n in Counter(item[0] for item in batch).items():
            self.metrics.event(kind, outcome, n)

    def _set_depth(self) -> None:
        if self.metrics is not None:
            self.metrics.set_queue_depth(self.queue_depth)


def _line_kind(line: bytes) -> str:
    # Cheap: the tag is always present; full decode is the archiver's job.
    i = line.find(b'"kind":"')
    if i < 0:
        return "other"
    j = line.find(b'"', i + 8)
    return line[i + 8:j].decode(errors="replace") if j > 0 else "other"


def _line_date(line: bytes) -> str:
    i = line.find(b'"ts":"')
    return line[i + 6:i + 16].decode(errors="replace") if i >= 0 else "1970-01-01"
