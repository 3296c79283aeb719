"""The gateway's OpenAPI 3.1 document, written by hand where Litestar cannot see the truth.

The gateway's handlers answer pre-encoded JSON (`Response[bytes]`) and the chat proxy is a
raw ASGI route, so Litestar's generated schema says "string" and misses request bodies,
error statuses and auth. `document(generated)` takes Litestar's document (which still
describes routes added by other packages, e.g. the training admin API), replaces the
gateway's own paths with the descriptions below, adds the security schemes and the
error statuses every route can answer (OpenAI error shape), and is what
`/schema/openapi.json` serves and `docs/openapi.json` holds.
"""

from __future__ import annotations

import copy
from typing import Any

from gateway.proxy.openapi import PROXY_PATHS

JSON = "application/json"
Doc = dict[str, Any]


def _ref(name: str) -> Doc:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: Doc, description: str, headers: Doc | None = None) -> Doc:
    out: Doc = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


def _err(description: str, headers: Doc | None = None) -> Doc:
    return _json(_ref("Error"), description, headers)


_RETRY_AFTER = {"retry-after": {"description": "seconds to wait before retrying", "schema": {"type": "string"}}}
_ALLOW = {"allow": {"description": "the methods this path accepts", "required": True, "schema": {"type": "string"}}}
_OPT_STR = {"type": ["string", "null"]}

# What any route can answer before its handler runs (server and framework level).
_COMMON_ERRORS: Doc = {
    "400": _err("invalid request: bad JSON, nesting deeper than 64 levels, two Authorization headers"),
    "405": _err("method not allowed", _ALLOW),
    "408": _err("request headers or body not received in time"),
    "413": _err("request body too large"),
    "431": _err("request headers too large"),
}

SCHEMAS: Doc = {
    "Error": {
        "type": "object", "required": ["error"],
        "properties": {"error": {
            "type": "object", "required": ["message", "type", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"}, "code": _OPT_STR,
                           "param": _OPT_STR}}},
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Ready": {
        "type": "object", "required": ["status", "checks", "config_version"],
        "properties": {
            "status": {"enum": ["ready", "not_ready"]},
            "checks": {"type": "object", "required": ["config_loaded", "sink_writable"],
                       "properties": {"config_loaded": {"type": "boolean"}, "sink_writable": {"type": "boolean"}}},
            "config_version": {"type": ["integer", "null"]},
        },
    },
    "Model": {
        "type": "object", "required": ["id", "object", "created", "owned_by"],
        "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "created": {"type": "integer"},
                       "owned_by": {"type": "string"}},
    },
    "ModelList": {"type": "object", "required": ["object", "data"],
                  "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": _ref("Model")}}},
    "ChatCompletionRequest": {
        "type": "object", "required": ["model", "messages"], "additionalProperties": True,
        "properties": {
            "model": {"type": "string", "description": "a route name"},
            "messages": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["role"], "additionalProperties": True,
                "properties": {"role": {"type": "string"}, "content": {}}}},
            "stream": {"type": "boolean"}, "user": {"type": "string"},
        },
    },
    "ChatCompletion": {
        "type": "object", "required": ["id", "object", "choices"], "additionalProperties": True,
        "properties": {"id": {"type": "string", "description": "the signed interaction id"},
                       "object": {"const": "chat.completion"}, "model": {"type": "string"},
                       "choices": {"type": "array", "items": {"type": "object"}},
                       "usage": {"type": ["object", "null"]}},
    },
    "FeedbackRequest": {
        "type": "object", "required": ["interaction_id", "metric", "value"], "additionalProperties": True,
        "properties": {
            "interaction_id": {"type": "string", "minLength": 1, "description": "the `id` of the chat completion"},
            "metric": {"type": "string", "minLength": 1,
                       "description": "thumbs | edited_response | followup | csat | approved | policy_violation "
                                      "| review | a custom metric of the config"},
            "value": {"description": "thumbs: 1 | -1; csat: 1-5; followup/approved/policy_violation: boolean; "
                                     "edited_response: text; review: {factuality, helpfulness, tone, policy, "
                                     "completeness, overall: 1-5, quality?: 1-10, category?, reviewer?}"},
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 256},
            "source": {"enum": ["user", "reviewer", "system"]},
        },
    },
    "FeedbackResult": {"type": "object", "required": ["status", "event_id"],
                       "properties": {"status": {"enum": ["recorded", "duplicate"]}, "event_id": {"type": "string"}}},
    "ConfigVersion": {
        "type": "object", "required": ["version", "created_at", "author", "reason", "decision_id", "action"],
        "properties": {"version": {"type": "integer"}, "created_at": {"type": "string"},
                       "author": {"type": "string"}, "reason": {"type": "string"}, "decision_id": _OPT_STR,
                       "action": {"type": "string"}, "config": {"type": "object"}},
    },
    "ConfigHistory": {"type": "object", "required": ["object", "data"],
                      "properties": {"object": {"const": "list"}, "data": {"type": "array",
                                                                           "items": _ref("ConfigVersion")}}},
    "RollbackRequest": {
        "type": "object", "required": ["to_version"],
        "properties": {"to_version": {"type": "integer"}, "expected_version": {"type": "integer"},
                       "reason": {"type": "string"}, "author": {"type": "string"}, "decision_id": {"type": "string"}},
    },
    "PromoteRequest": {
        "type": "object", "required": ["route", "decision_id"],
        "properties": {"route": {"type": "string"}, "decision_id": {"type": "string", "minLength": 1},
                       "arm": {"type": "string"}, "weight": {"type": "number", "minimum": 0, "maximum": 1},
                       "weights": {"type": "object", "additionalProperties": {"type": "number"}},
                       "expected_version": {"type": "integer"}, "reason": {"type": "string"},
                       "author": {"type": "string"}},
    },
}

SECURITY_SCHEMES: Doc = {
    "apiKey": {"type": "http", "scheme": "bearer",
               "description": "a client API key (`auth.keys` holds its sha256); absent in open dev mode"},
    "adminToken": {"type": "http", "scheme": "bearer",
                   "description": "the admin token (environment variable `auth.admin_token_env`)"},
    "metricsToken": {"type": "http", "scheme": "bearer",
                     "description": "`ABGATE_METRICS_TOKEN`, when set; /metrics is open otherwise"},
}

_ABGATE_HEADERS = {
    name: {"description": desc, "schema": {"type": "string"}}
    for name, desc in (("x-abgate-route", "the route"), ("x-abgate-arm", "the arm chosen"),
                       ("x-abgate-model", "the model asked upstream"),
                       ("x-abgate-config-version", "the config version that routed it"),
                       ("x-abgate-interaction-id", "the signed interaction id (also the body's `id`)"))
}
_CLIENT: list[dict[str, list[str]]] = [{"apiKey": []}]
_ADMIN: list[dict[str, list[str]]] = [{"adminToken": []}]


def _op(op_id: str, summary: str, responses: Doc, *, security: list[Doc] | None = None,
        body: Doc | None = None, params: list[Doc] | None = None, tags: tuple[str, ...] = ()) -> Doc:
    op: Doc = {"operationId": op_id, "summary": summary, "responses": responses}
    if security is not None:
        op["security"] = security
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    if tags:
        op["tags"] = list(tags)
    return op


def _body(schema: Doc, description: str = "") -> Doc:
    out: Doc = {"required": True, "content": {JSON: {"schema": schema}}}
    if description:
        out["description"] = description
    return out


_ADMIN_ERRORS = {"401": _err("missing or invalid admin token"),
                 "403": _err("admin endpoints disabled: no admin token configured")}

PATHS: Doc = {
    "/v1/chat/completions": {"post": _op(
        "ChatCompletions", "OpenAI-compatible chat completions, A/B-routed",
        {
            "200": {"description": "a chat.completion, or with `stream: true` a text/event-stream of "
                                   "chat.completion.chunk events", "headers": _ABGATE_HEADERS,
                    "content": {JSON: {"schema": _ref("ChatCompletion")},
                                "text/event-stream": {"schema": {"type": "string"}}}},
            "401": _err("missing or unknown API key"),
            "403": _err("pinning an arm needs an admin key"),
            "404": _err("unknown route, or one this key may not use"),
            "429": _err("rate limit of this key exceeded", _RETRY_AFTER),
            "502": _err("upstream error or circuit open"),
            "503": _err("upstream unavailable", _RETRY_AFTER),
            "504": _err("upstream timeout"),
        },
        security=_CLIENT, body=_body(_ref("ChatCompletionRequest"),
                                     "`model` names a route; forwarded byte for byte except `model`"),
        tags=("client",))},
    "/v1/models": {"get": _op("ListModels", "The routes this key may use",
                              {"200": _json(_ref("ModelList"), "the routes as models"),
                               "401": _err("missing or unknown API key")},
                              security=_CLIENT, tags=("client",))},
    "/v1/feedback": {"post": _op(
        "PostFeedback", "Attach feedback to an interaction id (idempotent on idempotency_key)",
        {"200": _json(_ref("FeedbackResult"), "recorded, or a duplicate of an earlier idempotency key"),
         "401": _err("missing or unknown API key"),
         "404": _err("no such interaction for this key's tenant"),
         "503": _err("the event queue is full", _RETRY_AFTER)},
        security=_CLIENT, body=_body(_ref("FeedbackRequest")), tags=("client",))},
    "/healthz": {"get": _op("Healthz", "Liveness", {"200": _json(_ref("Health"), "alive")}, security=[],
                            tags=("operations",))},
    "/readyz": {"get": _op("Readyz", "Readiness: config loaded and event storage writable",
                           {"200": _json(_ref("Ready"), "ready"),
                            "503": _json(_ref("Ready"), "not ready (see checks)")},
                           security=[], tags=("operations",))},
    "/metrics": {"get": _op(
        "Metrics", "Prometheus metrics (every tenant's routes and costs: protect it with ABGATE_METRICS_TOKEN)",
        {"200": {"description": "Prometheus text exposition",
                 "content": {"text/plain": {"schema": {"type": "string"}}}},
         "401": _err("ABGATE_METRICS_TOKEN is set and the request did not send it")},
        security=[{}, {"metricsToken": []}], tags=("operations",))},
    "/admin/config": {
        "get": _op("GetConfig", "The served config version",
                   {"200": _json(_ref("ConfigVersion"), "the current version with its config"), **_ADMIN_ERRORS},
                   security=_ADMIN, tags=("admin",)),
        "put": _op(
            "PutConfig", "Store a new config version (compare-and-set on expected_version)",
            {"200": _json(_ref("ConfigVersion"), "the new version (without its config)"), **_ADMIN_ERRORS,
             "409": _err("expected_version is not the current version")},
            security=_ADMIN,
            params=[{"name": "expected_version", "in": "query", "required": True, "schema": {"type": "integer"}},
                    {"name": "reason", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "author", "in": "query", "required": False, "schema": {"type": "string"}}],
            body={"required": True, "description": "the router config: YAML, or JSON with a JSON content type",
                  "content": {"application/yaml": {"schema": {"type": "string"}},
                              JSON: {"schema": {"type": "object"}}}},
            tags=("admin",)),
    },
    "/admin/config/history": {"get": _op("ConfigHistory", "Every stored config version",
                                         {"200": _json(_ref("ConfigHistory"), "versions, oldest first"),
                                          **_ADMIN_ERRORS}, security=_ADMIN, tags=("admin",))},
    "/admin/config/rollback": {"post": _op(
        "RollbackConfig", "Store an earlier version's config as a new version",
        {"200": _json(_ref("ConfigVersion"), "the new version"), **_ADMIN_ERRORS,
         "404": _err("no such version"), "409": _err("expected_version is not the current version")},
        security=_ADMIN, body=_body(_ref("RollbackRequest")), tags=("admin",))},
    "/admin/promote": {"post": _op(
        "Promote", "Change a route's arm weights, citing the decision behind it",
        {"200": _json(_ref("ConfigVersion"), "the new version"), **_ADMIN_ERRORS,
         "404": _err("unknown route"), "409": _err("expected_version is not the current version")},
        security=_ADMIN, body=_body(_ref("PromoteRequest")), tags=("admin",))},
}
# The other raw-ASGI proxy endpoints (Responses API, embeddings) are described next to their handlers.
PATHS.update(copy.deepcopy(PROXY_PATHS))


# Content types Litestar cannot know for handlers that answer `Response[bytes]`.
_MEDIA_TYPES = {("/admin/export/jsonl", "get"): "application/jsonl"}


def _fix_generated_responses(path: str, op: Doc) -> None:
    """A handler typed `Response[bytes]` is generated as a JSON *string*; what it sends is a
    JSON document of its own shape (or, for a few, another media type)."""
    for code, resp in op["responses"].items():
        content = resp.get("content") if isinstance(resp, dict) else None
        if not content or not code.startswith("2"):
            continue
        for media, spec in list(content.items()):
            if spec.get("schema") == {"type": "string"} and media == JSON:
                spec["schema"] = {"description": "a JSON document (see the handler's description)"}
    for (p, _), media in _MEDIA_TYPES.items():
        if p == path:
            for code, resp in op["responses"].items():
                if code.startswith("2") and "content" in resp:
                    resp["content"] = {media: {"schema": {"type": "string"}}}


def document(generated: Doc, *, title: str = "abgate", version: str = "0.1.0") -> Doc:
    """Litestar's `generated` document with the gateway's paths, schemas and auth put right."""
    doc = copy.deepcopy(generated)
    doc["info"] = {"title": title, "version": version,
                   "description": "A/B routing and online evaluation gateway for OpenAI-compatible LLM apps. "
                                  "Every error uses OpenAI's shape `{\"error\": {message, type, code}}`."}
    paths: Doc = doc.get("paths") or {}
    for p in PATHS:
        paths.pop(p, None)
    for p in [p for p in paths if p.startswith("/schema")]:
        paths.pop(p)
    for path, item in paths.items():  # routes described by their own packages (training admin API)
        for method, op in item.items():
            if not isinstance(op, dict) or method not in ("get", "put", "post", "delete", "patch"):
                continue
            if path.startswith("/admin/"):
                op.setdefault("security", _ADMIN)
                for code, resp in {**_ADMIN_ERRORS, "404": _err("not found")}.items():
                    op["responses"].setdefault(code, resp)
            _fix_generated_responses(path, op)
            if "{" in path:  # an id in the path that names nothing is a 404
                op["responses"].setdefault("404", _err("not found"))
            for code, resp in list(op["responses"].items()):  # errors are OpenAI-shaped everywhere
                if code[0] in "45":
                    op["responses"][code] = _err(resp.get("description") or "error")
            for code, resp in _COMMON_ERRORS.items():
                op["responses"].setdefault(code, resp)
    own = copy.deepcopy(PATHS)
    for item in own.values():
        for op in item.values():
            for code, resp in _COMMON_ERRORS.items():
                op["responses"].setdefault(code, copy.deepcopy(resp))
    doc["paths"] = {**own, **paths}
    comps = doc.setdefault("components", {})
    comps.setdefault("schemas", {}).update(copy.deepcopy(SCHEMAS))
    comps["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    return doc
