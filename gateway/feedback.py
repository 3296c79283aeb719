"""`POST /v1/feedback`: attach a feedback signal to an interaction id.

Body: `{interaction_id, metric, value, idempotency_key?, source?, ...extra}`. The id is
verified with the deployment's signing keys (it carries its own attribution, so
feedback works days later and after restarts with no lookup). Every refusal is an
OpenAI-shaped 4xx naming the field; nothing is emitted unless the whole body is valid.

Idempotency on (interaction_id, metric, idempotency_key): the event id is derived from
the triple (`events.feedback_event_id`) and claimed in `gateway.idempotency` (an
in-process LRU in front of SQLite under the state dir in embedded mode, shared by the
workers and kept across restarts, or Redis `SET NX` in Redis mode, 7-day TTL). A retry
answers 200 `{"status": "duplicate"}` and writes nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response, post

from gateway import events as ev
from gateway import jsonsafe
from gateway import metric_catalog as catalog
from gateway.auth import AuthIndex, Principal, bearer, single_authorization
from gateway.config import CustomMetric
from gateway.errors import ApiError, error_body
from gateway.idempotency import Deduper, open_deduper
from gateway.ids import InteractionRef, InvalidInteractionId

log = structlog.get_logger("abgate.feedback")

MAX_BODY_BYTES = 256 * 1024
MAX_KEY_LEN = 256
MAX_TEXT_LEN = 100_000

BUILTIN_METRICS = catalog.BUILTIN_FEEDBACK
SOURCES = ("user", "reviewer", "system")
REVIEW_SCORES = catalog.REVIEW_SCORES
_RESERVED = {"interaction_id", "metric", "value", "idempotency_key", "source"}
_JSON_CT = "application/json"


@dataclass(frozen=True, slots=True)
class ParsedFeedback:
    interaction_id: str
    metric: str
    value: Any
    idempotency_key: str | None
    source: str
    extra: dict[str, Any] | None


def _bad(message: str, param: str, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code, param=param)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int_range(v: Any, lo: int, hi: int, param: str) -> int:
    if not _is_int(v) or not lo <= v <= hi:
        raise _bad(f"`{param}` must be an integer from {lo} to {hi}, got {_show(v)}", param)
    return int(v)


def _show(v: Any) -> str:
    text = msgspec.json.encode(v).decode(errors="replace") if not isinstance(v, str) else repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _text(v: Any, param: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise _bad(f"`{param}` must be a non-empty string", param)
    if len(v) > MAX_TEXT_LEN:
        raise _bad(f"`{param}` is longer than {MAX_TEXT_LEN} characters", param)
    return v


def _bool(v: Any, param: str) -> bool:
    if not isinstance(v, bool):
        raise _bad(f"`{param}` must be true or false, got {_show(v)}", param)
    return v


def _review(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _bad("`value` for metric `review` must be an object with "
                   + ", ".join(REVIEW_SCORES) + " (1-5)", "value")
    out: dict[str, Any] = {}
    for name in REVIEW_SCORES:
        if name not in v:
            raise _bad(f"`value.{name}` is required for a review (integer 1-5)", f"value.{name}")
        out[name] = _int_range(v[name], 1, 5, f"value.{name}")
    if v.get("quality") is not None:
        out["quality"] = _int_range(v["quality"], 1, 10, "value.quality")
    for name in ("category", "reviewer", "comment"):
        if v.get(name) is not None:
            out[name] = _text(v[name], f"value.{name}")
    unknown = sorted(set(v) - set(out) - {"quality", "category", "reviewer", "comment"})
    if unknown:
        raise _bad(f"`value.{unknown[0]}` is not a review field (allowed: "
                   + ", ".join((*REVIEW_SCORES, "quality", "category", "reviewer", "comment")) + ")",
                   f"value.{unknown[0]}")
    return out


def validate_value(metric: str, value: Any, custom: Mapping[str, CustomMetric]) -> Any:
    """The normalized value for `metric`, or an ApiError(400) naming what is wrong.
    Built-in metrics take the values `gateway.metric_catalog` gives them."""
    kind = catalog.CATALOG[metric].value_type if metric in BUILTIN_METRICS else None
    if kind == "thumbs":
        if not _is_int(value) or value not in catalog.THUMBS_VALUES:
            raise _bad(f"`value` for metric `thumbs` must be 1 or -1, got {_show(value)}", "value")
        return value
    if kind == "text":
        return _text(value, "value")
    if kind == "boolean":
        return _bool(value, "value")
    if kind == "score":
        return _int_range(value, 1, 5, "value")
    if kind == "review":
        return _review(value)
    spec = custom.get(metric)
    if spec is None:
        known = ", ".join((*BUILTIN_METRICS, *sorted(custom)))
        raise _bad(f"unknown metric `{metric[:100]}`; known metrics: {known}", "metric", "unknown_metric")
    if spec.type == "boolean":
        return _bool(value, "value")
    if not _is_number(value):
        raise _bad(f"`value` for metric `{metric}` must be a finite number, got {_show(value)}", "value")
    if spec.min is not None and value < spec.min:
        raise _bad(f"`value` for metric `{metric}` must be >= {spec.min:g}, got {value!r}", "value")
    if spec.max is not None and value > spec.max:
        raise _bad(f"`value` for metric `{metric}` must be <= {spec.max:g}, got {value!r}", "value")
    return value


def parse_feedback(body: bytes, custom: Mapping[str, CustomMetric]) -> ParsedFeedback:
    """Decode and validate a feedback body (everything except the id's signature)."""
    try:
        doc = jsonsafe.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", "invalid_json") from None
    if not isinstance(doc, dict):
        raise ApiError(400, "request body must be a JSON object", "invalid_request")
    iid = doc.get("interaction_id")
    if not isinstance(iid, str) or not iid:
        raise _bad("`interaction_id` is required (the `id` of the chat completion)", "interaction_id",
                   "invalid_interaction_id")
    metric = doc.get("metric")
    if not isinstance(metric, str) or not metric:
        raise _bad("`metric` is required and must be a string", "metric", "invalid_metric")
    if "value" not in doc:
        raise _bad("`value` is required", "value")
    value = validate_value(metric, doc["value"], custom)
    key = doc.get("idempotency_key")
    if key is not None and (not isinstance(key, str) or not key or len(key) > MAX_KEY_LEN):
        raise _bad(f"`idempotency_key` must be a non-empty string of at most {MAX_KEY_LEN} characters",
                   "idempotency_key")
    source = doc.get("source", "reviewer" if metric == "review" else "user")
    if source not in SOURCES:
        raise _bad(f"`source` must be one of {', '.join(SOURCES)}, got {_show(source)}", "source")
    extra = {k: v for k, v in doc.items() if k not in _RESERVED} or None
    return ParsedFeedback(iid, metric, value, key, source, extra)


def _deduper(request: Request[Any, Any, Any], rt: Any) -> Deduper:
    # Lives on app.state: created once per app (lifespan-scoped, closed by the app), not a module global.
    d = getattr(request.app.state, "feedback_deduper", None)
    if d is None:
        d = open_deduper(rt.settings.state_dir, rt.settings.redis_url)
        request.app.state.feedback_deduper = d
    return d


def _auth(request: Request[Any, Any, Any], rt: Any) -> AuthIndex:
    comp = getattr(rt, "compiled", None)
    auth = getattr(comp, "auth", None)
    if isinstance(auth, AuthIndex):
        return auth
    cached = getattr(request.app.state, "feedback_auth", None)
    version = rt.config.version
    if cached is None or cached[0] != version:
        cached = (version, AuthIndex.from_config(rt.config.config))
        request.app.state.feedback_auth = cached
    return cached[1]


def _verify(rt: Any, iid: str, principal: Principal, admin: bool) -> InteractionRef:
    try:
        ref: InteractionRef = rt.signer.verify(iid)
    except InvalidInteractionId as exc:
        raise _bad(f"invalid interaction_id: {exc}", "interaction_id", "invalid_interaction_id") from None
    if ref.tenant != principal.tenant and not admin:
        # Same answer as "no such interaction": do not confirm another tenant's ids exist.
        raise ApiError(404, "interaction not found for this API key", "interaction_not_found",
                       param="interaction_id")
    return ref


def _json(status: int, payload: dict[str, Any]) -> Response[bytes]:
    return Response(content=msgspec.json.encode(payload), status_code=status, media_type=_JSON_CT)


def _error(exc: ApiError) -> Response[bytes]:
    headers = {k.decode(): v.decode() for k, v in exc.headers}
    return Response(content=error_body(exc.status, exc.message, exc.code, param=exc.param),
                    status_code=exc.status, media_type=_JSON_CT, headers=headers)


async def handle(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = request.app.state.runtime
    try:
        ct = request.headers.get("content-type")
        if ct is not None and not ct.lower().startswith(_JSON_CT):
            raise ApiError(400, f"content-type must be application/json, got {ct!r}", "invalid_content_type")
        authz = single_authorization(request.scope["headers"])
        auth = _auth(request, rt)
        principal = auth.client(authz)
        admin = principal.admin or auth.is_admin_token(bearer(authz))
        body = await _read_limited(request)
        fb = parse_feedback(body, rt.config.config.metrics)
        ref = _verify(rt, fb.interaction_id, principal, admin)
        event_id = ev.feedback_event_id(fb.interaction_id, fb.metric, fb.idempotency_key)
        dedupe = _deduper(request, rt)
        if fb.idempotency_key is not None and not await dedupe.claim(event_id):
            return _json(200, {"status": "duplicate", "event_id": event_id})
        event = ev.Feedback(
            event_id=event_id, ts=ev.now_rfc3339(), tenant=ref.tenant, route=ref.route,
            experiment=ref.experiment, arm=ref.arm, phase=ref.phase, config_version=ref.config_version,
            interaction_id=fb.interaction_id, metric=fb.metric, value=fb.value,
            idempotency_key=fb.idempotency_key, source=fb.source,  # type: ignore[arg-type]
            traffic=ref.traffic if ref.traffic in ("live", "eval") else "live",  # type: ignore[arg-type]
            extra=fb.extra)
        if not rt.sink.emit(event):
            if fb.idempotency_key is not None:
                await dedupe.release(event_id)
            raise ApiError(503, "feedback queue is full; retry later", "queue_full",
                           headers=((b"retry-after", b"1"),))
        try:
            rt.metrics.feedback(ref.route, ref.arm, fb.metric, fb.value)
        except Exception:  # metrics must never fail a recorded feedback
            log.exception("feedback_metric_failed")
        return _json(200, {"status": "recorded", "event_id": event_id})
    except ApiError as exc:
        return _error(exc)


async def _read_limited(request: Request[Any, Any, Any]) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError(413, f"feedback body is larger than {MAX_BODY_BYTES} bytes", "body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)


@post("/v1/feedback", status_code=200, include_in_schema=True)
async def feedback_handler(request: Request[Any, Any, Any]) -> Response[bytes]:
    return await handle(request)


route_handlers = [feedback_handler]
