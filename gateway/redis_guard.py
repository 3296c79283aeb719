"""Redis calls on the request path that a hung or dead Redis cannot stall.

`RedisGuard.call(fn)` runs one Redis command with a short deadline (`timeout_s`). The first
failure or timeout marks Redis down: from then on `call` raises `RedisDown` at once, and
one background task probes Redis with PING (back-off from 0.1 s doubling to 5 s) until it
answers; then calls go to Redis again. So a hung Redis costs one request at most
`timeout_s`, never a stall per request or per retry window. Callers fall back to their
local state (the feedback deduper to its LRU, the rate limiter to per-process buckets).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("abgate.redis_guard")

T = TypeVar("T")
MAX_PROBE_BACKOFF_S = 5.0


class RedisDown(Exception):
    pass


def client(url: str, timeout_s: float) -> Any:
    """A redis.asyncio client with short socket timeouts and no client-side retries."""
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                          retry=Retry(NoBackoff(), 0))


class RedisGuard:
    def __init__(self, redis: Any, *, name: str, timeout_s: float = 0.25):
        self.redis = redis
        self.name = name
        self.timeout_s = timeout_s
        self.up = True
        self.failures = 0  # request-path calls that failed (each marks Redis down)
        self.probes = 0  # background PINGs sent while down
        self.down_since: float | None = None
        self._probe: asyncio.Task[None] | None = None

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        if not self.up:
            raise RedisDown(f"{self.name}: Redis unavailable")
        try:
            return await asyncio.wait_for(fn(), self.timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # timeout, refused, reset, LOADING, OOM ...
            self._down(exc)
            raise RedisDown(f"{self.name}: {type(exc).__name__}: {exc}") from None

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        if self.up:
            self.up = False
            self.down_since = time.monotonic()
            log.warning("redis_down_falling_back", component=self.name,
                        error=str(exc) or type(exc).__name__)
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up(),
                                                                  name=f"abgate-redis-probe-{self.name}")

    async def _probe_until_up(self) -> None:
        delay = 0.1
        while True:
            await asyncio.sleep(delay)
            self.probes += 1
            try:
                await asyncio.wait_for(self.redis.ping(), max(self.timeout_s, 1.0))
            except asyncio.CancelledError:
                raise
            except Exception:
                delay = min(delay * 2, MAX_PROBE_BACKOFF_S)
                continue
            self.up = True
            log.info("redis_back", component=self.name,
                     down_s=round(time.monotonic() - (self.down_since or time.monotonic()), 3))
            return

    async def close(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            try:
                await self._probe
            except (asyncio.CancelledError, Exception):
                pass
        try:
            await self.redis.aclose()
        except Exception:
            pass
