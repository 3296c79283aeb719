"""Response headers OpenAI sends on every answer: `x-request-id`, `openai-processing-ms`,
`openai-version` and the `x-ratelimit-*` family (per-process fixed one-minute window)."""

from __future__ import annotations

import os
import time

_PREFIX = os.urandom(6).hex()
REQUEST_LIMIT = 10_000   # per minute, like a tier-4 key
TOKEN_LIMIT = 2_000_000  # per minute


class RateHeaders:
    """Counts requests and (approximate) tokens in the current minute; renders the headers."""

    __slots__ = ("_n", "_window", "_requests", "_tokens", "request_limit")

    def __init__(self, request_limit: int = REQUEST_LIMIT) -> None:
        self._n = 0
        self._window = 0
        self._requests = 0
        self._tokens = 0
        self.request_limit = request_limit

    def request_id(self) -> str:
        self._n += 1
        return f"req_{_PREFIX}{self._n:012x}"

    def headers(self, body_len: int, started: float, *, exhausted: bool = False) -> tuple[tuple[str, str], ...]:
        now = time.time()
        window = int(now // 60)
        if window != self._window:
            self._window, self._requests, self._tokens = window, 0, 0
        self._requests += 1
        self._tokens += body_len // 4
        reset = 60 - now % 60
        remaining = 0 if exhausted else max(0, self.request_limit - self._requests)
        return (
            ("x-request-id", self.request_id()),
            ("openai-version", "2020-10-01"),
            ("openai-processing-ms", str(max(0, round((time.perf_counter() - started) * 1000)))),
            ("x-ratelimit-limit-requests", str(self.request_limit)),
            ("x-ratelimit-limit-tokens", str(TOKEN_LIMIT)),
            ("x-ratelimit-remaining-requests", str(remaining)),
            ("x-ratelimit-remaining-tokens", str(0 if exhausted else max(0, TOKEN_LIMIT - self._tokens))),
            ("x-ratelimit-reset-requests", f"{reset:.3f}s"),
            ("x-ratelimit-reset-tokens", f"{reset:.3f}s"),
        )
