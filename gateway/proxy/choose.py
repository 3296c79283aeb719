"""Arm choice: route lookup, unit value, pinning, sticky arms for chained Responses, and the
signed interaction id. Pure decisions on an already parsed request."""

from __future__ import annotations

from os import urandom

import msgspec

from gateway.assign import RouteAssigner
from gateway.auth import Principal
from gateway.errors import ApiError
from gateway.ids import IdSigner, InteractionRef
from gateway.proxy.context import Ctx
from gateway.proxy.request import Headers, Receive, content_type_is_json, field, parse, read_body, route_name
from gateway.runtime import ArmTarget, Compiled

# `hash_attribute: user` (the default) takes the first of these body fields that is set, so
# clients moving from `user` to OpenAI's newer fields keep their bucket; naming one field
# (`safety_identifier`, `prompt_cache_key`) uses only that one.
USER_FIELDS = ("safety_identifier", "user", "prompt_cache_key")
_BODY_KINDS = {"user": USER_FIELDS, "safety_identifier": ("safety_identifier",),
               "prompt_cache_key": ("prompt_cache_key",)}


def route_for(comp: Compiled, principal: Principal, name: str) -> RouteAssigner:
    ra = comp.routes.get(name)
    if ra is None or not principal.may_use(name):
        raise ApiError(404, f"The model `{name[:200]}` does not exist or you do not have access to it.",
                       "model_not_found", param="model")
    return ra


async def read_routed(ctx: Ctx, headers: Headers, principal: Principal, receive: Receive
                      ) -> tuple[dict[str, msgspec.Raw], RouteAssigner]:
    """The request body, parsed, and the route its `model` names (checked against the key);
    the route's fields go on `ctx`. Every proxied endpoint starts here."""
    comp = ctx.comp
    doc = parse(await read_body(receive, headers, comp.max_body, comp.body_timeout), content_type_is_json(headers))
    name = route_name(doc)
    ra = route_for(comp, principal, name)
    ctx.route, ctx.experiment, ctx.phase, ctx.capture = name, ra.experiment, ra.route.phase, ra.route.capture
    return doc, ra


def _scalar(v: object) -> str | None:
    if isinstance(v, str):
        return v or None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    return None


def unit_value(ra: RouteAssigner, doc: dict[str, msgspec.Raw], headers: Headers, principal: Principal) -> str | None:
    names = _BODY_KINDS.get(ra.attr_kind)
    if names is not None:
        for name in names:
            if name in doc:
                v = _scalar(field(doc, name))
                if v is not None:
                    return v
        return None
    if ra.attr_kind == "header":
        return headers.get(ra.header) or None
    return principal.key_hash


def choose(ctx: Ctx, ra: RouteAssigner, doc: dict[str, msgspec.Raw], headers: Headers, principal: Principal,
           sticky: str | None = None) -> ArmTarget:
    """Pick the arm (pinned by an admin, sticky to a previous response's arm, or bucketed) and
    fill the context's attribution."""
    comp = ctx.comp
    value = unit_value(ra, doc, headers, principal)
    pin = headers.get("x-abgate-arm")
    if pin is not None:
        if not comp.auth.may_pin(principal, headers.get("authorization")):
            raise ApiError(403, "only an admin key may pin an arm with x-abgate-arm", "pin_forbidden")
        arm = ra.pinned(pin)
        if arm is None:
            raise ApiError(400, f"route {ra.name!r} has no arm {pin!r}", "unknown_arm")
        unit = ra.assign(value).unit if value is not None else None
        ctx.traffic = "eval"
    else:
        a = ra.assign(value)
        arm, unit = a.arm, a.unit
        if sticky is not None and sticky != arm.name:
            kept = ra.pinned(sticky)
            if kept is not None:
                # A conversation stays on its arm; this unit's bucket says otherwise (weights
                # changed since), so the turn is kept out of the analysis.
                arm, unit = kept, None
    ctx.arm, ctx.unit = arm.name, unit
    ctx.uuid = urandom(16).hex()
    ctx.interaction_id = sign(ctx.rt.signer, ctx)
    return comp.targets[(ra.name, arm.name)]


def sign(signer: IdSigner, ctx: Ctx, upstream_id: str | None = None) -> str:
    """The signed interaction id. For the Responses API the upstream's response id rides in
    the uuid field (`<uuid>~<upstream id>`), so chaining and retrieval need no lookup table."""
    return signer.sign(InteractionRef(
        uuid=f"{ctx.uuid}~{upstream_id}" if upstream_id else ctx.uuid, tenant=ctx.tenant, route=ctx.route or "",
        experiment=ctx.experiment or "", arm=ctx.arm or "", phase=ctx.phase or 0,
        config_version=ctx.config_version or 0, traffic=ctx.traffic))
