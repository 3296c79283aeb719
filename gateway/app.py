"""The gateway's Litestar app: the proxy endpoints (raw ASGI), models, health, metrics, admin."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import structlog
from litestar import Litestar, MediaType, Request, Response, get
from litestar.exceptions import HTTPException
from litestar.handlers import asgi
from litestar.params import FromPath

from gateway import admin, jsonsafe, openapi
from gateway.auth import bearer, single_authorization
from gateway.errors import ApiError, error_body
from gateway.proxy import MAX_HEADER_BYTES, chat_completions, cors, embeddings, responses_create
from gateway.proxy.retrieve import delete_response, list_input_items, retrieve_response
from gateway.runtime import Runtime
from gateway.settings import Settings

log = structlog.get_logger("abgate.app")
_enc = msgspec.json.Encoder()


def runtime(request: Request[Any, Any, Any]) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


@asgi("/v1/chat/completions", copy_scope=False)
async def chat(scope: Any, receive: Any, send: Any) -> None:
    await chat_completions(scope["app"].state.runtime, scope, receive, send)


@asgi("/v1/responses", copy_scope=False)
async def responses(scope: Any, receive: Any, send: Any) -> None:
    await responses_create(scope["app"].state.runtime, scope, receive, send)


@asgi("/v1/embeddings", copy_scope=False)
async def embeddings_route(scope: Any, receive: Any, send: Any) -> None:
    await embeddings(scope["app"].state.runtime, scope, receive, send)


# the proxy endpoints FastPath serves without Litestar
PROXIED = {"/v1/chat/completions": chat_completions, "/v1/responses": responses_create,
           "/v1/embeddings": embeddings}
# Base URLs without /v1 (LiteLLM's api_base, hand-written clients) reach the same endpoints.
ALIAS_PREFIXES = ("/chat/", "/responses", "/embeddings", "/models", "/feedback")


@get("/v1/models", media_type=MediaType.JSON, sync_to_thread=False)
def models(request: Request[Any, Any, Any]) -> Response[bytes]:
    comp = runtime(request).compiled
    principal = comp.auth.client(request.headers.get("authorization"))
    data = [
        {"id": name, "object": "model", "created": 0, "owned_by": "abgate"}
        for name in comp.routes
        if principal.may_use(name)
    ]
    return Response(_enc.encode({"object": "list", "data": data}), media_type=MediaType.JSON)


@get("/v1/models/{model_id:str}", media_type=MediaType.JSON, sync_to_thread=False)
def model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> Response[bytes]:
    comp = runtime(request).compiled
    principal = comp.auth.client(request.headers.get("authorization"))
    if model_id not in comp.routes or not principal.may_use(model_id):
        raise ApiError(404, f"The model `{model_id[:200]}` does not exist or you do not have access to it.",
                       "model_not_found", param="model")
    return Response(_enc.encode({"id": model_id, "object": "model", "created": 0, "owned_by": "abgate"}),
                    media_type=MediaType.JSON)


@get("/healthz", media_type=MediaType.JSON, sync_to_thread=False)
def healthz() -> Response[bytes]:
    return Response(b'{"status":"ok"}', media_type=MediaType.JSON)


@get("/readyz", media_type=MediaType.JSON, sync_to_thread=False)
def readyz(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = runtime(request)
    checks = {
        "config_loaded": rt.compiled is not None,
        "sink_writable": bool(rt.sink is not None and rt.sink.writable),
    }
    ok = all(checks.values())
    body = {"status": "ready" if ok else "not_ready", "checks": checks,
            "config_version": rt.compiled.version if rt.compiled else None}
    return Response(_enc.encode(body), status_code=200 if ok else 503, media_type=MediaType.JSON)


METRICS_TOKEN_ENV = "ABGATE_METRICS_TOKEN"


def _check_metrics_access(request: Request[Any, Any, Any]) -> None:
    """With `ABGATE_METRICS_TOKEN` set, /metrics (every tenant's route names and costs) needs
    `Authorization: Bearer <that token>` (Prometheus: `authorization: {credentials: ...}`)."""
    expected = os.environ.get(METRICS_TOKEN_ENV)
    if not expected:
        return
    token = bearer(single_authorization(request.scope["headers"]))
    if token is None:
        raise ApiError(401, f"/metrics needs `Authorization: Bearer <{METRICS_TOKEN_ENV}>`", "missing_api_key")
    if not hmac.compare_digest(hashlib.sha256(token.encode()).digest(), hashlib.sha256(expected.encode()).digest()):
        raise ApiError(401, "invalid metrics token", "invalid_api_key")


@get("/metrics", sync_to_thread=False)
def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    _check_metrics_access(request)
    rt = runtime(request)
    if rt.sink is not None:
        rt.metrics.set_queue_depth(rt.sink.queue_depth)
    body, content_type = rt.metrics.render()
    return Response(body, media_type=content_type)


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[bytes]:
    return Response(exc.body(), status_code=exc.status, media_type=MediaType.JSON,
                    headers={k.decode(): v.decode() for k, v in exc.headers})


def _http_error(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(exc.status_code, "invalid_request")
    detail = exc.detail
    extra = getattr(exc, "extra", None)
    if extra and exc.status_code == 400:
        detail = f"{detail}: {extra}"
    return Response(error_body(exc.status_code, str(detail), code), status_code=exc.status_code,
                    media_type=MediaType.JSON, headers=getattr(exc, "headers", None) or {})


def _internal_error(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    if isinstance(exc, RecursionError):  # a nesting bomb a handler's own decoder met first
        err = jsonsafe.too_deep()
        return Response(err.body(), status_code=400, media_type=MediaType.JSON)
    log.exception("handler_failed", error=type(exc).__name__)
    return Response(error_body(500, "internal gateway error", "internal_error"), status_code=500,
                    media_type=MediaType.JSON)


def _feedback_handlers() -> list[Any]:
    """`POST /v1/feedback` lives in gateway.feedback (events area); register what it exposes."""
    try:
        mod = importlib.import_module("gateway.feedback")
    except ModuleNotFoundError as err:
        if err.name != "gateway.feedback":
            raise
        log.warning("feedback_endpoint_missing", detail="gateway.feedback not found")
        return []
    for name in ("route_handlers", "handlers"):
        found = getattr(mod, name, None)
        if found:
            return list(found)
    for name in ("feedback", "post_feedback", "feedback_handler"):
        found = getattr(mod, name, None)
        if found is not None:
            return [found]
    raise RuntimeError("gateway.feedback exposes no route handler")


class FastPath:
    """Sends the proxy endpoints straight to the proxy, skipping Litestar's router and
    middleware stack on the hot path; everything else (and lifespan) goes to Litestar.
    Also: `/v1`-less aliases and CORS (when the config has a `cors` section)."""

    def __init__(self, app: Litestar):
        self.app = app
        self.state = app.state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not path.startswith("/v1/") and path.startswith(ALIAS_PREFIXES):
            path = scope["path"] = "/v1" + path
            scope["raw_path"] = path.encode()
        rt = self.state.get("runtime") if hasattr(self.state, "get") else getattr(self.state, "runtime", None)
        comp = rt.compiled if rt is not None else None
        if comp is not None and comp.config.cors is not None:
            origin = cors.origin_of(scope)
            if origin is not None:
                if await cors.preflight(comp.config.cors, scope, origin, send):
                    return
                send = cors.with_cors(comp.config.cors, origin, send)
        handler = PROXIED.get(path)
        if handler is None and sum(len(k) + len(v) for k, v in scope["headers"]) > MAX_HEADER_BYTES:
            body = error_body(431, f"request headers exceed {MAX_HEADER_BYTES} bytes", "headers_too_large")
            await send({"type": "http.response.start", "status": 431,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if path.startswith("/schema"):
            openapi_document(self.app)  # the corrected document, before Litestar renders it
        if handler is not None and scope["method"] != "POST":
            body = error_body(405, f"use POST for {path}", "method_not_allowed")
            await send({"type": "http.response.start", "status": 405,
                        "headers": [(b"content-type", b"application/json"), (b"allow", b"POST"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return
        if handler is not None and rt is not None:
            await handler(rt, scope, receive, send)
            return
        await self.app(scope, receive, send)


def fast_path(app: Litestar) -> FastPath:
    return FastPath(app)


def create_app(settings: Settings, extra_handlers: Sequence[Any] = ()) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        rt = Runtime(settings)
        app.state.runtime = rt
        try:
            await rt.start()
            yield
        finally:
            await rt.stop()
            deduper = getattr(app.state, "feedback_deduper", None)
            if deduper is not None:
                await deduper.close()

    return Litestar(
        route_handlers=[chat, responses, embeddings_route, models, model, retrieve_response, delete_response, list_input_items, healthz, readyz, metrics, *admin.handlers, *_feedback_handlers(),
                        *extra_handlers],
        lifespan=[lifespan],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error, Exception: _internal_error},
        debug=False,
    )


def openapi_document(app: Litestar) -> dict[str, Any]:
    """What /schema/openapi.json serves and docs/openapi.json holds (see gateway.openapi).
    Built on first use; also put in the place Litestar (2.x, pinned) renders /schema/* from."""
    from litestar._openapi.plugin import OpenAPIPlugin

    plugin = app.plugins.get(OpenAPIPlugin)
    doc: dict[str, Any] | None = getattr(app.state, "abgate_openapi", None)
    if doc is None:
        doc = openapi.document(plugin.provide_openapi_schema())
        plugin._openapi_schema = doc
        app.state.abgate_openapi = doc
    return doc
