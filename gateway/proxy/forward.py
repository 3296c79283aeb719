"""One upstream attempt (breaker, 4xx pass-through, 5xx / timeout / connection failures) and
the single retry on the route's fallback arm. What a 2xx answer becomes is the endpoint's
`relay`."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import msgspec

from gateway.proxy.context import Ctx, StatusName
from gateway.proxy.record import finish
from gateway.proxy.request import Send
from gateway.proxy.respond import passthrough, send_error
from gateway.runtime import ArmTarget
from gateway.upstream.transport import UpstreamConnectionError, UpstreamResponse
from gateway.variants import prepare as prepare_variant

perf = time.perf_counter
_enc = msgspec.json.Encoder()

Relay = Callable[[Ctx, UpstreamResponse, ArmTarget, Send], Awaitable[None]]


class UpstreamFailure(Exception):
    """The chosen arm failed in a way a fallback may cure (5xx, timeout, refused, open circuit)."""

    def __init__(self, status: StatusName, http_status: int, reason: str, message: str,
                 headers: tuple[tuple[bytes, bytes], ...] = ()):
        super().__init__(message)
        self.status, self.http_status, self.reason, self.message = status, http_status, reason, message
        self.headers = headers


def _as_fallback(ctx: Ctx, target: ArmTarget) -> ArmTarget:
    hdrs = tuple(h for h in target.headers if h[0] != b"x-abgate-arm")
    return replace(target, headers=(*hdrs, (b"x-abgate-arm", (ctx.arm or "").encode()),
                                    (b"x-abgate-fallback-from", (ctx.fallback_from or "").encode())))


async def forward(ctx: Ctx, doc: dict[str, msgspec.Raw], target: ArmTarget, stream: bool, relay: Relay,
                  send: Send) -> None:
    up = target.upstream
    ctx.model = target.model
    if ctx.fallback_from is not None:  # headers name the assigned arm and the model that answered
        target = _as_fallback(ctx, target)
    ctx.price = target.price
    breaker = up.breaker
    if not breaker.allow():
        cause_status, http_status, cause = breaker.last_cause
        wait = breaker.retry_after_s()
        status: StatusName = "timeout" if cause_status == "timeout" else "upstream_error"
        raise UpstreamFailure(status, http_status, "circuit_open",
                              f"upstream {up.name!r} is failing ({cause}); circuit open, retry in {wait}s",
                              headers=((b"retry-after", str(wait).encode()),))
    doc["model"] = target.model_raw
    if ctx.endpoint == "chat":  # arm overrides (gateway.variants), per target so a fallback gets its own
        doc = await prepare_variant(ctx, doc, target.variant)
    else:
        ctx.variant = target.variant.id
    body = _enc.encode(doc)
    t = perf()
    resp: UpstreamResponse | None = None
    try:
        resp = await up.post(up.urls[ctx.endpoint], body, stream)
        if resp.status >= 500:
            text = up.scrub(await resp.read())
            raise UpstreamFailure("upstream_error", 502, f"http_{resp.status}",
                                  f"upstream {up.name!r} answered {resp.status}: {text[:300].decode('utf-8', 'replace')}",
                                  headers=passthrough(resp.raw_headers))
        if resp.status >= 400:  # the client's problem (or a model the upstream lacks): pass through
            data = up.scrub(await resp.read())
            ctx.waited += perf() - t
            breaker.success()
            ctx.status, ctx.http_status = "upstream_error", resp.status
            ctx.error = f"upstream {resp.status}: {data[:300].decode('utf-8', 'replace')}"
            headers = [(b"content-type", resp.content_type.encode() or b"application/json"),
                       (b"content-length", str(len(data)).encode()), *target.headers,
                       *passthrough(resp.raw_headers), (b"x-abgate-interaction-id", (ctx.interaction_id or "").encode())]
            ctx.finished = True
            finish(ctx)
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        ctx.upstream_headers = passthrough(resp.raw_headers)
        ctx.waited += perf() - t
        await relay(ctx, resp, target, send)
        breaker.success()
    except UpstreamFailure as fail:
        breaker.failure(fail.status, fail.http_status, fail.reason)
        if resp is not None:
            resp.close()
        ctx.waited += perf() - t
        raise
    except TimeoutError:
        breaker.failure("timeout", 504, "timeout")
        if resp is not None:
            resp.close()
        ctx.waited += perf() - t
        if ctx.ttft is not None:  # mid-stream: nothing to fall back to
            ctx.status, ctx.http_status, ctx.error = "timeout", 504, "upstream stalled mid-stream"
            await send_error(send, ctx, 504, f"upstream {up.name!r} stalled mid-stream", "upstream_timeout")
            return
        raise UpstreamFailure("timeout", 504, "timeout", f"upstream {up.name!r} timed out") from None
    except UpstreamConnectionError as err:
        breaker.failure("upstream_error", 502, "connection")
        if resp is not None:
            resp.close()
        ctx.waited += perf() - t
        if ctx.ttft is not None:
            ctx.status, ctx.http_status, ctx.error = "upstream_error", 502, f"upstream connection lost: {err}"
            await send_error(send, ctx, 502, f"upstream {up.name!r} connection lost mid-stream", "upstream_error")
            return
        raise UpstreamFailure("upstream_error", 502, "connection",
                              f"cannot reach upstream {up.name!r}: {err}") from None
    except BaseException:
        if resp is not None:
            resp.close()  # client left / shutdown: drop the upstream connection so it stops generating
        raise
    else:
        resp.release()


async def forward_with_fallback(ctx: Ctx, doc: dict[str, msgspec.Raw], target: ArmTarget, stream: bool,
                                relay: Relay, send: Send) -> None:
    try:
        await forward(ctx, doc, target, stream, relay, send)
    except UpstreamFailure as fail:
        fb = ctx.comp.fallback.get(target.route)
        if fb is None or fb.arm.name == target.arm.name or ctx.ttft is not None:
            raise
        rt = ctx.rt
        rt.metrics.upstream_error(target.route, target.arm.name, fail.reason)
        rt.metrics.fallback(target.route)
        ctx.fallback_from = target.arm.name
        await forward(ctx, doc, fb, stream, relay, send)
