"""`GET|DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items`: relayed to the
upstream that produced the response.

The id is the signed interaction id; it names the route and arm (so the upstream) and carries
the upstream's response id. The answer's `id` is the interaction id again. No event: reading
or deleting a stored response is not an interaction.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import MediaType, Request, Response, delete, get
from litestar.params import FromPath

from gateway.errors import ApiError
from gateway.proxy.respond import passthrough
from gateway.proxy.responses import resolve
from gateway.runtime import Runtime
from gateway.upstream.transport import UpstreamConnectionError

_raw_dict = msgspec.json.Decoder(dict[str, msgspec.Raw])
_enc = msgspec.json.Encoder()


async def _relay(request: Request[Any, Any, Any], response_id: str, method: str, suffix: str = "") -> Response[bytes]:
    """Send METHOD to the upstream that produced RESPONSE_ID (`/responses/<upstream id><suffix>`,
    the client's query string passed on) and relay its answer; a top-level `id` that is the
    upstream's response id is the interaction id again."""
    rt: Runtime = request.app.state.runtime
    comp = rt.compiled
    assert comp is not None
    auth = request.headers.getall("authorization", [])
    if len(auth) > 1:
        raise ApiError(400, "multiple Authorization headers: send exactly one", "multiple_authorization_headers")
    principal = comp.auth.client(auth[0] if auth else None)
    ref, upstream_id = resolve(rt.signer, response_id, principal.tenant, param=None)
    target = comp.targets.get((ref.route, ref.arm))
    if target is None or not principal.may_use(ref.route):
        raise ApiError(404, "No response with that id was found.", "response_not_found")
    up = target.upstream
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = up.urls["responses"] + "/" + upstream_id + suffix + (f"?{query}" if query else "")
    try:
        resp = await (up.delete(url) if method == "DELETE" else up.get(url))
        data = up.scrub(await resp.read())
        resp.release()
    except TimeoutError:
        raise ApiError(504, f"upstream {up.name!r} timed out", "timeout") from None
    except UpstreamConnectionError as err:
        raise ApiError(502, f"cannot reach upstream {up.name!r}: {err}", "connection") from None
    headers = {k.decode(): v.decode("latin-1") for k, v in passthrough(resp.raw_headers)}
    headers["x-abgate-interaction-id"] = response_id
    if resp.status >= 500:
        raise ApiError(502, f"upstream {up.name!r} answered {resp.status}", f"http_{resp.status}")
    if resp.status != 200:
        return Response(data, status_code=resp.status, media_type=MediaType.JSON, headers=headers)
    try:
        doc = _raw_dict.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ApiError(502, "upstream returned invalid JSON", "invalid_response") from None
    if "id" in doc and bytes(doc["id"]) == _enc.encode(upstream_id):
        doc["id"] = msgspec.Raw(_enc.encode(response_id))
    return Response(_enc.encode(doc), media_type=MediaType.JSON, headers=headers)


@get("/v1/responses/{response_id:str}", media_type=MediaType.JSON, operation_id="RetrieveResponse",
     summary="Retrieve a Responses API response by the id the gateway returned")
async def retrieve_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> Response[bytes]:
    return await _relay(request, response_id, "GET")


@delete("/v1/responses/{response_id:str}", media_type=MediaType.JSON, operation_id="DeleteResponse",
        summary="Delete a stored Responses API response at the upstream that produced it", status_code=200)
async def delete_response(request: Request[Any, Any, Any], response_id: FromPath[str]) -> Response[bytes]:
    return await _relay(request, response_id, "DELETE")


@get("/v1/responses/{response_id:str}/input_items", media_type=MediaType.JSON, operation_id="ListInputItems",
     summary="List a response's input items (`after`, `limit`, `order`, `include` passed on)")
async def list_input_items(request: Request[Any, Any, Any], response_id: FromPath[str]) -> Response[bytes]:
    return await _relay(request, response_id, "GET", "/input_items")
