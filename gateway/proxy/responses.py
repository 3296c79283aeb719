"""`POST /v1/responses` (the Responses API, stream or not) and `GET /v1/responses/{id}`.

Routed, attributed and recorded like chat. The `id` the client gets is the signed interaction
id; the upstream's own response id rides inside it (see `choose.sign`), so a later
`previous_response_id` is mapped back to the upstream's id without any lookup table, across
restarts and replicas, and the conversation stays on the arm that started it.
"""

from __future__ import annotations

import msgspec

from gateway.auth import Principal
from gateway.errors import ApiError
from gateway.ids import IdSigner, InteractionRef, InvalidInteractionId
from gateway.proxy.choose import choose, read_routed, sign
from gateway.proxy.context import Ctx, Json
from gateway.proxy.forward import UpstreamFailure, forward_with_fallback
from gateway.proxy.handler import Watch, handle
from gateway.proxy.request import (
    Headers,
    Receive,
    Scope,
    Send,
    field,
    is_true,
)
from gateway.proxy.respond import send_json
from gateway.proxy.sse import relay_sse
from gateway.runtime import ArmTarget, Runtime
from gateway.upstream.client import REDACTED_KEY
from gateway.upstream.transport import UpstreamResponse

_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_any = msgspec.json.Decoder()
_enc = msgspec.json.Encoder()
UPSTREAM_SEP = "~"


class _Usage(msgspec.Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None


_usage = msgspec.json.Decoder(_Usage | None)


def upstream_id_of(ref: InteractionRef) -> str | None:
    _, sep, up = ref.uuid.partition(UPSTREAM_SEP)
    return up if sep and up else None


def resolve(signer: IdSigner, token: object, tenant: str, route: str | None = None,
            param: str | None = "previous_response_id") -> tuple[InteractionRef, str]:
    """A client-held response id -> (its attribution, the upstream's response id)."""
    if not isinstance(token, str) or not token:
        raise ApiError(400, "a response id must be a non-empty string", "invalid_request", param=param)
    try:
        ref = signer.verify(token)
    except InvalidInteractionId as err:
        raise ApiError(400, f"invalid response id: {err}", "invalid_response_id", param=param) from None
    up = upstream_id_of(ref)
    if ref.tenant != tenant or up is None:
        raise ApiError(404, "No response with that id was found.", "response_not_found", param=param)
    if route is not None and ref.route != route:
        raise ApiError(400, f"that response belongs to model {ref.route!r}, not {route!r}", "invalid_request",
                       param=param)
    return ref, up


# -- capture -------------------------------------------------------------------------------

def _capture_response(ctx: Ctx, resp: dict[str, msgspec.Raw]) -> None:
    """Output items, text, tool calls, usage and status from a Response object."""
    try:
        u = resp.get("usage")
        if u is not None:
            usage = _usage.decode(u)
            if usage is not None:
                ctx.prompt_tokens, ctx.completion_tokens = usage.input_tokens, usage.output_tokens
        out = resp.get("output")
        output = _any.decode(out) if out is not None else None
        status = resp.get("status")
        state = _any.decode(status) if status is not None else None
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    if isinstance(output, list):
        ctx.output = output
        texts: list[str] = []
        calls: list[Json] = []
        for item in output:
            if not isinstance(item, dict):
                continue
            if item.get("type") == "message":
                for part in item.get("content") or ():
                    if isinstance(part, dict) and part.get("type") == "output_text" and isinstance(part.get("text"), str):
                        texts.append(part["text"])
            elif item.get("type") == "function_call":
                calls.append({"id": item.get("call_id"), "type": "function",
                              "function": {"name": item.get("name"), "arguments": item.get("arguments")}})
        ctx.response = "".join(texts) if texts else None
        ctx.tool_calls = calls or None
    if state == "completed":
        ctx.finish_reason = "tool_calls" if ctx.tool_calls else "stop"
    elif state == "incomplete":
        details = field(resp, "incomplete_details")
        reason = details.get("reason") if isinstance(details, dict) else None
        ctx.finish_reason = "length" if reason == "max_output_tokens" else str(reason or "incomplete")
    elif state == "failed":
        err = field(resp, "error")
        ctx.status = "upstream_error"
        ctx.error = f"response failed: {err}"[:500]
        ctx.finish_reason = "failed"


def _adopt_upstream_id(ctx: Ctx, resp: dict[str, msgspec.Raw]) -> None:
    """The first time the upstream's id is seen: re-sign the interaction id around it."""
    rid = resp.get("id")
    up = _any.decode(rid) if rid is not None else None
    if isinstance(up, str) and up and ctx.upstream_id is None:
        ctx.upstream_id = up
        ctx.interaction_id = sign(ctx.rt.signer, ctx, up)


# -- relays --------------------------------------------------------------------------------

def _client_previous(ctx: Ctx, resp: dict[str, msgspec.Raw]) -> None:
    """The response names the turn it continues by the id the client sent (the interaction
    id), not the upstream's own id the gateway forwarded."""
    if ctx.previous_response_id is not None and "previous_response_id" in resp:
        resp["previous_response_id"] = msgspec.Raw(_enc.encode(ctx.previous_response_id))


async def relay_json(ctx: Ctx, resp: UpstreamResponse, target: ArmTarget, send: Send) -> None:
    data = target.upstream.scrub(await resp.read())
    try:
        doc = _raw_dict.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamFailure("upstream_error", 502, "invalid_response", "upstream returned invalid JSON") from None
    _adopt_upstream_id(ctx, doc)
    token = ctx.interaction_id or ""
    doc["id"] = msgspec.Raw(_enc.encode(token))
    _client_previous(ctx, doc)
    ctx.status, ctx.http_status = "ok", 200
    _capture_response(ctx, doc)
    await send_json(send, ctx, 200, _enc.encode(doc),
                    [*target.headers, *ctx.upstream_headers, (b"x-abgate-interaction-id", token.encode())])


class ResponsesStream:
    """Rewrites Responses API stream events: every embedded `response.id` becomes the
    interaction id; text deltas are kept in case the stream breaks before its end."""

    __slots__ = ("ctx", "id_raw", "key", "ended")

    def __init__(self, ctx: Ctx, key: bytes | None):
        self.ctx = ctx
        self.id_raw: msgspec.Raw | None = None
        self.key = key.decode() if key else None
        self.ended = False

    def rewrite(self, event: bytes) -> bytes | None:
        head, sep, payload = event.partition(b"data:")
        if not sep or (head and not head.endswith(b"\n")):
            return event
        payload = payload.strip()
        if not payload.startswith(b"{"):
            return event
        try:
            doc = _raw_dict.decode(payload)
            kind = _any.decode(doc["type"]) if "type" in doc else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            return event
        ctx = self.ctx
        if kind == "response.output_text.delta":
            d = field(doc, "delta")
            if isinstance(d, str):
                ctx.parts.append(d)
            return event
        if kind == "error":
            ctx.status, ctx.error = "upstream_error", f"stream error: {payload[:300].decode('utf-8', 'replace')}"
            return event
        raw = doc.get("response")
        if raw is None:
            return event
        try:
            resp = _raw_dict.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return event
        _adopt_upstream_id(ctx, resp)
        if self.id_raw is None:
            self.id_raw = msgspec.Raw(_enc.encode(ctx.interaction_id or ""))
        if "id" in resp:
            resp["id"] = self.id_raw
        _client_previous(ctx, resp)
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.ended = True
            _capture_response(ctx, resp)
        doc["response"] = msgspec.Raw(_enc.encode(resp))
        return head + b"data: " + _enc.encode(doc)

    def done(self) -> None:
        ctx = self.ctx
        if not self.ended and ctx.parts:  # the stream ended without response.completed
            ctx.response = "".join(ctx.parts)
        if self.key is not None and ctx.response is not None and self.key in ctx.response:
            ctx.response = ctx.response.replace(self.key, REDACTED_KEY.decode())


async def relay_stream(ctx: Ctx, resp: UpstreamResponse, target: ArmTarget, send: Send) -> None:
    if resp.content_type != "text/event-stream":
        await relay_json(ctx, resp, target, send)
        return
    await relay_sse(ctx, resp, target, ResponsesStream(ctx, target.upstream.key), send, target.upstream.key)


# -- the handler ---------------------------------------------------------------------------

async def _create(ctx: Ctx, scope: Scope, headers: Headers, principal: Principal, receive: Receive, send: Send,
                  watch: Watch) -> None:
    doc, ra = await read_routed(ctx, headers, principal, receive)
    inp = field(doc, "input")
    if inp is not None and not isinstance(inp, (str, list)):
        raise ApiError(400, "`input` must be a string or an array of input items", "invalid_request", param="input")
    ctx.input, ctx.instructions = inp, field(doc, "instructions")
    if "tools" in doc:
        ctx.tools = field(doc, "tools")
    sticky = None
    if "previous_response_id" in doc:
        prev = field(doc, "previous_response_id")
        if prev is not None:
            ref, up_id = resolve(ctx.rt.signer, prev, ctx.tenant, ctx.route)
            doc["previous_response_id"] = msgspec.Raw(_enc.encode(up_id))
            ctx.previous_response_id = prev if isinstance(prev, str) else None
            sticky = ref.arm
    stream = ctx.stream = is_true(doc, "stream")
    target = choose(ctx, ra, doc, headers, principal, sticky=sticky)
    watch.arm()
    await forward_with_fallback(ctx, doc, target, stream, relay_stream if stream else relay_json, send)


async def responses_create(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await handle(rt, "responses", "POST", scope, receive, send, _create)
