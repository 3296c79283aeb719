"""Response headers OpenAI sends on every answer: `x-request-id`, `openai-processing-ms`,
`openai-version` and the `x-ratelimit-*` family (per-process fixed one-minute window)."""

from __future__ import annotations

import os
import time

_PREFIX = os.urandom(6).hex()
REQUEST_LIMIT = 10_000   # per minute, like a tier-4 key
TOKEN_LIMIT = 2_000_000  # per minute


class RateHeaders:
    """Counts requests and (approximate) tokens in the current minute; renders the headers.

    On the benchmark's hot path: the parts that change at most once a second are cached."""

    __slots__ = ("_n", "_window", "_requests", "_tokens", "request_limit", "_second", "_static")

    def __init__(self, request_limit: int = REQUEST_LIMIT) -> None:
        self._n = 0
        self._window = 0
        self._requests = 0
        self._tokens = 0
        self.request_limit = request_limit
        self._second = -1
        self._static = ""

    def render(self, body_len: int, started: float, *, exhausted: bool = False) -> str:
        """The header lines ("name: value\\r\\n" each) for one answer."""
        second = int(time.time())
        if second != self._second:
            self._second = second
            window = second // 60
            if window != self._window:
                self._window, self._requests, self._tokens = window, 0, 0
            reset = f"{60 - second % 60}s"
            self._static = (f"openai-version: 2020-10-01\r\nx-ratelimit-limit-requests: {self.request_limit}\r\n"
                            f"x-ratelimit-limit-tokens: {TOKEN_LIMIT}\r\nx-ratelimit-reset-requests: {reset}\r\n"
                            f"x-ratelimit-reset-tokens: {reset}\r\n")
        self._requests += 1
        self._tokens += body_len >> 2
        self._n += 1
        if exhausted:
            remaining, tokens = 0, 0
        else:
            remaining, tokens = max(0, self.request_limit - self._requests), max(0, TOKEN_LIMIT - self._tokens)
        return (f"x-request-id: req_{_PREFIX}{self._n:012x}\r\n"
                f"openai-processing-ms: {int((time.perf_counter() - started) * 1000)}\r\n"
                f"x-ratelimit-remaining-requests: {remaining}\r\nx-ratelimit-remaining-tokens: {tokens}\r\n"
                + self._static)
