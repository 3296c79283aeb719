"""`POST /v1/embeddings`, routed by route name like chat (an arm per embedding model)."""

from __future__ import annotations

import msgspec

from gateway.auth import Principal
from gateway.errors import ApiError
from gateway.proxy.choose import choose, read_routed
from gateway.proxy.context import Ctx
from gateway.proxy.forward import UpstreamFailure, forward_with_fallback
from gateway.proxy.handler import Watch, handle
from gateway.proxy.request import (
    Headers,
    Receive,
    Scope,
    Send,
    field,
)
from gateway.proxy.respond import send_json
from gateway.runtime import ArmTarget, Runtime
from gateway.upstream.transport import UpstreamResponse


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None


class _Answer(msgspec.Struct):
    usage: _Usage | None = None


_answer = msgspec.json.Decoder(_Answer)


async def relay_json(ctx: Ctx, resp: UpstreamResponse, target: ArmTarget, send: Send) -> None:
    """The vectors pass through untouched (no `id` to swap); the event keeps the usage."""
    data = target.upstream.scrub(await resp.read())
    try:
        answer = _answer.decode(data)
    except msgspec.ValidationError:
        answer = _Answer()
    except msgspec.DecodeError:
        raise UpstreamFailure("upstream_error", 502, "invalid_response", "upstream returned invalid JSON") from None
    if answer.usage is not None:
        ctx.prompt_tokens, ctx.completion_tokens = answer.usage.prompt_tokens, 0
    ctx.status, ctx.http_status = "ok", 200
    await send_json(send, ctx, 200, data, [*target.headers, *ctx.upstream_headers,
                                           (b"x-abgate-interaction-id", (ctx.interaction_id or "").encode())])


async def _embed(ctx: Ctx, scope: Scope, headers: Headers, principal: Principal, receive: Receive, send: Send,
                 watch: Watch) -> None:
    doc, ra = await read_routed(ctx, headers, principal, receive)
    inp = field(doc, "input")
    if not isinstance(inp, (str, list)) or (isinstance(inp, list) and not inp):
        raise ApiError(400, "`input` is required: a string or a non-empty array", "invalid_request", param="input")
    ctx.input = inp
    target = choose(ctx, ra, doc, headers, principal)
    watch.arm()
    await forward_with_fallback(ctx, doc, target, False, relay_json, send)


async def embeddings(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await handle(rt, "embeddings", "POST", scope, receive, send, _embed)
