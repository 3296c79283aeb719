"""`/admin/config*` and `/admin/promote`: the versioned router config over HTTP.

Every change goes through `gateway.config_edits` (one validation, compare-and-set on
`expected_version`, author/reason/decision id, the ConfigChange audit event); the worker
that made it serves it at once, others within the reload interval.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
import yaml
from litestar import MediaType, Request, Response, get, post, put

from gateway import config as cfgmod
from gateway import config_edits as edits
from gateway import config_store as cs
from gateway import jsonsafe
from gateway.errors import ApiError
from gateway.runtime import Compiled, Runtime

_enc = msgspec.json.Encoder()


def _rt(request: Request[Any, Any, Any]) -> Runtime:
    rt: Runtime = request.app.state.runtime
    _served(rt).auth.check_admin(request.headers.get("authorization"))
    return rt


def _served(rt: Runtime) -> Compiled:
    if rt.compiled is None:
        raise ApiError(503, "no config loaded yet", "not_ready")
    return rt.compiled


def _json(obj: Any, status: int = 200) -> Response[bytes]:
    return Response(_enc.encode(obj), status_code=status, media_type=MediaType.JSON)


def _version_doc(v: cs.ConfigVersion, with_config: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {"version": v.version, "created_at": v.created_at, "author": v.author, "reason": v.reason,
                         "decision_id": v.decision_id, "action": v.action,
                         "managed": msgspec.to_builtins(v.managed), "file_sha256": v.file_sha256}
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


_STATUS = {"unknown_route": 404, "unknown_version": 404, "traffic_conflict": 409}


async def _edit(rt: Runtime, fn: Callable[[edits.ConfigEditor], cs.ConfigVersion]) -> Response[bytes]:
    """Run one config edit; map its errors to OpenAI-shaped answers (nothing is written on error)."""
    try:
        new = await rt.edit(fn)
    except cs.VersionConflict as err:
        raise ApiError(409, str(err), "version_conflict", param="expected_version") from None
    except edits.EditError as err:
        raise ApiError(_STATUS.get(err.code, 400), err.message, err.code, param=err.field or None) from None
    except cfgmod.ConfigError as err:
        raise ApiError(400, f"invalid config: {err}", "invalid_config", param=err.field or None) from None
    return _json(_version_doc(new, with_config=False))


def _change(doc: Mapping[str, Any], default_reason: str = "") -> edits.Change:
    decision = doc.get("decision_id")
    return edits.Change(author=str(doc.get("author") or "admin-api"), reason=str(doc.get("reason") or default_reason),
                        decision_id=decision if isinstance(decision, str) and decision else None)


@get("/admin/config", sync_to_thread=False)
def get_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    rt = _rt(request)
    return _json(_version_doc(_served(rt).cv))


@put("/admin/config")
async def put_config(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Body: the new config (YAML, or JSON with a JSON content type). Query: expected_version
    (required), reason, author, reset_traffic (default false: managed routes keep their
    weights and coverage; an edit that cannot keep them is refused with 409)."""
    rt = _rt(request)
    q = request.query_params
    expected = _int_param(q.get("expected_version"), "expected_version", required=True)
    reset = (q.get("reset_traffic") or "false").lower()
    if reset not in ("true", "false", "1", "0"):
        raise ApiError(400, "`reset_traffic` must be true or false", "invalid_parameter", param="reset_traffic")
    raw = await _body_doc(request)
    try:
        cfg = cfgmod.validate(raw)
    except cfgmod.ConfigError as err:
        raise ApiError(400, f"invalid config: {err}", "invalid_config", param=err.field or None) from None
    change = edits.Change(author=q.get("author") or "admin-api", reason=q.get("reason") or "set through /admin/config")

    def apply(ed: edits.ConfigEditor) -> cs.ConfigVersion:
        return ed.apply_authored(cfg, change=change, expected_version=expected,
                                 reset_traffic=reset in ("true", "1")).current

    return await _edit(rt, apply)


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
    assert to is not None
    expected = _int_param(doc.get("expected_version"), "expected_version", required=False) or _served(rt).version
    change = _change(doc)
    return await _edit(rt, lambda ed: ed.rollback_to(to, change=change, expected_version=expected))


@post("/admin/promote")
async def promote(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Body: {route, decision_id, arm, weight? (default 1)} or {route, decision_id, weights: {arm: w}}."""
    rt = _rt(request)
    doc = await _body_object(request)
    rname = doc.get("route")
    if not isinstance(rname, str) or rname not in _served(rt).config.routes:
        raise ApiError(404, f"unknown route {rname!r}", "unknown_route", param="route")
    decision = doc.get("decision_id")
    if not isinstance(decision, str) or not decision:
        raise ApiError(400, "`decision_id` is required: a promotion cites the decision behind it", "missing_parameter",
                       param="decision_id")
    expected = _int_param(doc.get("expected_version"), "expected_version", required=False) or _served(rt).version
    weights = doc.get("weights")
    if isinstance(weights, dict):
        change = _change(doc, f"promote {rname}: {weights}")
        return await _edit(rt, lambda ed: ed.set_weights(rname, weights, change=change, action="promote",
                                                          expected_version=expected))
    arm = doc.get("arm")
    if not isinstance(arm, str):
        raise ApiError(400, "give `arm` (and optionally `weight`) or `weights`", "missing_parameter", param="arm")
    w = doc.get("weight", 1.0)
    if not isinstance(w, int | float) or isinstance(w, bool):
        raise ApiError(400, "`weight` must be a number", "invalid_parameter", param="weight")
    change = _change(doc)
    return await _edit(rt, lambda ed: ed.promote(rname, arm, float(w), change=change, expected_version=expected))


handlers = [get_config, put_config, history, rollback, promote]
