"""The upstream transport seam, modelled on httpx's `transport=`.

`UpstreamClient` speaks to its upstream only through a `Transport`: `AiohttpTransport` in
production (one pooled keep-alive session per upstream), `MockTransport` in unit tests (a
handler function answers each request in memory, like `httpx.MockTransport`). Transports
raise only `TimeoutError` and `UpstreamConnectionError`, so nothing above this module knows
which HTTP library is underneath.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from gateway.config import Upstream

RawHeaders = Sequence[tuple[bytes, bytes]]


class UpstreamConnectionError(Exception):
    """The upstream could not be reached or the connection broke (mid-stream too)."""


class UpstreamResponse(Protocol):
    status: int

    @property
    def content_type(self) -> str: ...

    @property
    def raw_headers(self) -> RawHeaders: ...

    async def read(self) -> bytes: ...

    async def readany(self) -> bytes:
        """The next piece of a streamed body; b"" at its end."""
        ...

    def close(self) -> None:
        """Drop the connection (the upstream stops generating)."""
        ...

    def release(self) -> None:
        """Return the connection to the pool (body fully read)."""
        ...


class Transport(Protocol):
    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                   stream: bool) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


# -- production: aiohttp -------------------------------------------------------------------

class _AiohttpResponse:
    __slots__ = ("_r", "status")

    def __init__(self, resp: aiohttp.ClientResponse):
        self._r = resp
        self.status = resp.status

    @property
    def content_type(self) -> str:
        return self._r.content_type

    @property
    def raw_headers(self) -> RawHeaders:
        return self._r.raw_headers

    async def read(self) -> bytes:
        try:
            return await self._r.read()
        except aiohttp.ClientError as err:
            raise UpstreamConnectionError(type(err).__name__) from None

    async def readany(self) -> bytes:
        try:
            return await self._r.content.readany()
        except aiohttp.ClientError as err:
            raise UpstreamConnectionError(type(err).__name__) from None

    def close(self) -> None:
        self._r.close()

    def release(self) -> None:
        self._r.release()


class AiohttpTransport:
    """One keep-alive connection pool for one upstream definition."""

    def __init__(self, spec: Upstream):
        self.timeout = aiohttp.ClientTimeout(total=spec.timeout_s, connect=spec.connect_timeout_s)
        # Streams may run for minutes: bound the gap between chunks, not the whole stream.
        self.stream_timeout = aiohttp.ClientTimeout(total=None, connect=spec.connect_timeout_s,
                                                    sock_read=spec.timeout_s)
        conn = aiohttp.TCPConnector(limit=spec.max_connections, ttl_dns_cache=300, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(
            connector=conn, auto_decompress=True, skip_auto_headers=("User-Agent",), raise_for_status=False)

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                   stream: bool) -> UpstreamResponse:
        try:
            resp = await self.session.request(method, url, data=body, headers=headers,
                                              timeout=self.stream_timeout if stream else self.timeout)
        except aiohttp.ClientError as err:
            raise UpstreamConnectionError(type(err).__name__) from None
        return _AiohttpResponse(resp)

    async def aclose(self) -> None:
        await self.session.close()


# -- tests: in memory --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class UpstreamRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    stream: bool


@dataclass(slots=True)
class MockResponse:
    """An upstream answer: `body` whole, or `chunks` delivered one `readany()` at a time.
    A chunk that is an exception instance is raised at that point (a reset mid-stream)."""

    status: int = 200
    body: bytes = b""
    headers: Sequence[tuple[str, str]] = ()
    chunks: Iterable[bytes | BaseException] | None = None
    closed: bool = False
    _iter: list[bytes | BaseException] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._iter = list(self.chunks) if self.chunks is not None else [self.body]

    @property
    def content_type(self) -> str:
        for k, v in self.headers:
            if k.lower() == "content-type":
                return v.split(";", 1)[0].strip().lower()
        return "application/json"

    @property
    def raw_headers(self) -> RawHeaders:
        return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers)

    async def read(self) -> bytes:
        out = b""
        while True:
            piece = await self.readany()
            if not piece:
                return out
            out += piece

    async def readany(self) -> bytes:
        await asyncio.sleep(0)
        if not self._iter:
            return b""
        piece = self._iter.pop(0)
        if isinstance(piece, BaseException):
            raise piece
        return piece

    def close(self) -> None:
        self.closed = True

    def release(self) -> None:
        return None


Handler = Callable[[UpstreamRequest], "MockResponse | Awaitable[MockResponse]"]


class MockTransport:
    """`MockTransport(handler)`: every request goes to `handler(UpstreamRequest)`, which returns
    a MockResponse (or raises TimeoutError / UpstreamConnectionError). Requests are kept in
    `.requests` for assertions."""

    def __init__(self, handler: Handler):
        self.handler = handler
        self.requests: list[UpstreamRequest] = []
        self.closed = False

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                   stream: bool) -> UpstreamResponse:
        req = UpstreamRequest(method, url, dict(headers), body, stream)
        self.requests.append(req)
        out = self.handler(req)
        if inspect.isawaitable(out):
            out = await out
        return out

    async def aclose(self) -> None:
        self.closed = True
