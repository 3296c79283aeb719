"""CORS for browser apps, from the router config's `cors` section (hot-reloaded with it)."""

from __future__ import annotations

from gateway.config import Cors
from gateway.proxy.request import Message, Scope, Send

_EXPOSE = (b"x-abgate-route, x-abgate-arm, x-abgate-model, x-abgate-config-version, x-abgate-interaction-id, "
           b"x-abgate-fallback-from, x-request-id, retry-after, retry-after-ms, openai-processing-ms, "
           b"x-ratelimit-limit-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-requests, "
           b"x-ratelimit-remaining-tokens, x-ratelimit-reset-requests, x-ratelimit-reset-tokens")
METHODS = b"GET, POST, PUT, DELETE, OPTIONS"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


def allowed_origin(cors: Cors, origin: bytes) -> bytes | None:
    text = origin.decode("latin-1")
    if "*" in cors.allow_origins:
        return b"*"
    return origin if text in cors.allow_origins else None


def origin_of(scope: Scope) -> bytes | None:
    return _header(scope, b"origin")


async def preflight(cors: Cors, scope: Scope, origin: bytes, send: Send) -> bool:
    """Answer an OPTIONS preflight; False when this is not one."""
    if scope["method"] != "OPTIONS" or _header(scope, b"access-control-request-method") is None:
        return False
    allow = allowed_origin(cors, origin)
    headers: list[tuple[bytes, bytes]] = [(b"vary", b"origin"), (b"content-length", b"0")]
    if allow is not None:
        requested = _header(scope, b"access-control-request-headers") or b""
        allow_headers = requested if "*" in cors.allow_headers else ", ".join(cors.allow_headers).encode()
        headers += [(b"access-control-allow-origin", allow), (b"access-control-allow-methods", METHODS),
                    (b"access-control-allow-headers", allow_headers),
                    (b"access-control-max-age", str(cors.max_age_s).encode())]
    await send({"type": "http.response.start", "status": 204 if allow is not None else 403, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
    return True


def with_cors(cors: Cors, origin: bytes, send: Send) -> Send:
    """`send` that adds the CORS answer headers to the response start."""
    allow = allowed_origin(cors, origin)
    if allow is None:
        return send
    extra = [(b"access-control-allow-origin", allow), (b"access-control-expose-headers", _EXPOSE), (b"vary", b"origin")]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *extra]
        await send(message)

    return wrapped
