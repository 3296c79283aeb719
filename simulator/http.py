"""A lean HTTP/1.1 server: uvloop + httptools, keep-alive, pipelining-safe, no framework.

It is the benchmark's baseline upstream, so the hot path stays small: a handler returns either a
ready `Response` (written synchronously from the parser callback) or a coroutine (latency, streams).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

import httptools
import msgspec


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    raw_headers: str = ""  # pre-rendered "name: value\r\n" lines (the app's per-answer headers)


_REASONS = {s.value: s.phrase for s in HTTPStatus}


def error_body(message: str, type_: str, code: str | None, param: str | None = None) -> bytes:
    """OpenAI's error shape; here (not in simulator.errors) because the server itself answers errors."""
    return msgspec.json.encode({"error": {"message": message, "type": type_, "param": param, "code": code}})


def head(status: int, content_type: str, headers: tuple[tuple[str, str], ...], keep_alive: bool,
         length: int | None, raw: str = "") -> bytes:
    parts = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\ncontent-type: {content_type}\r\n"]
    parts.append(f"content-length: {length}\r\n" if length is not None else "transfer-encoding: chunked\r\n")
    if not keep_alive:
        parts.append("connection: close\r\n")
    for k, v in headers:
        parts.append(f"{k}: {v}\r\n")
    parts.append(raw)
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def encode_response(resp: Response, keep_alive: bool) -> bytes:
    return head(resp.status, resp.content_type, resp.headers, keep_alive, len(resp.body), resp.raw_headers) + resp.body


class StreamWriter:
    """Chunked transfer-encoding writer for one streamed response, with backpressure."""

    __slots__ = ("_conn", "extra")

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.extra = ""  # pre-rendered header lines the app adds to every answer (see Response.raw_headers)

    def start(self, status: int, content_type: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        self._conn.write(head(status, content_type, headers, True, None, self.extra))

    async def send(self, data: bytes) -> None:
        if data:
            self._conn.write(b"%x\r\n%b\r\n" % (len(data), data))
            await self._conn.drain()

    def end(self) -> None:
        self._conn.write(b"0\r\n\r\n")

    def abort(self) -> None:
        """Reset the connection mid-response (fault injection)."""
        self._conn.abort()

    @property
    def closed(self) -> bool:
        return self._conn.closed


# A handler gets the request and a StreamWriter; it returns a Response, None (it already wrote the whole
# answer through the writer), or an awaitable yielding either (delayed answers, paced streams).
Result = Response | None | Awaitable[Response | None]
Handler = Callable[[Request, StreamWriter], Result]


class Connection(asyncio.Protocol):
    __slots__ = ("_handler", "_transport", "_parser", "_url", "_headers", "_body", "_queue", "_busy",
                 "_paused", "_drained", "closed")

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._queue: deque[Request] = deque()
        self._busy = False
        self._paused = False
        self._drained: asyncio.Event | None = None
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._reject(400, "upgrade not supported")
        except httptools.HttpParserError as err:
            self._reject(400, f"malformed HTTP request: {err}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._drained is not None:
            self._drained.set()

    def pause_writing(self) -> None:
        self._paused = True
        self._drained = asyncio.Event()

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None:
            self._drained.set()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url = self._url.decode("latin-1")
        path, _, query = url.partition("?")
        req = Request(self._parser.get_method().decode("latin-1"), path, query, self._headers,
                      b"".join(self._body), self._parser.should_keep_alive())
        if self._busy:
            self._queue.append(req)
            return
        self._run(req)

    # internals
    def _run(self, req: Request) -> None:
        try:
            result = self._handler(req, StreamWriter(self))
        except Exception as err:  # a handler bug must answer 500, not kill the connection silently
            result = _internal_error(err)
        if isinstance(result, Response):
            self._finish(req, result)
            return
        if result is None:
            if not req.keep_alive:
                self.close()
            return
        self._busy = True
        asyncio.ensure_future(self._run_async(req, result))

    async def _run_async(self, req: Request, awaitable: Awaitable[Response | None]) -> None:
        try:
            resp = await awaitable
        except Exception as err:
            resp = _internal_error(err)
        if self.closed:
            return
        if resp is not None:
            self._finish(req, resp)
        elif not req.keep_alive:
            self.close()
        self._busy = False
        while self._queue and not self._busy and not self.closed:
            self._run(self._queue.popleft())

    def _finish(self, req: Request, resp: Response) -> None:
        if self.closed:
            return
        self.write(encode_response(resp, req.keep_alive))
        if not req.keep_alive:
            self.close()

    def _reject(self, status: int, message: str) -> None:
        self.write(encode_response(Response(status, error_body(message, "invalid_request_error", None)), False))
        self.close()

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self.closed:
            self._transport.write(data)

    async def drain(self) -> None:
        if self._paused and self._drained is not None and not self.closed:
            await self._drained.wait()

    def close(self) -> None:
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None and not self.closed:
            self.closed = True
            self._transport.abort()


def _internal_error(err: Exception) -> Response:
    return Response(500, error_body(f"simulator internal error: {type(err).__name__}: {err}", "server_error", None))
