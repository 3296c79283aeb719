"""Reading a proxied request: the headers it needs, the body (size cap, slow-body timeout,
gzip), and the one JSON parse every proxy endpoint uses (`parse`)."""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from gateway.errors import ApiError
from gateway.jsonsafe import check_depth
from gateway.proxy.context import Json

# ASGI callables (the spec's message dicts are untyped by nature)
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_HEADER_BYTES = 64 * 1024  # httptools accepts far larger header blocks; refuse them ourselves

_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any = msgspec.json.Decoder()
_WANTED = frozenset({b"authorization", b"content-type", b"content-length", b"content-encoding", b"x-abgate-arm",
                     b"origin"})
# Content types clients send with a JSON body although they mean JSON: curl -d (form), fetch
# without headers (text/plain). The body is parsed as JSON all the same, like OpenAI does.
_LENIENT_CT = ("application/x-www-form-urlencoded", "text/plain")


class ClientGone(Exception):
    """The client disconnected before its request body arrived."""


class Headers:
    """The request headers the proxy reads, decoded once; others looked up on demand (the
    route's hash header), so a request with many headers costs nothing extra."""

    __slots__ = ("raw", "_known", "auth_count")

    def __init__(self, raw: list[tuple[bytes, bytes]]):
        self.raw = raw
        known: dict[str, str] = {}
        auth = 0
        for k, v in raw:
            if k in _WANTED:
                if k == b"authorization":
                    auth += 1
                known[k.decode("latin-1")] = v.decode("latin-1")
        self._known = known
        self.auth_count = auth

    def get(self, key: str, default: str | None = None) -> str | None:
        v = self._known.get(key)
        if v is not None:
            return v
        want = key.encode("latin-1")
        if want in _WANTED:
            return default
        for k, val in self.raw:
            if k == want:
                return val.decode("latin-1")
        return default

    def size(self) -> int:
        return sum(len(k) + len(v) for k, v in self.raw)


def check_headers(headers: Headers) -> None:
    """431 for header bombs; 400 for an ambiguous Authorization (two headers)."""
    if headers.size() > MAX_HEADER_BYTES:
        raise ApiError(431, f"request headers exceed {MAX_HEADER_BYTES} bytes", "headers_too_large")
    if headers.auth_count > 1:
        raise ApiError(400, "multiple Authorization headers: send exactly one", "multiple_authorization_headers")


def content_type_is_json(headers: Headers) -> bool:
    """True for JSON or a missing content type; False for the lenient kinds (still parsed as
    JSON); 400 for anything else (multipart, XML ...)."""
    ct = headers.get("content-type")
    if ct is None:
        return True
    low = ct.lower()
    if low.startswith("application/json") or (low.startswith("application/") and "+json" in low.split(";", 1)[0]):
        return True
    if low.startswith(_LENIENT_CT):
        return False
    raise ApiError(400, f"content-type must be application/json, got {ct[:100]!r}", "invalid_content_type")


async def read_body(receive: Receive, headers: Headers, limit: int, timeout_s: float) -> bytes:
    cl = headers.get("content-length")
    if cl is not None:
        try:
            if int(cl) > limit:
                raise ApiError(413, f"request body is {cl} bytes; the limit is {limit}", "request_too_large")
        except ValueError:
            raise ApiError(400, "invalid content-length header", "invalid_request") from None
    msg = await receive()
    if msg["type"] != "http.request":
        raise ClientGone
    body: bytes = msg.get("body", b"")
    if not msg.get("more_body", False):
        if len(body) > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
        return _decode_encoding(body, headers, limit)
    buf = bytearray(body)
    try:
        async with asyncio.timeout(timeout_s):  # slow bodies (slowloris) are cut off
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    raise ClientGone
                buf += msg.get("body", b"")
                if len(buf) > limit:
                    raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
                if not msg.get("more_body", False):
                    return _decode_encoding(bytes(buf), headers, limit)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s}s", "body_timeout") from None


def _decode_encoding(body: bytes, headers: Headers, limit: int) -> bytes:
    """`Content-Encoding: gzip` / `deflate` bodies are inflated, never beyond `limit` bytes."""
    enc = headers.get("content-encoding")
    if enc is None:
        return body
    enc = enc.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise ApiError(415, f"unsupported content-encoding {enc[:50]!r}: send gzip, deflate or no encoding",
                       "unsupported_content_encoding")
    wbits = 31 if enc != "deflate" else 15
    try:
        d = zlib.decompressobj(wbits)
        out = d.decompress(body, limit + 1)
        if len(out) > limit or d.unconsumed_tail:
            raise ApiError(413, f"decompressed request body exceeds the limit of {limit} bytes", "request_too_large")
        if not d.eof:
            raise ApiError(400, f"{enc} request body is truncated", "invalid_content_encoding")
    except zlib.error as err:
        raise ApiError(400, f"request body is not valid {enc} data: {err}", "invalid_content_encoding") from None
    return out


def parse(body: bytes, json_content_type: bool = True) -> dict[str, msgspec.Raw]:
    """The request body as a JSON object whose values keep their original bytes."""
    check_depth(body)  # a nesting bomb is a 400, not a RecursionError
    try:
        body.decode("utf-8")  # msgspec does not check UTF-8 inside Raw values
        doc = _raw_dict.decode(body)
    except UnicodeDecodeError as err:
        if body[:2] == b"\x1f\x8b":
            raise ApiError(400, "request body is gzip-compressed: send `Content-Encoding: gzip`",
                           "invalid_content_encoding") from None
        raise ApiError(400, f"request body is not valid UTF-8 (byte {err.start})", "invalid_json") from None
    except msgspec.ValidationError:
        raise ApiError(400, "request body must be a JSON object", "invalid_json") from None
    except msgspec.DecodeError as err:
        if not json_content_type:
            raise ApiError(400, "the body is not JSON: send a JSON object (content-type application/json)",
                           "invalid_content_type") from None
        raise ApiError(400, f"request body is not valid JSON: {err}", "invalid_json") from None
    return doc


def field(doc: dict[str, msgspec.Raw], name: str) -> Json:
    raw = doc.get(name)
    return None if raw is None else _any.decode(raw)


def route_name(doc: dict[str, msgspec.Raw]) -> str:
    name = field(doc, "model")
    if not isinstance(name, str) or not name:
        raise ApiError(400, "`model` is required and must be a route name (string)", "invalid_request", param="model")
    return name


def is_true(doc: dict[str, msgspec.Raw], name: str) -> bool:
    raw = doc.get(name)
    return raw is not None and bytes(raw) == b"true"
