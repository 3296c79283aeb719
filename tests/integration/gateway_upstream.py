"""A tiny scriptable OpenAI-style upstream for the gateway tests (real HTTP process).

Behaviour is chosen by the model id the gateway forwards, so one process serves every case:
  *status-500*  -> 500        *status-400* -> 400 OpenAI error      *slow* -> sleeps 3 s
  *stall*       -> stream: one chunk, then silence                *nousage* -> never sends usage
  anything else -> answers "echo:<model>" (stream: three deltas, usage chunk when asked)
`GET /_last` returns the last request's raw body and headers; `GET /_count` counts per model;
`GET /_cancelled` counts streams whose client (the gateway) went away.

Run: python -m tests.integration.gateway_upstream --port P
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json

from aiohttp import web

STATE: dict[str, object] = {"last": None, "count": {}, "cancelled": 0}


def _chunk(model: str, delta: dict, finish: str | None = None, usage: dict | None = None, with_usage_null: bool = False
           ) -> bytes:
    doc: dict = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    if with_usage_null:
        doc["usage"] = None
    if usage is not None:
        doc = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": [],
               "usage": usage}
    return b"data: " + json.dumps(doc).encode() + b"\n\n"


async def chat(request: web.Request) -> web.StreamResponse:
    raw = await request.read()
    STATE["last"] = {"body": base64.b64encode(raw).decode(), "headers": dict(request.headers)}
    body = json.loads(raw)
    model = body.get("model", "")
    counts = STATE["count"]
    counts[model] = counts.get(model, 0) + 1  # type: ignore[index,union-attr]
    if "status-500" in model:
        return web.json_response({"error": {"message": "boom", "type": "server_error", "code": None}}, status=500)
    if "status-400" in model:
        return web.json_response({"error": {"message": "bad param x", "type": "invalid_request_error",
                                            "code": "bad_x", "param": "x"}}, status=400)
    if "slow" in model:
        await asyncio.sleep(3)
    usage = {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}
    text = f"echo:{model}"
    if not body.get("stream"):
        return web.json_response({
            "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage, "system_fingerprint": "fp_x"})
    include = bool((body.get("stream_options") or {}).get("include_usage")) and "nousage" not in model
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    try:
        await resp.write(_chunk(model, {"role": "assistant", "content": ""}, with_usage_null=include))
        if "stall" in model:
            await asyncio.sleep(30)
        for part in ("echo:", model[:5], model[5:]):
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
    app.router.add_get("/_last", last)
    app.router.add_get("/_count", count)
    app.router.add_get("/_cancelled", cancelled)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, handler_cancellation=True)


if __name__ == "__main__":
    main()
