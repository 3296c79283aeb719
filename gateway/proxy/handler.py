"""The shape every proxy endpoint shares: one context, errors mapped to OpenAI answers, the
client-disconnect watch, and the event recorded exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import structlog

from gateway.auth import Principal
from gateway.errors import ApiError
from gateway.proxy.context import Ctx, Endpoint
from gateway.proxy.forward import UpstreamFailure
from gateway.proxy.record import finish
from gateway.proxy.request import ClientGone, Headers, Receive, Scope, Send, check_headers
from gateway.proxy.respond import send_error
from gateway.ratelimit import RateLimiter
from gateway.runtime import Runtime

log = structlog.get_logger("abgate.proxy")
perf = time.perf_counter
WATCH_AFTER_S = 0.2

# Unauthenticated traffic (no or invalid key) per client address, per worker: beyond this the
# gateway answers 429 without looking further.
UNAUTH_RPS = 20.0
UNAUTH_BURST = 40
unauth_limiter = RateLimiter()

Body = Callable[[Ctx, Scope, Headers, Principal, Receive, Send, "Watch"], Awaitable[None]]


class Watch:
    """Watches for the client going away while we wait on the upstream. Started a little
    later: most requests finish first and never pay for the extra task, and a client that
    left meanwhile is still seen at once (receive() reports it immediately)."""

    __slots__ = ("receive", "ctx", "task", "watcher", "timer")

    def __init__(self, receive: Receive, ctx: Ctx, task: asyncio.Task[object] | None):
        self.receive, self.ctx, self.task = receive, ctx, task
        self.watcher: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        if not self.ctx.finished:
            self.watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                if not self.ctx.finished and self.task is not None:
                    self.ctx.closed = True
                    self.task.cancel()
                return

    def stop(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.watcher is not None:
            self.watcher.cancel()


def _client_addr(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "?"


def authenticate(ctx: Ctx, scope: Scope, headers: Headers) -> Principal:
    """The caller; 401s are limited per client address."""
    try:
        principal = ctx.comp.auth.client(headers.get("authorization"))
    except ApiError as err:
        ctx.unauthenticated = True
        wait = unauth_limiter.check(_client_addr(scope), UNAUTH_RPS, UNAUTH_BURST)
        if wait is not None:
            raise ApiError(429, "too many unauthenticated requests from this address", "rate_limit_exceeded",
                           headers=((b"retry-after", RateLimiter.retry_after_header(wait)),)) from None
        raise err
    ctx.tenant = principal.tenant
    return principal


async def rate_limit(rt: Runtime, principal: Principal) -> None:
    if principal.rate_rps is not None and principal.key_hash is not None:
        wait = await rt.limiter.acheck(principal.key_hash, principal.rate_rps, principal.rate_burst)
        if wait is not None:
            raise ApiError(429, f"rate limit of {principal.rate_rps:g} requests/s exceeded for this key",
                           "rate_limit_exceeded", headers=((b"retry-after", RateLimiter.retry_after_header(wait)),))


async def handle(rt: Runtime, endpoint: Endpoint, method: str, scope: Scope, receive: Receive, send: Send,
                 body: Body) -> None:
    comp = rt.compiled  # this request keeps the config version it started with
    assert comp is not None
    ctx = Ctx(t0=perf(), rt=rt, comp=comp, endpoint=endpoint, config_version=comp.version)
    task = asyncio.current_task()
    watch = Watch(receive, ctx, task)
    try:
        try:
            if scope["method"] != method:
                raise ApiError(405, f"use {method} for {scope['path']}", "method_not_allowed",
                               headers=((b"allow", method.encode()),))
            headers = Headers(scope["headers"])
            check_headers(headers)
            principal = authenticate(ctx, scope, headers)
            if principal.rate_rps is not None:
                await rate_limit(rt, principal)
            await body(ctx, scope, headers, principal, receive, send, watch)
        except UpstreamFailure as fail:
            ctx.status, ctx.http_status, ctx.error = fail.status, fail.http_status, fail.message
            rt.metrics.upstream_error(ctx.route or "", ctx.arm or "", fail.reason)
            await send_error(send, ctx, fail.http_status, fail.message, fail.reason, extra=fail.headers)
        except ApiError as err:
            ctx.status, ctx.http_status, ctx.error = "rejected", err.status, err.message
            await send_error(send, ctx, err.status, err.message, err.code, err.param, err.headers)
        except ClientGone:
            ctx.status, ctx.http_status, ctx.error = "client_closed", 499, "client left before sending its body"
        except asyncio.CancelledError:
            if not ctx.closed or task is None:
                raise
            task.uncancel()  # our own cancel: the client left
            ctx.status, ctx.http_status, ctx.error = "client_closed", 499, "client closed the connection"
        except Exception as err:  # a bug must not kill the worker nor skip the event
            log.exception("proxy_failed", endpoint=endpoint, interaction_id=ctx.interaction_id)
            ctx.status, ctx.http_status, ctx.error = "upstream_error", 500, f"internal error: {type(err).__name__}"
            await send_error(send, ctx, 500, "internal gateway error", "internal_error")
    finally:
        ctx.finished = True
        watch.stop()
        finish(ctx)
