"""Writing answers to the client: JSON bodies, errors (plain or as a closing SSE event), the
x-abgate-* headers, and the upstream headers that pass through."""

from __future__ import annotations

from gateway.errors import error_body
from gateway.proxy.context import Ctx
from gateway.proxy.record import finish
from gateway.proxy.request import Send
from gateway.upstream.transport import RawHeaders

JSON_CT = (b"content-type", b"application/json")
SSE_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))

# Upstream response headers a client may see (SDK back-off, request ids, rate-limit state).
# An allowlist: hop-by-hop headers, cookies, org/project ids and anything else never pass.
_PASS = frozenset({b"retry-after", b"retry-after-ms", b"x-request-id", b"openai-processing-ms", b"openai-version"})
_PASS_PREFIX = b"x-ratelimit-"


_FIRST = frozenset(b"rRxXoO")  # first letters of the names above: a cheap pre-filter
_NONE: tuple[tuple[bytes, bytes], ...] = ()


def passthrough(raw: RawHeaders) -> tuple[tuple[bytes, bytes], ...]:
    out: list[tuple[bytes, bytes]] | None = None
    for k, v in raw:
        if k and k[0] in _FIRST:
            lk = k.lower()
            if (lk in _PASS or lk.startswith(_PASS_PREFIX)) and b"\r" not in v and b"\n" not in v and len(v) < 1024:
                if out is None:
                    out = []
                out.append((lk, v))
    return _NONE if out is None else tuple(out)


def ctx_headers(ctx: Ctx) -> list[tuple[bytes, bytes]]:
    out = []
    if ctx.route is not None:
        out.append((b"x-abgate-route", ctx.route.encode()))
    if ctx.arm is not None:
        out.append((b"x-abgate-arm", ctx.arm.encode()))
    if ctx.config_version is not None:
        out.append((b"x-abgate-config-version", str(ctx.config_version).encode()))
    if ctx.interaction_id is not None:
        out.append((b"x-abgate-interaction-id", ctx.interaction_id.encode()))
    return out


async def send_json(send: Send, ctx: Ctx, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    """Record, then answer: metrics and the event are in before the client sees the answer."""
    ctx.finished = True
    finish(ctx)
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON_CT, (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, ctx: Ctx, status: int, message: str, code: str, param: str | None = None,
                     extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    if ctx.finished or ctx.closed:
        return
    finish(ctx)
    if ctx.ttft is not None:  # a stream already started: end it with an SSE error event
        ctx.finished = True
        payload = b"data: " + error_body(status, message, code) + b"\n\n"
        if ctx.endpoint == "responses":
            payload = b"event: error\n" + payload
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        return
    body = error_body(status, message, code, param=param)
    ctx.finished = True
    await send({"type": "http.response.start", "status": status,
                "headers": [JSON_CT, (b"content-length", str(len(body)).encode()), *extra, *ctx.upstream_headers,
                            *ctx_headers(ctx)]})
    await send({"type": "http.response.body", "body": body})
