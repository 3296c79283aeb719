"""Relaying an upstream SSE stream: split into events, rewrite each (endpoint-specific),
scrub the upstream key, and send in the batches the upstream's reads arrive in."""

from __future__ import annotations

import time
from typing import Protocol

from gateway.proxy.context import Ctx
from gateway.proxy.record import finish
from gateway.proxy.request import Send
from gateway.proxy.respond import SSE_HEADERS
from gateway.runtime import ArmTarget
from gateway.upstream.client import REDACTED_KEY
from gateway.upstream.transport import UpstreamResponse

perf = time.perf_counter


class EventRewriter(Protocol):
    def rewrite(self, event: bytes) -> bytes | None:
        """One SSE event (without its blank line) as the client gets it; None drops it."""
        ...

    def done(self) -> None:
        """The stream ended normally: settle the context's captured fields."""
        ...


async def relay_sse(ctx: Ctx, resp: UpstreamResponse, target: ArmTarget, rw: EventRewriter, send: Send,
                    key: bytes | None) -> None:
    started = False
    buf = b""
    while True:
        t = perf()
        chunk = await resp.readany()
        ctx.waited += perf() - t
        if not chunk:
            break
        buf += chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        if b"\n\n" not in buf:
            continue
        if key is not None and key in buf:  # a key cannot span events: the tail stays in buf
            buf = buf.replace(key, REDACTED_KEY)
        *events, buf = buf.split(b"\n\n")
        out = []
        for event in events:
            rewritten = rw.rewrite(event)
            if rewritten is not None:
                out.append(rewritten)
        if not out:
            continue
        payload = b"\n\n".join(out) + b"\n\n"
        t = perf()
        if not started:
            started = True
            await send({"type": "http.response.start", "status": 200, "headers": _headers(ctx, target)})
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        if ctx.ttft is None:
            ctx.ttft = perf() - ctx.t0
        ctx.waited += perf() - t
    if buf.strip():
        if key is not None and key in buf:
            buf = buf.replace(key, REDACTED_KEY)
        rewritten = rw.rewrite(buf)
        if rewritten is not None:
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": _headers(ctx, target)})
            await send({"type": "http.response.body", "body": rewritten + b"\n\n", "more_body": True})
    if not started:
        await send({"type": "http.response.start", "status": 200, "headers": _headers(ctx, target)})
    rw.done()
    if ctx.status == "rejected":  # the rewriter did not mark a failure (response.failed)
        ctx.status, ctx.http_status = "ok", 200
    ctx.finished = True
    finish(ctx)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _headers(ctx: Ctx, target: ArmTarget) -> list[tuple[bytes, bytes]]:
    return [*SSE_HEADERS, *target.headers, *ctx.upstream_headers,
            (b"x-abgate-interaction-id", (ctx.interaction_id or "").encode())]
