"""Per-API-key token buckets (per worker process).

A key with `rate_limit_rps` gets a bucket of `rate_limit_burst` tokens (default: one
second's worth, at least 1) refilled continuously; an empty bucket answers 429 with the
seconds until the next token in `retry-after`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    rate: float
    burst: float


class RateLimiter:
    MAX_KEYS = 100_000  # bound memory; keys come from the config, so this is never reached in practice

    def __init__(self, clock=time.monotonic):
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

    @staticmethod
    def retry_after_header(wait_s: float) -> bytes:
        return str(max(1, math.ceil(wait_s)) if math.isfinite(wait_s) else 3600).encode()
