"""Per-API-key token buckets (per worker process).

A key with `rate_limit_rps` gets a bucket of `rate_limit_burst` tokens (default: one
second's worth, at least 1) refilled continuously; an empty bucket answers 429 with the
seconds until the next token in `retry-after`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    rate: float
    burst: float


class RateLimiter:
    MAX_KEYS = 100_000  # bound memory; keys come from the config, so this is never reached in practice

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._clock = clock

    def check(self, key: str, rate: float, burst: int | None) -> float | None:
        """Take one token; return None when allowed, else seconds until a token is available."""
        now = self._clock()
        cap = float(burst) if burst else max(1.0, rate)
        b = self._buckets.get(key)
        if b is None or b.rate != rate or b.burst != cap:
            if len(self._buckets) >= self.MAX_KEYS:
                self._buckets.clear()
            b = self._buckets[key] = _Bucket(tokens=cap, stamp=now, rate=rate, burst=cap)
        else:
            b.tokens = min(b.burst, b.tokens + (now - b.stamp) * b.rate)
            b.stamp = now
        if b.tokens >= 1.0:
            b.tokens -= 1.0
            return None
        if rate <= 0:
            return math.inf
        return (1.0 - b.tokens) / rate

    async def acheck(self, key: str, rate: float, burst: int | None) -> float | None:
        return self.check(key, rate, burst)

    async def close(self) -> None:
        return None

    @staticmethod
    def retry_after_header(wait_s: float) -> bytes:
        return str(max(1, math.ceil(wait_s)) if math.isfinite(wait_s) else 3600).encode()


_LUA = """
local b = redis.call('HMGET', KEYS[1], 't', 's')
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) + tonumber(now_t[2]) / 1000000
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens = burst; stamp = now end
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class SharedRateLimiter:
    """Redis mode: one token bucket per key across every replica (a Lua script, using
    Redis's clock). While Redis is unreachable each process falls back to its own bucket,
    so an outage never blocks traffic."""

    def __init__(self, url: str, local: RateLimiter | None = None):
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_connect_timeout=0.2, socket_timeout=0.5)
        self._script = self._redis.register_script(_LUA)
        self.local = local or RateLimiter()
        self._down_until = 0.0

    async def acheck(self, key: str, rate: float, burst: int | None) -> float | None:
        if rate <= 0:
            return math.inf
        now = time.monotonic()
        if now >= self._down_until:
            cap = float(burst) if burst else max(1.0, rate)
            try:
                wait = float(await self._script(keys=[f"abgate:rl:{key}"], args=[rate, cap]))
                return None if wait <= 0 else wait
            except Exception:  # Redis down or slow: local buckets for a few seconds
                self._down_until = now + 2.0
        return self.local.check(key, rate, burst)

    async def close(self) -> None:
        await self._redis.aclose()
