"""The floor: the thinnest forwarder on the gateway's own stack.

Litestar app (lifespan, /healthz) on uvicorn (uvloop + httptools) with one pooled keep-alive
aiohttp session, forwarding `POST /v1/chat/completions` bodies unchanged and streaming the
upstream answer back chunk by chunk. Like abgate's own hot path, the chat route is a raw ASGI
callable in front of Litestar's router (`--litestar-handler` routes it through a regular
Litestar handler instead, to show what the framework layer costs). No routing, no events, no
metrics: whatever abgate costs above this is abgate's own cost.

    python -m bench.passthrough --upstream http://127.0.0.1:8001 --port 8002
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgspec
import uvicorn
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.response import Response, Stream

_FORWARD_HEADERS = ("content-type", "authorization")


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    # Hand each chunk over as it arrives: buffering would hide the stack's TTFT cost.
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()


@post("/v1/chat/completions")
async def chat(
    request: Request[Any, Any, State], state: State,
) -> Response[bytes] | Response[dict[str, dict[str, str]]] | Stream:
    body = await request.body()
    headers = {k: v for k in _FORWARD_HEADERS if (v := request.headers.get(k)) is not None}
    session: aiohttp.ClientSession = state.session
    try:
        upstream = await session.post(state.upstream_url, data=body, headers=headers)
    except aiohttp.ClientError as err:
        error = {"error": {"message": f"upstream unreachable: {err}", "type": "upstream_error", "code": "bad_gateway"}}
        return Response(error, status_code=502)
    media_type = upstream.headers.get("content-type", "application/json")
    if media_type.startswith("text/event-stream"):
        return Stream(_relay(upstream), status_code=upstream.status, media_type=media_type)
    content = await upstream.read()
    upstream.release()
    return Response(content, status_code=upstream.status, media_type=media_type)


@get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def create_app(upstream_base: str) -> Litestar:
    async def open_session(app: Litestar) -> None:
        # limit=0: no client-side pool cap, the same as a gateway sized for its upstream.
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=60)
        app.state.session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))

    async def close_session(app: Litestar) -> None:
        await app.state.session.close()

    return Litestar(
        route_handlers=[chat, healthz],
        on_startup=[open_session],
        on_shutdown=[close_session],
        state=State({"upstream_url": upstream_base.rstrip("/") + "/v1/chat/completions"}),
        openapi_config=None,
    )


_JSON = [(b"content-type", b"application/json")]


class RawForwarder:
    """ASGI: chat completions go straight to the upstream; everything else (and lifespan) to Litestar."""

    def __init__(self, app: Litestar):
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k.decode() in _FORWARD_HEADERS}
        state = self.app.state
        try:
            upstream = await state.session.post(state.upstream_url, data=b"".join(chunks), headers=headers)
        except aiohttp.ClientError as err:
            body = msgspec.json.encode({"error": {"message": f"upstream unreachable: {err}", "type": "upstream_error",
                                                  "code": "bad_gateway"}})
            await send({"type": "http.response.start", "status": 502, "headers": _JSON})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            media_type = upstream.headers.get("content-type", "application/json")
            out_headers = [(b"content-type", media_type.encode())]
            if media_type.startswith("text/event-stream"):
                await send({"type": "http.response.start", "status": upstream.status, "headers": out_headers})
                async for chunk in upstream.content.iter_any():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            else:
                body = await upstream.read()
                out_headers.append((b"content-length", str(len(body)).encode()))
                await send({"type": "http.response.start", "status": upstream.status, "headers": out_headers})
                await send({"type": "http.response.body", "body": body})
        finally:
            upstream.release()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upstream", required=True, help="upstream base URL (without /v1)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8002)
    parser.add_argument("--litestar-handler", action="store_true",
                        help="serve chat through a regular Litestar handler instead of the raw ASGI fast path")
    args = parser.parse_args(argv)
    app = create_app(args.upstream)
    uvicorn.run(app if args.litestar_handler else RawForwarder(app), host=args.host, port=args.port, loop="uvloop",
                http="httptools", access_log=False, log_level="warning", lifespan="on")


if __name__ == "__main__":
    main()
