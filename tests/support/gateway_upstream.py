"""A tiny scriptable OpenAI-style upstream for the gateway tests (real HTTP process).

Behaviour is chosen by the model id the gateway forwards, so one process serves every case:
  *status-500*  -> 500        *status-400* -> 400 OpenAI error      *slow* -> sleeps 3 s
  *stall*       -> stream: one chunk, then silence                *nousage* -> never sends usage
  *ratelimited* -> 429 with retry-after: 1 and x-ratelimit-* headers
  *leakkey*     -> a 200 whose text echoes the upstream key it was sent
  anything else -> answers "echo:<model>" (stream: three deltas, usage chunk when asked)
Chat `tools` -> a `get_weather` tool call (streamed as argument deltas); `n: 2` -> two choices
(streamed interleaved). Every answer carries x-request-id, x-ratelimit-*, openai-processing-ms,
and headers that must never reach a client (set-cookie, openai-organization).
Also served: the Responses API (`POST /v1/responses`, stream or not, `previous_response_id`
chaining over the responses it created, `GET /v1/responses/{id}`), `POST /v1/embeddings`,
`GET /v1/models/{id}`.
`GET /_last` returns the last request's raw body and headers; `GET /_count` counts per model;
`GET /_cancelled` counts streams whose client (the gateway) went away.

Run: python -m tests.support.gateway_upstream --port P
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json

from aiohttp import web

STATE: dict[str, object] = {"last": None, "count": {}, "cancelled": 0}
RESPONSES: dict[str, dict] = {}
_ids = itertools.count(1)


def _headers() -> dict[str, str]:
    n = next(_ids)
    return {"x-request-id": f"req_up_{n}", "openai-processing-ms": "7", "x-ratelimit-limit-requests": "500",
            "x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "120ms",
            "set-cookie": "session=secret-cookie", "openai-organization": "org-secret"}


def _remember(request: web.Request, raw: bytes) -> dict:
    STATE["last"] = {"body": base64.b64encode(raw).decode(), "headers": dict(request.headers)}
    body = json.loads(raw) if raw else {}
    model = body.get("model", "") if isinstance(body, dict) else ""
    counts = STATE["count"]
    counts[model] = counts.get(model, 0) + 1  # type: ignore[index,union-attr]
    return body


def _canned_error(model: str) -> web.Response | None:
    if "status-500" in model:
        return web.json_response({"error": {"message": "boom", "type": "server_error", "code": None}}, status=500,
                                 headers=_headers())
    if "status-400" in model:
        return web.json_response({"error": {"message": "bad param x", "type": "invalid_request_error",
                                            "code": "bad_x", "param": "x"}}, status=400, headers=_headers())
    if "ratelimited" in model:
        return web.json_response({"error": {"message": "Rate limit reached", "type": "requests",
                                            "code": "rate_limit_exceeded"}}, status=429,
                                 headers={**_headers(), "retry-after": "1", "retry-after-ms": "1000",
                                          "x-ratelimit-remaining-requests": "0"})
    return None


def _chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None, with_usage_null: bool = False,
           index: int = 0) -> bytes:
    doc: dict = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
    if with_usage_null:
        doc["usage"] = None
    if usage is not None:
        doc = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
               "usage": usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


TOOL_ARGS = '{"city": "Paris", "unit": "c"}'


def _key_of(request: web.Request) -> str:
    return request.headers.get("authorization", "").removeprefix("Bearer ")


async def chat(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    body = _remember(request, raw)
    model = body.get("model", "")
    err = _canned_error(model)
    if err is not None:
        return err
    if "slow" in model:
        await asyncio.sleep(3)
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    text = f"echo:{model}"
    if "leakkey" in model:
        text = f"the key is {_key_of(request)}"
    n = int(body.get("n") or 1)
    tools = bool(body.get("tools"))
    if not body.get("stream"):
        choices = []
        for i in range(n):
            if tools:
                msg = {"role": "assistant", "content": None, "tool_calls": [
                    {"id": f"call_{i}", "type": "function", "function": {"name": "get_weather", "arguments": TOOL_ARGS}}]}
                choices.append({"index": i, "message": msg, "finish_reason": "tool_calls"})
            else:
                choices.append({"index": i, "message": {"role": "assistant", "content": text if i == 0 else f"{text}#{i}"},
                                "finish_reason": "stop"})
        return web.json_response({
            "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": choices, "usage": usage, "system_fingerprint": "fp_x"}, headers=_headers())
    include = bool((body.get("stream_options") or {}).get("include_usage")) and "nousage" not in model
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", **_headers()})
    await resp.prepare(request)
    try:
        if tools or n > 1:
            await _stream_agentic(resp, model, n, tools, text, include, usage)
            return resp
        await resp.write(_chunk(model, {"role": "assistant", "content": ""}, with_usage_null=include))
        if "stall" in model:
            await asyncio.sleep(30)
        parts = ("echo:", model[:5], model[5:]) if "leakkey" not in model else ("the key is ", _key_of(request), ".")
        for part in parts:
            await resp.write(_chunk(model, {"content": part}, with_usage_null=include))
            await asyncio.sleep(0.01)
        await resp.write(_chunk(model, {}, finish="stop", with_usage_null=include))
        if include:
            await resp.write(_chunk(model, {}, usage=usage))
        await resp.write(b"data: [DONE]\n\n")
    except (asyncio.CancelledError, ConnectionResetError):
        STATE["cancelled"] = int(STATE["cancelled"]) + 1  # type: ignore[call-overload]
        raise
    return resp


async def _stream_agentic(resp: web.StreamResponse, model: str, n: int, tools: bool, text: str, include: bool,
                          usage: dict) -> None:
    """Tool-call deltas (name first, arguments in pieces) and/or n interleaved choices."""
    for i in range(n):
        await resp.write(_chunk(model, {"role": "assistant", "content": None if tools else ""}, index=i))
    if tools:
        for i in range(n):
            await resp.write(_chunk(model, {"tool_calls": [{"index": 0, "id": f"call_{i}", "type": "function",
                                                            "function": {"name": "get_weather", "arguments": ""}}]},
                                    index=i))
        for piece in (TOOL_ARGS[:9], TOOL_ARGS[9:20], TOOL_ARGS[20:]):
            for i in range(n):
                await resp.write(_chunk(model, {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]},
                                        index=i))
    else:
        for piece in ("echo:", model[:5], model[5:]):
            for i in range(n):
                await resp.write(_chunk(model, {"content": piece}, index=i))
        for i in range(1, n):
            await resp.write(_chunk(model, {"content": f"#{i}"}, index=i))
    for i in range(n):
        await resp.write(_chunk(model, {}, finish="tool_calls" if tools else "stop", index=i))
    if include:
        await resp.write(_chunk(model, {}, usage=usage))
    await resp.write(b"data: [DONE]\n\n")


# -- Responses API ---------------------------------------------------------------------

def _response_obj(rid: str, model: str, body: dict, status: str, output: list, text: str) -> dict:
    return {"id": rid, "object": "response", "created_at": 1, "status": status, "model": model,
            "output": output, "error": None, "incomplete_details": None,
            "instructions": body.get("instructions"), "previous_response_id": body.get("previous_response_id"),
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": body.get("tools") or [],
            "temperature": 1.0, "top_p": 1.0, "metadata": {}, "text": {"format": {"type": "text"}},
            "usage": {"input_tokens": 9, "output_tokens": 4, "total_tokens": 13,
                      "input_tokens_details": {"cached_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}} if status == "completed" else None}


async def responses(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    body = _remember(request, raw)
    model = body.get("model", "")
    err = _canned_error(model)
    if err is not None:
        return err
    prev = body.get("previous_response_id")
    if prev is not None and prev not in RESPONSES:
        return web.json_response({"error": {"message": f"Previous response with id '{prev}' not found.",
                                            "type": "invalid_request_error", "param": "previous_response_id",
                                            "code": "previous_response_not_found"}}, status=400, headers=_headers())
    turn = 1 + (RESPONSES[prev]["turn"] if prev else 0)
    rid = f"resp_up{next(_ids):04d}"
    text = f"echo:{model} turn {turn}"
    if "leakkey" in model:
        text = f"the key is {_key_of(request)}"
    msg_id = f"msg_{rid}"
    if body.get("tools"):
        output = [{"type": "function_call", "id": f"fc_{rid}", "call_id": f"call_{rid}", "name": "get_weather",
                   "arguments": TOOL_ARGS, "status": "completed"}]
    else:
        output = [{"type": "message", "id": msg_id, "status": "completed", "role": "assistant",
                   "content": [{"type": "output_text", "text": text, "annotations": []}]}]
    final = _response_obj(rid, model, body, "completed", output, text)
    RESPONSES[rid] = {"turn": turn, "obj": final}
    if not body.get("stream"):
        return web.json_response(final, headers=_headers())
    resp = web.StreamResponse(headers={"content-type": "text/event-stream", **_headers()})
    await resp.prepare(request)
    seq = itertools.count()

    async def emit(kind: str, doc: dict) -> None:
        doc = {"type": kind, "sequence_number": next(seq), **doc}
        await resp.write(f"event: {kind}\ndata: {json.dumps(doc)}\n\n".encode())

    start = _response_obj(rid, model, body, "in_progress", [], "")
    await emit("response.created", {"response": start})
    await emit("response.in_progress", {"response": start})
    item = output[0]
    if item["type"] == "message":
        await emit("response.output_item.added", {"output_index": 0, "item": {**item, "status": "in_progress",
                                                                              "content": []}})
        await emit("response.content_part.added", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                                   "part": {"type": "output_text", "text": "", "annotations": []}})
        for piece in (text[:5], text[5:12], text[12:]):
            await emit("response.output_text.delta", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                                      "delta": piece, "logprobs": []})
            await asyncio.sleep(0.005)
        await emit("response.output_text.done", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                                 "text": text, "logprobs": []})
        await emit("response.content_part.done", {"item_id": msg_id, "output_index": 0, "content_index": 0,
                                                  "part": item["content"][0]})
    else:
        await emit("response.output_item.added", {"output_index": 0, "item": {**item, "arguments": "",
                                                                              "status": "in_progress"}})
        for piece in (TOOL_ARGS[:9], TOOL_ARGS[9:]):
            await emit("response.function_call_arguments.delta", {"item_id": item["id"], "output_index": 0,
                                                                  "delta": piece})
        await emit("response.function_call_arguments.done", {"item_id": item["id"], "output_index": 0,
                                                             "arguments": TOOL_ARGS})
    await emit("response.output_item.done", {"output_index": 0, "item": item})
    await emit("response.completed", {"response": final})
    return resp


async def get_response(request: web.Request) -> web.Response:
    rid = request.match_info["rid"]
    STATE["last"] = {"body": "", "headers": dict(request.headers), "path": request.path}
    found = RESPONSES.get(rid)
    if found is None:
        return web.json_response({"error": {"message": f"Response with id '{rid}' not found.",
                                            "type": "invalid_request_error", "param": None, "code": None}},
                                 status=404, headers=_headers())
    return web.json_response(found["obj"], headers=_headers())


async def embeddings(request: web.Request) -> web.Response:
    raw = await request.read()
    body = _remember(request, raw)
    model = body.get("model", "")
    err = _canned_error(model)
    if err is not None:
        return err
    inp = body.get("input")
    items = inp if isinstance(inp, list) else [inp]
    data = [{"object": "embedding", "index": i, "embedding": [0.1 * (i + 1), 0.2, -0.3]} for i in range(len(items))]
    return web.json_response({"object": "list", "data": data, "model": model,
                              "usage": {"prompt_tokens": 4 * len(items), "total_tokens": 4 * len(items)}},
                             headers=_headers())


async def model_get(request: web.Request) -> web.Response:
    mid = request.match_info["mid"]
    return web.json_response({"id": mid, "object": "model", "created": 1, "owned_by": "upstream"})


async def last(_: web.Request) -> web.Response:
    return web.json_response(STATE["last"])


async def count(_: web.Request) -> web.Response:
    return web.json_response(STATE["count"])


async def cancelled(_: web.Request) -> web.Response:
    return web.json_response({"cancelled": STATE["cancelled"]})


async def healthz(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    args = p.parse_args()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/responses", responses)
    app.router.add_get("/v1/responses/{rid}", get_response)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_get("/v1/models/{mid}", model_get)
    app.router.add_get("/_last", last)
    app.router.add_get("/_count", count)
    app.router.add_get("/_cancelled", cancelled)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
