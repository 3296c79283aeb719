"""Where feedback idempotency keys are remembered: one interface, one class per backend.

`claim(event_id)` is True the first time an id is seen (the caller writes the event) and
False for a repeat; `release(event_id)` forgets a claim whose event could not be queued.
Every store keeps an in-process LRU in front (`Deduper`), so a retry to the same process
never leaves it.

- `MemoryIdempotency`: the LRU alone (tests, a state dir that cannot hold SQLite).
- `SqliteIdempotency` (embedded): `<state>/run/idempotency.sqlite`, shared by every worker
  of the state dir and kept across restarts, `IDEMPOTENCY_TTL_S` (7 days).
- `RedisIdempotency` (Redis mode): `SET NX` with the same TTL, visible to every replica,
  through a `RedisGuard` (a hung Redis costs one call at most 250 ms; meanwhile claims
  are answered from the LRU and the event id stays deterministic, so a duplicate that
  slips through is still one event id downstream).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Protocol

import structlog

from gateway.redis_guard import RedisDown, RedisGuard, client

log = structlog.get_logger("abgate.idempotency")

IDEMPOTENCY_TTL_S = 7 * 24 * 3600
LRU_SIZE = 100_000
REDIS_KEY_PREFIX = "abgate:feedback:"


class IdempotencyStore(Protocol):
    async def claim(self, event_id: str) -> bool: ...
    async def release(self, event_id: str) -> None: ...
    async def close(self) -> None: ...


class MemoryIdempotency:
    def __init__(self, size: int = LRU_SIZE):
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        if event_id in self._seen:
            self._seen.move_to_end(event_id)
            return True
        return False

    def remember(self, event_id: str) -> None:
        self._seen[event_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def forget(self, event_id: str) -> None:
        self._seen.pop(event_id, None)

    async def claim(self, event_id: str) -> bool:
        if self.seen(event_id):
            return False
        self.remember(event_id)
        return True

    async def release(self, event_id: str) -> None:
        self.forget(event_id)

    async def close(self) -> None:
        return None


class SqliteIdempotency:
    PRUNE_EVERY = 1000

    def __init__(self, path: Path, ttl_s: float = IDEMPOTENCY_TTL_S):
        self.path = path
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._claims = 0

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=5.0, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS claims (event_id TEXT PRIMARY KEY, ts REAL NOT NULL)")
            self._db = db
        return self._db

    def _claim(self, event_id: str) -> bool:
        with self._lock:
            db = self._conn()
            now = time.time()
            self._claims += 1
            if self._claims % self.PRUNE_EVERY == 0:
                db.execute("DELETE FROM claims WHERE ts < ?", (now - self.ttl_s,))
            cur = db.execute("INSERT OR IGNORE INTO claims (event_id, ts) VALUES (?, ?)", (event_id, now))
            if cur.rowcount == 1:
                return True
            row = db.execute("SELECT ts FROM claims WHERE event_id = ?", (event_id,)).fetchone()
            if row is not None and row[0] < now - self.ttl_s:  # expired: a new claim
                db.execute("UPDATE claims SET ts = ? WHERE event_id = ?", (now, event_id))
                return True
            return False

    def _release(self, event_id: str) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM claims WHERE event_id = ?", (event_id,))

    async def claim(self, event_id: str) -> bool:
        try:
            return await asyncio.to_thread(self._claim, event_id)
        except (sqlite3.Error, OSError) as exc:  # disk full or locked: the LRU still holds
            log.warning("feedback_dedupe_store_unavailable", error=str(exc))
            return True

    async def release(self, event_id: str) -> None:
        try:
            await asyncio.to_thread(self._release, event_id)
        except (sqlite3.Error, OSError):
            pass

    async def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class RedisIdempotency:
    def __init__(self, url: str, ttl_s: int = IDEMPOTENCY_TTL_S, timeout_s: float = 0.25):
        self.ttl_s = ttl_s
        self.guard = RedisGuard(client(url, timeout_s=1.0), name="feedback_dedupe", timeout_s=timeout_s)

    async def claim(self, event_id: str) -> bool:
        r = self.guard.redis
        try:
            fresh = await self.guard.call(
                lambda: r.set(REDIS_KEY_PREFIX + event_id, b"1", nx=True, ex=self.ttl_s))
        except RedisDown:
            return True
        return bool(fresh)

    async def release(self, event_id: str) -> None:
        r = self.guard.redis
        try:
            await self.guard.call(lambda: r.delete(REDIS_KEY_PREFIX + event_id))
        except RedisDown:
            pass

    async def close(self) -> None:
        await self.guard.close()


class Deduper:
    """The LRU in front of a shared store (`store=None`: the LRU alone)."""

    def __init__(self, store: IdempotencyStore | None = None, size: int = LRU_SIZE):
        self.store = store
        self.lru = MemoryIdempotency(size)

    async def claim(self, event_id: str) -> bool:
        if self.lru.seen(event_id):
            return False
        fresh = True if self.store is None else await self.store.claim(event_id)
        self.lru.remember(event_id)
        return fresh

    async def release(self, event_id: str) -> None:
        self.lru.forget(event_id)
        if self.store is not None:
            await self.store.release(event_id)

    async def close(self) -> None:
        if self.store is not None:
            await self.store.close()


def open_deduper(state_dir: Path, redis_url: str | None) -> Deduper:
    if redis_url:
        return Deduper(RedisIdempotency(redis_url))
    return Deduper(SqliteIdempotency(state_dir / "run" / "idempotency.sqlite"))
