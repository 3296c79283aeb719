"""Per-API-key token buckets.

A key with `rate_limit_rps` gets a bucket of `rate_limit_burst` tokens (default: one
second's worth, at least 1) refilled continuously; an empty bucket answers 429 with the
seconds until the next token in `retry-after`.

- `RateLimiter`: one process's buckets (tests, fallback).
- `FileRateLimiter` (embedded): the buckets live in a small memory-mapped file under the
  state dir (`run/ratelimit.bin`), updated under an exclusive `flock`, so every worker of
  `abgate serve --workers N` (and every gateway on the host sharing the state dir) takes
  from the same bucket: a limit holds across workers instead of multiplying by N.
- `SharedRateLimiter` (Redis mode): one bucket per key across every replica (Lua, Redis
  clock), through a `RedisGuard`; while Redis is unreachable or hung each host falls
  back to its `FileRateLimiter` without waiting on Redis per request.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import mmap
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gateway.redis_guard import RedisDown, RedisGuard, client


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


class Limiter(Protocol):
    def check(self, key: str, rate: float, burst: int | None) -> float | None: ...
    async def acheck(self, key: str, rate: float, burst: int | None) -> float | None: ...
    async def close(self) -> None: ...


_SLOT = struct.Struct("<16sdddd")  # key digest, tokens, stamp (CLOCK_MONOTONIC), rate, burst
SLOTS = 4096


class FileRateLimiter:
    """Token buckets in a shared memory-mapped file (see the module doc). CLOCK_MONOTONIC is
    one clock for every process on the host, so stamps written by one worker are valid in
    another. A full table (more than SLOTS limited keys) falls back to per-process buckets."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic, slots: int = SLOTS):
        self.path = path
        self.slots = slots
        self._clock = clock
        self.local = RateLimiter(clock)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        size = _SLOT.size * slots
        if os.fstat(self._fd).st_size < size:
            os.ftruncate(self._fd, size)
        self._map = mmap.mmap(self._fd, size)

    @staticmethod
    def _digest(key: str) -> bytes:
        d = hashlib.blake2b(key.encode(), digest_size=16).digest()
        return d if d != bytes(16) else b"\x01" + d[1:]  # all-zero marks a free slot

    def check(self, key: str, rate: float, burst: int | None) -> float | None:
        cap = float(burst) if burst else max(1.0, rate)
        digest = self._digest(key)
        start = int.from_bytes(digest[:8], "little") % self.slots
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            now = self._clock()
            for i in range(self.slots):
                off = ((start + i) % self.slots) * _SLOT.size
                d, tokens, stamp, r, b = _SLOT.unpack_from(self._map, off)
                if d == digest:
                    if r != rate or b != cap or stamp > now:  # new limits (or a reboot): a full bucket
                        tokens, stamp = cap, now
                    else:
                        tokens = min(cap, tokens + (now - stamp) * rate)
                    break
                if d == bytes(16):
                    tokens, stamp = cap, now
                    break
            else:
                return self.local.check(key, rate, burst)
            wait: float | None = None
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = math.inf if rate <= 0 else (1.0 - tokens) / rate
            _SLOT.pack_into(self._map, off, digest, tokens, now, rate, cap)
            return wait
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def acheck(self, key: str, rate: float, burst: int | None) -> float | None:
        return self.check(key, rate, burst)

    async def close(self) -> None:
        try:
            self._map.close()
        finally:
            os.close(self._fd)


class SharedRateLimiter:
    """Redis mode: one token bucket per key across every replica (a Lua script, using
    Redis's clock). While Redis is unreachable or hung, `RedisGuard` answers at once and
    each host uses its local buckets until a background probe finds Redis again."""

    def __init__(self, url: str, local: Limiter | None = None, timeout_s: float = 0.25):
        redis = client(url, timeout_s=1.0)
        self.guard = RedisGuard(redis, name="rate_limit", timeout_s=timeout_s)
        self._script = redis.register_script(_LUA)
        self.local: Limiter = local or RateLimiter()

    def check(self, key: str, rate: float, burst: int | None) -> float | None:
        return self.local.check(key, rate, burst)

    async def acheck(self, key: str, rate: float, burst: int | None) -> float | None:
        if rate <= 0:
            return math.inf
        cap = float(burst) if burst else max(1.0, rate)
        try:
            wait = float(await self.guard.call(lambda: self._script(keys=[f"abgate:rl:{key}"], args=[rate, cap])))
        except RedisDown:
            return self.local.check(key, rate, burst)
        return None if wait <= 0 else wait

    async def close(self) -> None:
        await self.guard.close()
        await self.local.close()


def open_limiter(state_dir: Path, redis_url: str | None) -> Limiter:
    try:
        local: Limiter = FileRateLimiter(state_dir / "run" / "ratelimit.bin")
    except OSError:  # an unwritable state dir: per-process buckets still limit
        local = RateLimiter()
    return SharedRateLimiter(redis_url, local=local) if redis_url else local

