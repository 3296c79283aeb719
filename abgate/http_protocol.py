"""`GuardedHttpToolsProtocol`: uvicorn's httptools protocol with the limits described in
`abgate.http_limits` (head timeout, head size counted while reading, body timeout,
connection cap that closes the longest-waiting idle or slow connection first)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from abgate.http_limits import HttpLimits, raise_fd_limit
from gateway.errors import error_body


def _response(status: int, reason: str, message: str, code: str) -> bytes:
    body = error_body(status, message, code)
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the limits in the module doc."""

    limits: HttpLimits | None = None
    # Connections waiting for a request head, oldest first (one event loop per process).
    _waiting: OrderedDict[GuardedHttpToolsProtocol, None] = OrderedDict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cls = type(self)
        if cls.limits is None:
            lim = HttpLimits.from_env()
            fds = raise_fd_limit(lim.max_connections + 1024)
            if fds - 256 < lim.max_connections:
                lim = HttpLimits(lim.header_timeout_s, lim.body_timeout_s, lim.max_head_bytes, max(16, fds - 256))
            cls.limits = lim
        self._lim: HttpLimits = cls.limits
        self._head_bytes = 0
        self._in_head = True
        self._head_timer: Any = None
        self._body_timer: Any = None

    # -- connection lifecycle ----------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if len(self.connections) > self._lim.max_connections and not self._evict_one():
            self.transport.write(_response(503, "Service Unavailable", "too many connections; retry later",
                                           "too_many_connections"))
            self.transport.close()
            return
        self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        self._cancel_timers()
        super().connection_lost(exc)

    def _evict_one(self) -> bool:
        while self._waiting:
            victim, _ = self._waiting.popitem(last=False)
            if victim is self:
                continue
            victim._cancel_timers()
            if not victim.transport.is_closing():
                victim.transport.close()
                self.connections.discard(victim)
                return True
        return False

    def _await_head(self) -> None:
        self._in_head = True
        self._head_bytes = 0
        self._waiting[self] = None
        if self._head_timer is not None:
            self._head_timer.cancel()
        self._head_timer = self.loop.call_later(self._lim.header_timeout_s, self._head_timeout)

    def _cancel_timers(self) -> None:
        for t in (self._head_timer, self._body_timer):
            if t is not None:
                t.cancel()
        self._head_timer = self._body_timer = None

    def _refuse(self, status: int, reason: str, message: str, code: str) -> None:
        self._waiting.pop(self, None)
        self._cancel_timers()
        if not self.transport.is_closing():
            self.transport.write(_response(status, reason, message, code))
            self.transport.close()

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head:
            self._refuse(408, "Request Timeout",
                         f"request headers not received within {self._lim.header_timeout_s:g}s", "header_timeout")

    def _body_timeout(self) -> None:
        self._body_timer = None
        if self.cycle is not None and self.cycle.more_body and not self.transport.is_closing():
            if not self.cycle.response_started:
                self._refuse(408, "Request Timeout",
                             f"request body not received within {self._lim.body_timeout_s:g}s", "body_timeout")
            else:
                self.transport.close()

    # -- reading -----------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self._in_head or self.transport.is_closing():
            super().data_received(data)
            return
        room = self._lim.max_head_bytes - self._head_bytes
        if len(data) <= room:
            self._head_bytes += len(data)
            super().data_received(data)
            return
        # Feed only what fits: if the head completes inside it, the rest is body (or the
        # next pipelined request, which gets its own budget).
        head, rest = data[:room], data[room:]
        self._head_bytes += len(head)
        if head:
            super().data_received(head)
        if self.transport.is_closing():
            return
        if self._in_head:
            self._refuse(431, "Request Header Fields Too Large",
                         f"request headers exceed {self._lim.max_head_bytes} bytes", "headers_too_large")
            return
        self.data_received(rest)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_head:  # a pipelined request: a fresh head budget
            self._await_head()

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._waiting.pop(self, None)
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self._lim.body_timeout_s, self._body_timeout)

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline and self.cycle is not None \
                and self.cycle.keep_alive:
            self._await_head()  # idle keep-alive: evictable, and the next head is timed
