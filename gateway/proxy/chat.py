"""`POST /v1/chat/completions`: the body passes through byte for byte except `model`."""

from __future__ import annotations

import msgspec

from gateway.auth import Principal
from gateway.errors import ApiError
from gateway.proxy.chat_relay import ensure_usage, relay_json, relay_stream
from gateway.proxy.choose import choose, read_routed
from gateway.proxy.context import Ctx, Json
from gateway.proxy.forward import forward_with_fallback
from gateway.proxy.handler import Watch, handle
from gateway.proxy.request import (
    Headers,
    Receive,
    Scope,
    Send,
    field,
    is_true,
)
from gateway.runtime import Runtime


def check_messages(doc: dict[str, msgspec.Raw]) -> list[Json]:
    messages = field(doc, "messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "`messages` is required and must be a non-empty array", "invalid_request",
                       param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise ApiError(400, f"messages[{i}] must be an object with a string `role`", "invalid_request",
                           param=f"messages[{i}]")
    return messages


async def _chat(ctx: Ctx, scope: Scope, headers: Headers, principal: Principal, receive: Receive, send: Send,
                watch: Watch) -> None:
    doc, ra = await read_routed(ctx, headers, principal, receive)
    ctx.messages = check_messages(doc)
    if "tools" in doc:  # the tool definitions, so a tool-call answer becomes a complete training example
        ctx.tools = field(doc, "tools")
    stream = ctx.stream = is_true(doc, "stream")
    target = choose(ctx, ra, doc, headers, principal)
    if stream:
        ctx.strip_usage = ensure_usage(doc)
    watch.arm()
    await forward_with_fallback(ctx, doc, target, stream, relay_stream if stream else relay_json, send)


async def chat_completions(rt: Runtime, scope: Scope, receive: Receive, send: Send) -> None:
    await handle(rt, "chat", "POST", scope, receive, send, _chat)
