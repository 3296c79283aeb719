"""Per-upstream circuit breaker that remembers why it opened."""

from __future__ import annotations

import math
import time


class Breaker:
    """N consecutive failures open the circuit for `cooldown_s`; then one probe is let through
    (half-open): its success closes the circuit, its failure re-opens it.

    The last failure's cause (status, HTTP status, reason) is kept, so a request refused by an
    open circuit answers with the real cause (a timeout stays 504) and a `retry-after`."""

    __slots__ = ("threshold", "cooldown_s", "failures", "open_until", "probing", "last_cause")

    def __init__(self, threshold: int, cooldown_s: float):
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.last_cause: tuple[str, int, str] = ("upstream_error", 502, "connection")

    @property
    def state(self) -> str:
        if self.open_until == 0.0:
            return "closed"
        return "open" if time.monotonic() < self.open_until else "half_open"

    def allow(self) -> bool:
        if self.open_until == 0.0:
            return True
        if time.monotonic() < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def retry_after_s(self) -> int:
        """Whole seconds until the next probe may go through (at least 1)."""
        return max(1, math.ceil(self.open_until - time.monotonic()))

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def failure(self, status: str = "upstream_error", http_status: int = 502, reason: str = "connection") -> None:
        self.failures += 1
        self.probing = False
        self.last_cause = (status, http_status, reason)
        if self.failures >= self.threshold:
            self.open_until = time.monotonic() + self.cooldown_s
