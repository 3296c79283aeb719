"""`/admin/config*` and `/admin/promote`: the versioned router config over HTTP.

Every change is a new store version (compare-and-set on `expected_version`) and a
ConfigChange audit event; the worker that made it serves it at once, others within
the reload interval.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec
import yaml
from litestar import MediaType, Request, Response, get, post, put

from gateway import config as cfgmod
from gateway import config_store as cs
from gateway import jsonsafe
from gateway import routing
from gateway.errors import ApiError
from gateway.runtime import Runtime

_enc = msgspec.json.Encoder()


def _rt(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    rt.compiled.auth.check_admin(request.headers.get("authorization"))
    return rt


def _json(obj: Any, status: int = 200) -> Response[bytes]:
    return Response(_enc.encode(obj), status_code=status, media_type=MediaType.JSON)


def _version_doc(v: cs.ConfigVersion, with_config: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {"version": v.version, "created_at": v.created_at, "author": v.author, "reason": v.reason,
                         "decision_id": v.decision_id, "action": v.action}
    if with_config:
        d["config"] = cfgmod.to_builtins(v.config)
    return d


async def _body_doc(request: Request[Any, Any, Any]) -> Any:
    raw = await request.body()
    ct = (request.headers.get("content-type") or "").lower()
    # Parsed off the event loop: a large or hostile YAML document must not stall requests.
    return await asyncio.to_thread(_decode_body, raw, ct)


def _decode_body(raw: bytes, ct: str) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"body is not valid UTF-8 (byte {err.start})", "invalid_body") from None
    if not text.strip():
        return {}
    try:
        if "json" in ct:
            jsonsafe.check_depth(raw)
            return json.loads(text)
        if jsonsafe.yaml_depth_exceeds(text):
            raise jsonsafe.too_deep()
        return yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ApiError(400, f"invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}", "invalid_body") from None
    except yaml.YAMLError as err:
        raise ApiError(400, cfgmod.yaml_error_message(err), "invalid_body") from None
    except RecursionError:
        raise jsonsafe.too_deep() from None


async def _body_object(request: Request[Any, Any, Any]) -> dict[str, Any]:
    doc = await _body_doc(request)
    if not isinstance(doc, dict):
        raise ApiError(400, "body must be a JSON object", "invalid_body")
    return doc


def _int_param(value: Any, name: str, required: bool) -> int | None:
    if value is None or value == "":
        if required:
            raise ApiError(400, f"`{name}` is required (compare-and-set on the config version)", "missing_parameter",
                           param=name)
        return None
    if isinstance(value, bool):
        raise ApiError(400, f"`{name}` must be an integer", "invalid_parameter", param=name)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(400, f"`{name}` must be an integer, got {value!r}", "invalid_parameter", param=name) from None


async def _put(rt: Runtime, cfg: cfgmod.RouterConfig, **kw: Any) -> Response[bytes]:
    try:
        new = await rt.put_config(cfg, **kw)
    except cs.VersionConflict as err:
        raise ApiError(409, str(err), "version_conflict", param="expected_version") from None
    except cfgmod.ConfigError as err:
        raise ApiError(400, f"invalid config: {err}", "invalid_config", param=err.field or None) from None
    return _json(_version_doc(new, with_config=False))


@get("/admin/config", sync_to_thread=False)
def get_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = _rt(request)
    return _json(_version_doc(rt.compiled.cv))


@put("/admin/config")
async def put_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Body: the new config (YAML, or JSON with a JSON content type). Query: expected_version
    (required), reason, author."""
    rt = _rt(request)
    q = request.query_params
    expected = _int_param(q.get("expected_version"), "expected_version", required=True)
    raw = await _body_doc(request)
    try:
        cfg = cfgmod.validate(raw)
    except cfgmod.ConfigError as err:
        raise ApiError(400, f"invalid config: {err}", "invalid_config", param=err.field or None) from None
    return await _put(rt, cfg, expected_version=expected, author=q.get("author") or "admin-api",
                      reason=q.get("reason") or "set through /admin/config", action="set")


@get("/admin/config/history", sync_to_thread=True)
def history(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = _rt(request)
    return _json({"object": "list", "data": [_version_doc(v, with_config=False) for v in rt.store.history()]})


@post("/admin/config/rollback")
async def rollback(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Body: {to_version, reason?, author?, decision_id?, expected_version?}."""
    rt = _rt(request)
    doc = await _body_object(request)
    to = _int_param(doc.get("to_version"), "to_version", required=True)
    cur = rt.compiled.version
    expected = _int_param(doc.get("expected_version"), "expected_version", required=False) or cur
    try:
        target = rt.store.get(to)
    except cs.UnknownVersion:
        raise ApiError(404, f"no config version {to}", "unknown_version", param="to_version") from None
    return await _put(rt, target.config, expected_version=expected, author=str(doc.get("author") or "admin-api"),
                      reason=str(doc.get("reason") or f"rollback to version {to}"),
                      decision_id=doc.get("decision_id"), action="rollback")


def promoted_weights(route: cfgmod.Route, arm: str, weight: float) -> dict[str, float]:
    """`arm` gets `weight`; the rest as `gateway.routing.promoted_weights` shares it."""
    names = [a.name for a in route.arms]
    if arm not in names:
        raise ApiError(400, f"route has no arm {arm!r}", "unknown_arm", param="arm")
    try:
        weights = routing.promoted_weights([a.weight for a in route.arms], names.index(arm), weight)
    except ValueError as e:
        raise ApiError(400, str(e), "invalid_parameter", param="weight") from None
    return dict(zip(names, weights, strict=True))


@post("/admin/promote")
async def promote(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Body: {route, decision_id, arm, weight? (default 1)} or {route, decision_id, weights: {arm: w}}."""
    rt = _rt(request)
    doc = await _body_object(request)
    cfg = rt.compiled.config
    rname = doc.get("route")
    if not isinstance(rname, str) or rname not in cfg.routes:
        raise ApiError(404, f"unknown route {rname!r}", "unknown_route", param="route")
    decision = doc.get("decision_id")
    if not isinstance(decision, str) or not decision:
        raise ApiError(400, "`decision_id` is required: a promotion cites the decision behind it", "missing_parameter",
                       param="decision_id")
    route = cfg.routes[rname]
    if isinstance(doc.get("weights"), dict):
        weights = doc["weights"]
        unknown = set(weights) - {a.name for a in route.arms}
        if unknown:
            raise ApiError(400, f"unknown arm(s) {sorted(unknown)}", "unknown_arm", param="weights")
    elif isinstance(doc.get("arm"), str):
        w = doc.get("weight", 1.0)
        if not isinstance(w, int | float) or isinstance(w, bool):
            raise ApiError(400, "`weight` must be a number", "invalid_parameter", param="weight")
        weights = promoted_weights(route, doc["arm"], float(w))
    else:
        raise ApiError(400, "give `arm` (and optionally `weight`) or `weights`", "missing_parameter", param="arm")
    arms = tuple(msgspec.structs.replace(a, weight=float(weights.get(a.name, 0.0))) for a in route.arms)
    new_cfg = msgspec.structs.replace(cfg, routes={**cfg.routes, rname: msgspec.structs.replace(route, arms=arms)})
    try:
        new_cfg = cfgmod.validate(cfgmod.to_builtins(new_cfg))
    except cfgmod.ConfigError as err:
        raise ApiError(400, f"invalid weights: {err}", "invalid_config", param=err.field or None) from None
    expected = _int_param(doc.get("expected_version"), "expected_version", required=False) or rt.compiled.version
    return await _put(rt, new_cfg, expected_version=expected, author=str(doc.get("author") or "admin-api"),
                      reason=str(doc.get("reason") or f"promote {rname}: {weights}"), decision_id=decision,
                      action="promote")


handlers = [get_config, put_config, history, rollback, promote]
