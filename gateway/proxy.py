"""Upstream clients (pooled aiohttp sessions, circuit breakers) and the chat proxy hot path.

The chat handler is a raw ASGI callable: it reads the body itself, swaps only `model`
(nested values keep their bytes), forwards to the arm's upstream, rewrites the response
`id` (every SSE chunk for streams) and emits exactly one Interaction event per request,
whatever happens. Nothing here blocks the event loop or logs on the happy path.
"""

from __future__ import annotations

import asyncio
import os
import time
from os import urandom
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp
import msgspec
import structlog

from gateway import events as ev
from gateway.config import Upstream
from gateway.errors import ApiError, error_body
from gateway.ids import InteractionRef
from gateway.jsonsafe import check_depth
from gateway.ratelimit import RateLimiter
from gateway.redact import capture
from gateway.variants import prepare as prepare_variant

if TYPE_CHECKING:
    from gateway.runtime import ArmTarget, Compiled, Runtime

log = structlog.get_logger("abgate.proxy")
perf = time.perf_counter

_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_enc = msgspec.json.Encoder()
_any = msgspec.json.Decoder()
_TRUE = msgspec.Raw(b"true")
_INCLUDE_USAGE = msgspec.Raw(b'{"include_usage":true}')
_JSON_CT = (b"content-type", b"application/json")
MAX_HEADER_BYTES = 64 * 1024  # httptools accepts far larger header blocks; refuse them ourselves
_SSE_HEADERS = ((b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"))


# -- typed views of the response parts we read (unknown fields ignored, fast) --------------

class _Msg(msgspec.Struct):
    content: Any = None


class _Choice(msgspec.Struct):
    message: _Msg | None = None
    delta: _Msg | None = None
    finish_reason: str | None = None


class _Usage(msgspec.Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


_choices = msgspec.json.Decoder(list[_Choice] | None)
_usage = msgspec.json.Decoder(_Usage | None)


# -- circuit breaker ----------------------------------------------------------------------

class Breaker:
    """N consecutive failures open the circuit for `cooldown_s`; then one probe is let through
    (half-open): its success closes the circuit, its failure re-opens it."""

    __slots__ = ("threshold", "cooldown_s", "failures", "open_until", "probing")

    def __init__(self, threshold: int, cooldown_s: float):
        self.threshold, self.cooldown_s = threshold, cooldown_s
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    @property
    def state(self) -> str:
        if self.open_until == 0.0:
            return "closed"
        return "open" if time.monotonic() < self.open_until else "half_open"

    def allow(self) -> bool:
        if self.open_until == 0.0:
            return True
        if time.monotonic() < self.open_until or self.probing:
            return False
        self.probing = True
        return True

    def success(self) -> None:
        self.failures = 0
        self.open_until = 0.0
        self.probing = False

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold:
            self.open_until = time.monotonic() + self.cooldown_s


# -- upstream clients ---------------------------------------------------------------------

class UpstreamClient:
    """One pooled keep-alive session per upstream definition."""

    def __init__(self, name: str, spec: Upstream, breaker: Breaker):
        self.name = name
        self.spec = spec
        self.chat_url = spec.base_url.rstrip("/") + "/chat/completions"
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self.headers = {"content-type": "application/json"}
        if key:
            self.headers["authorization"] = f"Bearer {key}"
        # upstream error bodies may echo our key back (OpenAI's 401 does): scrubbed before they
        # reach the client, events or logs
        self._key = key.encode() if key else None
        self.timeout = aiohttp.ClientTimeout(total=spec.timeout_s, connect=spec.connect_timeout_s)
        # Streams may run for minutes: bound the gap between chunks, not the whole stream.
        self.stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=spec.connect_timeout_s, sock_read=spec.timeout_s)
        self.breaker = breaker
        self.session: aiohttp.ClientSession | None = None

    def open(self) -> None:
        conn = aiohttp.TCPConnector(limit=self.spec.max_connections, ttl_dns_cache=300, keepalive_timeout=30)
        self.session = aiohttp.ClientSession(
            connector=conn, auto_decompress=True, skip_auto_headers=("User-Agent",), raise_for_status=False)

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    def scrub(self, data: bytes) -> bytes:
        return data.replace(self._key, b"[upstream key redacted]") if self._key and self._key in data else data

    def __repr__(self) -> str:  # never show headers: they hold the upstream key
        return f"UpstreamClient({self.name!r}, {self.spec.base_url!r})"


class UpstreamPool:
    """Clients keyed by their full definition, so a config reload that keeps an upstream
    keeps its warm connections; replaced clients close after in-flight requests finish."""

    def __init__(self, breaker_failures: int, breaker_cooldown_s: float):
        self._clients: dict[tuple[str, Upstream], UpstreamClient] = {}
        self._breaker = (breaker_failures, breaker_cooldown_s)
        self._retired: list[UpstreamClient] = []

    def get(self, name: str, spec: Upstream) -> UpstreamClient:
        key = (name, spec)
        c = self._clients.get(key)
        if c is None:
            c = UpstreamClient(name, spec, Breaker(*self._breaker))
            c.open()
            self._clients[key] = c
        return c

    def retain_only(self, used: set[tuple[str, Upstream]]) -> list[UpstreamClient]:
        gone = [k for k in self._clients if k not in used]
        return [self._clients.pop(k) for k in gone]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()

    def clients(self) -> list[UpstreamClient]:
        return list(self._clients.values())


# -- per-request context ------------------------------------------------------------------

@dataclass(slots=True)
class _Ctx:
    t0: float
    tenant: str = "unknown"
    route: str | None = None
    experiment: str | None = None
    arm: str | None = None
    phase: int | None = None
    config_version: int | None = None
    interaction_id: str | None = None
    unit: str | None = None
    traffic: str = "live"
    model: str | None = None
    stream: bool = False
    status: str = "rejected"
    http_status: int = 500
    waited: float = 0.0  # seconds spent awaiting the upstream or the client socket
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    price: tuple[float, float] = (0.0, 0.0)
    fallback_from: str | None = None
    messages: Any = None
    response: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    capture: str = "full"
    variant: str | None = None
    fewshot: Any = None
    closed: bool = False
    finished: bool = False
    recorded: bool = False
    rt: Any = None
    comp: Any = None
    parts: list[str] = field(default_factory=list)


class _UpstreamFailure(Exception):
    """The chosen arm failed in a way a fallback may cure (5xx, timeout, refused, open circuit)."""

    def __init__(self, status: str, http_status: int, reason: str, message: str):
        super().__init__(message)
        self.status, self.http_status, self.reason, self.message = status, http_status, reason, message


# -- request reading ----------------------------------------------------------------------

class _ClientGone(Exception):
    """The client disconnected before its request body arrived."""


async def _read_body(receive: Any, headers: dict[str, str], limit: int, timeout_s: float) -> bytes:
    cl = headers.get("content-length")
    if cl is not None:
        try:
            if int(cl) > limit:
                raise ApiError(413, f"request body is {cl} bytes; the limit is {limit}", "request_too_large")
        except ValueError:
            raise ApiError(400, "invalid content-length header", "invalid_request") from None
    msg = await receive()
    if msg["type"] != "http.request":
        raise _ClientGone
    body = msg.get("body", b"")
    if not msg.get("more_body", False):
        if len(body) > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
        return body
    buf = bytearray(body)
    try:
        async with asyncio.timeout(timeout_s):  # slow bodies (slowloris) are cut off
            while True:
                msg = await receive()
                if msg["type"] != "http.request":
                    raise _ClientGone
                buf += msg.get("body", b"")
                if len(buf) > limit:
                    raise ApiError(413, f"request body exceeds the limit of {limit} bytes", "request_too_large")
                if not msg.get("more_body", False):
                    return bytes(buf)
    except TimeoutError:
        raise ApiError(408, f"request body not received within {timeout_s}s", "body_timeout") from None


_WANTED = frozenset({b"authorization", b"content-type", b"content-length", b"x-abgate-arm"})


class _Headers(dict):  # type: ignore[type-arg]
    """The request headers the proxy reads, decoded once; others looked up on demand
    (the route's hash header), so a request with many headers costs nothing extra."""

    __slots__ = ("raw",)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        v = dict.get(self, key)
        if v is not None:
            return v
        if key.encode() in _WANTED:
            return default
        want = key.encode("latin-1")
        for k, val in self.raw:
            if k == want:
                return val.decode("latin-1")
        return default


def _headers(scope: Any) -> _Headers:
    h = _Headers()
    raw = scope["headers"]
    h.raw = raw
    for k, v in raw:
        if k in _WANTED:
            h[k.decode("latin-1")] = v.decode("latin-1")
    return h


def _parse(body: bytes) -> dict[str, msgspec.Raw]:
    check_depth(body)
    try:
        body.decode("utf-8")  # msgspec does not check UTF-8 inside Raw values
        doc = _raw_dict.decode(body)
    except UnicodeDecodeError as err:
        raise ApiError(400, f"request body is not valid UTF-8 (byte {err.start})", "invalid_json") from None
    except msgspec.ValidationError:
        raise ApiError(400, "request body must be a JSON object", "invalid_json") from None
    except msgspec.DecodeError as err:
        raise ApiError(400, f"request body is not valid JSON: {err}", "invalid_json") from None
    return doc


def _field(doc: dict[str, msgspec.Raw], name: str) -> Any:
    raw = doc.get(name)
    return None if raw is None else _any.decode(raw)


# -- the handler ---------------------------------------------------------------------------

async def chat_completions(rt: Runtime, scope: Any, receive: Any, send: Any) -> None:
    ctx = _Ctx(t0=perf())
    comp = rt.compiled  # this request keeps the config version it started with
    ctx.rt, ctx.comp = rt, comp
    ctx.config_version = comp.version
    task = asyncio.current_task()
    watcher: asyncio.TimerHandle | None = None
    try:
        try:
            if scope["method"] != "POST":
                raise ApiError(405, "use POST for /v1/chat/completions", "method_not_allowed")
            headers = _headers(scope)
            if sum(len(k) + len(v) for k, v in headers.raw) > MAX_HEADER_BYTES:
                raise ApiError(431, f"request headers exceed {MAX_HEADER_BYTES} bytes", "headers_too_large")
            ct = headers.get("content-type")
            if ct is not None and not ct.lower().startswith("application/json"):
                raise ApiError(400, f"content-type must be application/json, got {ct!r}", "invalid_content_type")
            principal = comp.auth.client(headers.get("authorization"))
            ctx.tenant = principal.tenant
            if principal.rate_rps is not None and principal.key_hash is not None:
                wait = await rt.limiter.acheck(principal.key_hash, principal.rate_rps, principal.rate_burst)
                if wait is not None:
                    raise ApiError(429, f"rate limit of {principal.rate_rps:g} requests/s exceeded for this key",
                                   "rate_limit_exceeded",
                                   headers=((b"retry-after", RateLimiter.retry_after_header(wait)),))
            body = await _read_body(receive, headers, comp.max_body, comp.body_timeout)
            doc = _parse(body)
            model = doc.get("model")
            route_name = _any.decode(model) if model is not None else None
            if not isinstance(route_name, str) or not route_name:
                raise ApiError(400, "`model` is required and must be a route name (string)", "invalid_request",
                               param="model")
            ra = comp.routes.get(route_name)
            if ra is None or not principal.may_use(route_name):
                raise ApiError(404, f"The model `{route_name[:200]}` does not exist or you do not have access to it.",
                               "model_not_found", param="model")
            ctx.route, ctx.experiment, ctx.phase = route_name, ra.experiment, ra.route.phase
            ctx.capture = ra.route.capture
            messages = _field(doc, "messages")
            if not isinstance(messages, list) or not messages:
                raise ApiError(400, "`messages` is required and must be a non-empty array", "invalid_request",
                               param="messages")
            for i, m in enumerate(messages):
                if not isinstance(m, dict) or not isinstance(m.get("role"), str):
                    raise ApiError(400, f"messages[{i}] must be an object with a string `role`", "invalid_request",
                                   param=f"messages[{i}]")
            ctx.messages = messages
            stream_raw = doc.get("stream")
            stream = stream_raw is not None and _any.decode(stream_raw) is True
            ctx.stream = stream
            user = None
            if ra.attr_kind == "user":
                u = _field(doc, "user")
                user = u if isinstance(u, str) else (str(u) if isinstance(u, int) and not isinstance(u, bool) else None)
            pin = headers.get("x-abgate-arm")
            if pin is not None:
                if not comp.auth.may_pin(principal, headers.get("authorization")):
                    raise ApiError(403, "only an admin key may pin an arm with x-abgate-arm", "pin_forbidden")
                arm = ra.pinned(pin)
                if arm is None:
                    raise ApiError(400, f"route {route_name!r} has no arm {pin!r}", "unknown_arm")
                unit_value = ra.unit_value(user, headers, principal.key_hash)
                unit = ra.assign(unit_value).unit if unit_value is not None else None
                ctx.traffic = "eval"
            else:
                a = ra.assign(ra.unit_value(user, headers, principal.key_hash))
                arm, unit = a.arm, a.unit
            ctx.arm, ctx.unit = arm.name, unit
            token = rt.signer.sign(InteractionRef(
                uuid=urandom(16).hex(), tenant=ctx.tenant, route=route_name, experiment=ra.experiment,
                arm=arm.name, phase=ra.route.phase, config_version=comp.version, traffic=ctx.traffic))
            ctx.interaction_id = token
            target = comp.targets[(route_name, arm.name)]
            injected = False
            if stream:
                injected = _ensure_usage(doc)
            # Watch for the client going away while we wait on the upstream. Started a little
            # later: most requests finish first and never pay for the extra task, and a client
            # that left meanwhile is still seen at once (receive() reports it immediately).
            watch = _Watch(receive, ctx, task)
            watcher = asyncio.get_running_loop().call_later(WATCH_AFTER_S, watch.start)
            try:
                await _forward(rt, ctx, doc, target, stream, injected, send)
            except _UpstreamFailure as fail:
                fb = comp.fallback.get(route_name)
                if fb is None or fb.arm.name == arm.name:
                    raise
                rt.metrics.upstream_error(route_name, arm.name, fail.reason)
                rt.metrics.fallback(route_name)
                ctx.fallback_from = arm.name
                await _forward(rt, ctx, doc, fb, stream, injected, send)
        except _UpstreamFailure as fail:
            ctx.status, ctx.http_status, ctx.error = fail.status, fail.http_status, fail.message
            rt.metrics.upstream_error(ctx.route or "", ctx.arm or "", fail.reason)
            await _send_error(send, ctx, comp, fail.http_status, fail.message, fail.reason)
        except ApiError as err:
            ctx.status, ctx.http_status, ctx.error = "rejected", err.status, err.message
            await _send_error(send, ctx, comp, err.status, err.message, err.code, err.param, err.headers)
        except _ClientGone:
            ctx.status, ctx.http_status, ctx.error = "client_closed", 499, "client left before sending its body"
        except asyncio.CancelledError:
            if not ctx.closed:
                raise
            task.uncancel()  # type: ignore[union-attr]  # our own cancel: the client left
            ctx.status, ctx.http_status, ctx.error = "client_closed", 499, "client closed the connection"
        except Exception as err:  # a bug must not kill the worker nor skip the event
            log.exception("chat_failed", interaction_id=ctx.interaction_id)
            ctx.status, ctx.http_status, ctx.error = "upstream_error", 500, f"internal error: {type(err).__name__}"
            await _send_error(send, ctx, comp, 500, "internal gateway error", "internal_error")
    finally:
        ctx.finished = True
        if watcher is not None:
            watcher.cancel()
            watch.stop()
        _finish(ctx)


def _ensure_usage(doc: dict[str, msgspec.Raw]) -> bool:
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


WATCH_AFTER_S = 0.2


class _Watch:
    __slots__ = ("receive", "ctx", "task", "watcher")

    def __init__(self, receive: Any, ctx: _Ctx, task: asyncio.Task[Any] | None):
        self.receive, self.ctx, self.task = receive, ctx, task
        self.watcher: asyncio.Task[None] | None = None

    def start(self) -> None:
        if not self.ctx.finished:
            self.watcher = asyncio.get_running_loop().create_task(
                _watch_disconnect(self.receive, self.ctx, self.task))

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()


async def _watch_disconnect(receive: Any, ctx: _Ctx, task: asyncio.Task[Any] | None) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            if not ctx.finished and task is not None:
                ctx.closed = True
                task.cancel()
            return


async def _send_error(send: Any, ctx: _Ctx, comp: Compiled, status: int, message: str, code: str,
                      param: str | None = None, extra: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    if ctx.finished or ctx.closed:
        return
    _finish(ctx)
    if ctx.ttft is not None:  # a stream already started: end it with an SSE error event
        payload = b"data: " + error_body(status, message, code) + b"\n\n"
        await send({"type": "http.response.body", "body": payload, "more_body": False})
        return
    body = error_body(status, message, code, param=param)
    headers = [_JSON_CT, (b"content-length", str(len(body)).encode()), *extra, *_ctx_headers(ctx)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _ctx_headers(ctx: _Ctx) -> list[tuple[bytes, bytes]]:
    out = []
    if ctx.route is not None:
        out.append((b"x-abgate-route", ctx.route.encode()))
    if ctx.arm is not None:
        out.append((b"x-abgate-arm", ctx.arm.encode()))
    if ctx.config_version is not None:
        out.append((b"x-abgate-config-version", str(ctx.config_version).encode()))
    if ctx.interaction_id is not None:
        out.append((b"x-abgate-interaction-id", ctx.interaction_id.encode()))
    return out


async def _forward(rt: Runtime, ctx: _Ctx, doc: dict[str, msgspec.Raw], target: ArmTarget, stream: bool,
                   injected: bool, send: Any) -> None:
    up = target.upstream
    ctx.model = target.model
    if ctx.fallback_from is not None:  # headers name the assigned arm and the model that answered
        target = _as_fallback(ctx, target)
    ctx.price = target.price
    if not up.breaker.allow():
        raise _UpstreamFailure("upstream_error", 502, "circuit_open",
                               f"upstream {up.name!r} is failing; circuit open, not retried")
    doc["model"] = target.model_raw
    doc = await prepare_variant(ctx, doc, target.variant)  # arm overrides (gateway.variants)
    body = _enc.encode(doc)
    t = perf()
    resp: aiohttp.ClientResponse | None = None
    try:
        resp = await up.session.post(  # type: ignore[union-attr]
            up.chat_url, data=body, headers=up.headers, timeout=up.stream_timeout if stream else up.timeout)
        if resp.status >= 500:
            text = up.scrub(await resp.read())
            raise _UpstreamFailure("upstream_error", 502, f"http_{resp.status}",
                                   f"upstream {up.name!r} answered {resp.status}: {text[:300].decode('utf-8', 'replace')}")
        if resp.status >= 400:  # the client's problem (or a model the upstream lacks): pass through
            data = up.scrub(await resp.read())
            ctx.waited += perf() - t
            up.breaker.success()
            ctx.status, ctx.http_status = "upstream_error", resp.status
            ctx.error = f"upstream {resp.status}: {data[:300].decode('utf-8', 'replace')}"
            headers = [(b"content-type", resp.headers.get("content-type", "application/json").encode()),
                       (b"content-length", str(len(data)).encode()), *target.headers,
                       (b"x-abgate-interaction-id", ctx.interaction_id.encode())]  # type: ignore[union-attr]
            ctx.finished = True
            _finish(ctx)
            await send({"type": "http.response.start", "status": resp.status, "headers": headers})
            await send({"type": "http.response.body", "body": data})
            return
        if stream and resp.content_type == "text/event-stream":
            ctx.waited += perf() - t
            await _relay_stream(rt, ctx, resp, target, injected, send)
        else:
            data = await resp.read()
            ctx.waited += perf() - t
            await _relay_json(ctx, data, target, send)
        up.breaker.success()
    except _UpstreamFailure:
        up.breaker.failure()
        if resp is not None:
            resp.close()
        ctx.waited += perf() - t
        raise
    except TimeoutError:
        up.breaker.failure()
        if resp is not None:
            resp.close()
        ctx.waited += perf() - t
        if ctx.ttft is not None:  # mid-stream: nothing to fall back to
            ctx.status, ctx.http_status, ctx.error = "timeout", 504, "upstream stalled mid-stream"
            await _send_error(send, ctx, None, 504, f"upstream {up.name!r} stalled mid-stream", "upstream_timeout")  # type: ignore[arg-type]
            ctx.finished = True
            return
        raise _UpstreamFailure("timeout", 504, "timeout", f"upstream {up.name!r} timed out") from None
    except aiohttp.ClientError as err:
        up.breaker.failure()
        if resp is not None:
            resp.close()
        ctx.waited += perf() - t
        if ctx.ttft is not None:
            ctx.status, ctx.http_status, ctx.error = "upstream_error", 502, f"upstream connection lost: {type(err).__name__}"
            await _send_error(send, ctx, None, 502, f"upstream {up.name!r} connection lost mid-stream", "upstream_error")  # type: ignore[arg-type]
            ctx.finished = True
            return
        raise _UpstreamFailure("upstream_error", 502, "connection",
                               f"cannot reach upstream {up.name!r}: {type(err).__name__}") from None
    except BaseException:
        if resp is not None:
            resp.close()  # client left / shutdown: drop the upstream connection so it stops generating
        raise
    else:
        resp.release()


def _as_fallback(ctx: _Ctx, target: ArmTarget) -> ArmTarget:
    from dataclasses import replace

    hdrs = tuple(h for h in target.headers if h[0] != b"x-abgate-arm")
    return replace(target, headers=(*hdrs, (b"x-abgate-arm", (ctx.arm or "").encode()),
                                    (b"x-abgate-fallback-from", (ctx.fallback_from or "").encode())))


async def _relay_json(ctx: _Ctx, data: bytes, target: ArmTarget, send: Any) -> None:
    try:
        doc = _raw_dict.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise _UpstreamFailure("upstream_error", 502, "invalid_response", "upstream returned invalid JSON") from None
    token = ctx.interaction_id
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
            ch = choices[0]
            ctx.finish_reason = ch.finish_reason
            if ch.message is not None and isinstance(ch.message.content, str):
                ctx.response = ch.message.content
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # odd but valid JSON: pass it on, the event just lacks those fields
    body = _enc.encode(out)
    ctx.status, ctx.http_status = "ok", 200
    headers = [_JSON_CT, (b"content-length", str(len(body)).encode()), *target.headers,
               (b"x-abgate-interaction-id", token.encode())]  # type: ignore[union-attr]
    ctx.finished = True
    _finish(ctx)  # metrics and event before the client sees the answer: counts never lag behind
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _relay_stream(rt: Runtime, ctx: _Ctx, resp: aiohttp.ClientResponse, target: ArmTarget, injected: bool,
                        send: Any) -> None:
    token = ctx.interaction_id
    id_raw = msgspec.Raw(_enc.encode(token))
    headers = [*_SSE_HEADERS, *target.headers, (b"x-abgate-interaction-id", token.encode())]  # type: ignore[union-attr]
    started = False
    buf = b""
    content = resp.content
    while True:
        t = perf()
        chunk = await content.readany()
        ctx.waited += perf() - t
        if not chunk:
            break
        buf += chunk
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n")
        if b"\n\n" not in buf:
            continue
        *events, buf = buf.split(b"\n\n")
        out = []
        for event in events:
            rewritten = _rewrite_event(ctx, event, id_raw, injected)
            if rewritten is not None:
                out.append(rewritten)
        if not out:
            continue
        payload = b"\n\n".join(out) + b"\n\n"
        t = perf()
        if not started:
            started = True
            await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": payload, "more_body": True})
        if ctx.ttft is None:
            ctx.ttft = perf() - ctx.t0
        ctx.waited += perf() - t
    if buf.strip():
        rewritten = _rewrite_event(ctx, buf, id_raw, injected)
        if rewritten is not None:
            if not started:
                started = True
                await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": rewritten + b"\n\n", "more_body": True})
    if not started:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
    ctx.status, ctx.http_status = "ok", 200
    if ctx.parts:
        ctx.response = "".join(ctx.parts)
    ctx.finished = True
    _finish(ctx)
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _rewrite_event(ctx: _Ctx, event: bytes, id_raw: msgspec.Raw, injected: bool) -> bytes | None:
    """One SSE event with its `id` replaced; None to drop it (the usage chunk we asked for)."""
    if not event.startswith(b"data:"):
        return event
    payload = event[5:].strip()
    if payload == b"[DONE]" or not payload.startswith(b"{"):
        return event
    try:
        doc = _raw_dict.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return event  # not ours to judge: pass it on untouched
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
        ch = choices[0]
        if ch.delta is not None and isinstance(ch.delta.content, str):
            ctx.parts.append(ch.delta.content)
        if ch.finish_reason is not None:
            ctx.finish_reason = ch.finish_reason
    if injected:
        if u is not None and not choices and c is not None:
            return None  # the usage-only chunk the client did not ask for
        doc.pop("usage", None)
    if "id" in doc:
        doc["id"] = id_raw
    return b"data: " + _enc.encode(doc)


def _finish(ctx: _Ctx) -> None:
    if not ctx.recorded:
        ctx.recorded = True
        _record(ctx.rt, ctx, ctx.comp)


def _record(rt: Runtime, ctx: _Ctx, comp: Compiled) -> None:
    """Emit the request's one Interaction event and its metrics; never raises."""
    try:
        total = perf() - ctx.t0
        if ctx.stream and ctx.completion_tokens is None and ctx.status == "ok":
            from gateway.tokens import count_completion, count_prompt

            ctx.completion_tokens = count_completion(ctx.response or "")
            ctx.prompt_tokens = count_prompt(ctx.messages)
        cost = None
        if ctx.prompt_tokens is not None or ctx.completion_tokens is not None:
            pin, pout = ctx.price
            cost = ((ctx.prompt_tokens or 0) * pin + (ctx.completion_tokens or 0) * pout) / 1e6
        overhead = max(0.0, total - ctx.waited)
        messages, response = capture(ctx.capture, ctx.messages, ctx.response)
        event = ev.Interaction(
            event_id=urandom(16).hex(), ts=ev.now_rfc3339(), tenant=ctx.tenant, route=ctx.route,
            experiment=ctx.experiment, arm=ctx.arm, phase=ctx.phase, config_version=ctx.config_version,
            interaction_id=ctx.interaction_id, unit=ctx.unit, traffic=ctx.traffic,  # type: ignore[arg-type]
            model=ctx.model, stream=ctx.stream, status=ctx.status,  # type: ignore[arg-type]
            http_status=ctx.http_status, latency_ms=round(total * 1000, 3),
            ttft_ms=round(ctx.ttft * 1000, 3) if ctx.ttft is not None else None,
            overhead_ms=round(overhead * 1000, 4), prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens, cost_usd=cost, fallback_from=ctx.fallback_from,
            messages=messages, response=response, finish_reason=ctx.finish_reason, error=ctx.error,
            variant=ctx.variant, fewshot=ctx.fewshot)
        rt.sink.emit(event)
        rt.metrics.observe_request(
            ctx.route or "", ctx.arm or "", ctx.model or "", ctx.status, total, ctx.ttft, overhead,
            ctx.prompt_tokens, ctx.completion_tokens, cost)
    except Exception:
        log.exception("record_failed", interaction_id=ctx.interaction_id)
