"""OpenAPI descriptions of the raw-ASGI proxy endpoints Litestar cannot see (merged into
docs/openapi.json by `abgate.cli.reference`)."""

from __future__ import annotations

_ERRORS = {
    "400": {"description": "invalid request (OpenAI error shape)"},
    "401": {"description": "missing or unknown API key"},
    "404": {"description": "unknown route (model)"},
    "413": {"description": "body over limits.max_body_bytes (after gzip inflation)"},
    "415": {"description": "unsupported content-encoding"},
    "429": {"description": "rate limited (retry-after), by the gateway or passed through from the upstream"},
    "502": {"description": "upstream error or connection failure"},
    "504": {"description": "upstream timeout (also while the circuit is open after timeouts, with retry-after)"},
}

PROXY_PATHS: dict[str, object] = {
    "/v1/responses": {"post": {
        "summary": "OpenAI Responses API, A/B-routed",
        "description": (
            "`model` names a route. The response `id` (and every `response.id` in a stream) is the signed "
            "interaction id; send it back as `previous_response_id` to chain turns: the gateway maps it to "
            "the upstream's id and keeps the conversation on the same arm. Streaming (SSE) when `stream` is true."),
        "operationId": "CreateResponse",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["model"],
            "properties": {"model": {"type": "string"}, "input": {"oneOf": [{"type": "string"},
                                                                           {"type": "array", "items": {}}]},
                           "instructions": {"type": "string"}, "previous_response_id": {"type": "string"},
                           "user": {"type": "string"}, "safety_identifier": {"type": "string"},
                           "prompt_cache_key": {"type": "string"}, "stream": {"type": "boolean"}},
        }}}},
        "responses": {"200": {"description": "a response object, or a text/event-stream of response.* events"},
                      **_ERRORS},
    }},
    "/v1/embeddings": {"post": {
        "summary": "OpenAI embeddings, A/B-routed by route name",
        "operationId": "CreateEmbeddings",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["model", "input"],
            "properties": {"model": {"type": "string"},
                           "input": {"oneOf": [{"type": "string"}, {"type": "array", "items": {}}]},
                           "user": {"type": "string"}},
        }}}},
        "responses": {"200": {"description": "an embeddings list, as the upstream returned it"}, **_ERRORS},
    }},
}
