"""What a Chat Completions answer becomes: the id swapped for the interaction id, and the
text, tool calls (assembled from streamed deltas), every choice (n > 1), finish reason and
usage captured for the event."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.proxy.context import ChoiceAcc, Ctx, Json
from gateway.proxy.forward import UpstreamFailure
from gateway.proxy.request import Send
from gateway.proxy.respond import send_json
from gateway.proxy.sse import relay_sse
from gateway.runtime import ArmTarget
from gateway.upstream.client import REDACTED_KEY
from gateway.upstream.transport import UpstreamResponse

_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_enc = msgspec.json.Encoder()
_any = msgspec.json.Decoder()
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')


# -- typed views of the response parts we read (unknown fields ignored, fast) --------------

class _Fn(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class _Tool(msgspec.Struct):
    index: int = 0
    id: str | None = None
    type: str | None = None
    function: _Fn | None = None


class _Msg(msgspec.Struct):
    content: Any = None
    tool_calls: list[_Tool] | None = None


class _Choice(msgspec.Struct):
    index: int = 0
    message: _Msg | None = None
    delta: _Msg | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


_choices = msgspec.json.Decoder(list[_Choice] | None)
_usage = msgspec.json.Decoder(_Usage | None)


def ensure_usage(doc: dict[str, msgspec.Raw]) -> bool:
    """Ask upstream for the usage chunk; True when the client did not ask (we strip it)."""
    so = doc.get("stream_options")
    opts = _any.decode(so) if so is not None else None
    if isinstance(opts, dict):
        if opts.get("include_usage") is True:
            return False
        opts["include_usage"] = True
        doc["stream_options"] = msgspec.Raw(_enc.encode(opts))
        return True
    doc["stream_options"] = _INCLUDE_USAGE
    return True


def _tool_dict(t: _Tool) -> dict[str, Json]:
    fn = t.function or _Fn()
    return {"id": t.id, "type": t.type or "function", "function": {"name": fn.name, "arguments": fn.arguments or ""}}


def _choice_dict(index: int, text: str | None, tools: list[Json] | None, finish: str | None) -> dict[str, Json]:
    return {"index": index, "response": text, "tool_calls": tools, "finish_reason": finish}


# -- non-stream ----------------------------------------------------------------------------

async def relay_json(ctx: Ctx, resp: UpstreamResponse, target: ArmTarget, send: Send) -> None:
    data = target.upstream.scrub(await resp.read())
    try:
        doc = _raw_dict.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise UpstreamFailure("upstream_error", 502, "invalid_response", "upstream returned invalid JSON") from None
    token = ctx.interaction_id or ""
    out = {"id": msgspec.Raw(_enc.encode(token))}
    for k, v in doc.items():
        if k != "id":
            out[k] = v
    try:
        u = doc.get("usage")
        if u is not None:
            usage = _usage.decode(u)
            if usage is not None:
                ctx.prompt_tokens, ctx.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        c = doc.get("choices")
        choices = _choices.decode(c) if c is not None else None
        if choices:
            _capture_choices(ctx, choices)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # odd but valid JSON: pass it on, the event just lacks those fields
    ctx.status, ctx.http_status = "ok", 200
    await send_json(send, ctx, 200, _enc.encode(out),
                    [*target.headers, *ctx.upstream_headers, (b"x-abgate-interaction-id", token.encode())])


def _capture_choices(ctx: Ctx, choices: list[_Choice]) -> None:
    ch = choices[0]
    ctx.finish_reason = ch.finish_reason
    msg = ch.message
    if msg is not None:
        if isinstance(msg.content, str):
            ctx.response = msg.content
        if msg.tool_calls:
            ctx.tool_calls = [_tool_dict(t) for t in msg.tool_calls]
    if len(choices) > 1:
        out: list[Json] = []
        for c in sorted(choices, key=lambda c: c.index):
            m = c.message
            text = m.content if m is not None and isinstance(m.content, str) else None
            tools: list[Json] | None = [_tool_dict(t) for t in m.tool_calls] if m is not None and m.tool_calls else None
            out.append(_choice_dict(c.index, text, tools, c.finish_reason))
        ctx.choices = out


# -- stream --------------------------------------------------------------------------------

class ChatStream:
    """Rewrites chat.completion.chunk events: `id` -> interaction id, the usage chunk we asked
    for dropped; text, tool-call deltas and every choice accumulated into the context."""

    __slots__ = ("ctx", "id_raw", "injected", "key")

    def __init__(self, ctx: Ctx, injected: bool, key: bytes | None = None):
        self.ctx = ctx
        self.id_raw = msgspec.Raw(_enc.encode(ctx.interaction_id or ""))
        self.injected = injected
        self.key = key.decode() if key else None

    def rewrite(self, event: bytes) -> bytes | None:
        if not event.startswith(b"data:"):
            return event
        payload = event[5:].strip()
        if payload == b"[DONE]" or not payload.startswith(b"{"):
            return event
        try:
            doc = _raw_dict.decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return event  # not ours to judge: pass it on untouched
        ctx = self.ctx
        u = doc.get("usage")
        c = doc.get("choices")
        try:
            if u is not None:
                usage = _usage.decode(u)
                if usage is not None:
                    ctx.prompt_tokens, ctx.completion_tokens = usage.prompt_tokens, usage.completion_tokens
            choices = _choices.decode(c) if c is not None else None
        except (msgspec.DecodeError, msgspec.ValidationError):
            choices = None
        if choices:
            for ch in choices:
                d = ch.delta
                if ch.index == 0 and (d is None or d.tool_calls is None):  # the common case
                    if d is not None and isinstance(d.content, str):
                        ctx.parts.append(d.content)
                    if ch.finish_reason is not None:
                        ctx.finish_reason = ch.finish_reason
                else:
                    self._accumulate(ch)
        if self.injected:
            if u is not None and not choices and c is not None:
                return None  # the usage-only chunk the client did not ask for
            doc.pop("usage", None)
        if "id" in doc:
            doc["id"] = self.id_raw
        return b"data: " + _enc.encode(doc)

    def _accumulate(self, ch: _Choice) -> None:
        ctx = self.ctx
        if ctx.acc is None:
            ctx.acc = {}
        acc = ctx.acc.get(ch.index)
        if acc is None:
            acc = ctx.acc[ch.index] = ChoiceAcc()
        d = ch.delta
        if d is not None:
            if isinstance(d.content, str):
                (ctx.parts if ch.index == 0 else acc.parts).append(d.content)
            for t in d.tool_calls or ():
                if acc.tools is None:
                    acc.tools = {}
                slot = acc.tools.get(t.index)
                if slot is None:
                    slot = acc.tools[t.index] = {"id": "", "type": "function", "name": "", "arguments": ""}
                if t.id:
                    slot["id"] = t.id
                if t.type:
                    slot["type"] = t.type
                if t.function is not None:
                    if t.function.name:
                        slot["name"] += t.function.name
                    if t.function.arguments:
                        slot["arguments"] += t.function.arguments
        if ch.finish_reason is not None:
            if ch.index == 0:
                ctx.finish_reason = ch.finish_reason
            acc.finish_reason = ch.finish_reason

    def done(self) -> None:
        ctx = self.ctx
        if ctx.parts:
            ctx.response = "".join(ctx.parts)
            if self.key is not None and self.key in ctx.response:  # echoed over several deltas
                ctx.response = ctx.response.replace(self.key, REDACTED_KEY.decode())
        if ctx.acc is None:
            return
        zero = ctx.acc.get(0)
        if zero is not None and zero.tools:
            ctx.tool_calls = _tools(zero.tools)
        if any(i > 0 for i in ctx.acc):
            out: list[Json] = []
            for i in sorted({0, *ctx.acc}):
                a = ctx.acc.get(i)
                if i == 0:
                    out.append(_choice_dict(0, ctx.response, ctx.tool_calls, ctx.finish_reason))
                elif a is not None:
                    out.append(_choice_dict(i, "".join(a.parts) if a.parts else None,
                                            _tools(a.tools) if a.tools else None, a.finish_reason))
            ctx.choices = out


def _tools(slots: dict[int, dict[str, str]]) -> list[Json]:
    return [{"id": s["id"] or None, "type": s["type"], "function": {"name": s["name"], "arguments": s["arguments"]}}
            for _, s in sorted(slots.items())]


async def relay_stream(ctx: Ctx, resp: UpstreamResponse, target: ArmTarget, send: Send) -> None:
    """A streamed chat request (a JSON answer to a stream request is relayed as JSON)."""
    if resp.content_type != "text/event-stream":
        await relay_json(ctx, resp, target, send)
        return
    await relay_sse(ctx, resp, target, ChatStream(ctx, ctx.strip_usage, target.upstream.key), send,
                    target.upstream.key)
