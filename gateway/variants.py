"""Arms as variants: request overrides the gateway applies on the hot path, and their stable id.

A variant is a model plus overrides (config `arms[].variant`, see gateway.config.Variant):
a system prompt (replacing the client's leading system/developer messages, or prepended
before them), request parameters (set on every request, overriding the client's), fixed
few-shot examples and/or dynamically retrieved ones (gateway.fewshot). Examples go between
the system messages and the conversation, as user/assistant pairs (TensorZero's DICL does
the same). The event keeps the client's own messages; `variant` (the id) and `fewshot`
(which examples were sent) say what was added.

`compile_variant` runs when a config version loads (it resolves and loads few-shot indexes,
so a missing or foreign dataset fails the config, not a request); `prepare` is the one call
on the request path; `apply` is the pure body rewrite over the decoded `dict[str, Raw]`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import msgspec

from gateway.auth import DEFAULT_TENANT
from gateway.config import Arm, ConfigError, RouterConfig, Variant
from gateway.events import FewShotNote
from gateway.fewshot import (
    EmbeddingClient,
    FewShotError,
    FewShotIndex,
    Retriever,
    Shot,
    export_path,
    load_index,
    user_text,
)

_enc = msgspec.json.Encoder()
_SYSTEM_ROLES = ("system", "developer")


def variant_id(model: str, variant: Variant | None) -> str:
    """`var-` + 16 hex of sha256 over the canonical JSON of model + overrides (an empty variant is none)."""
    spec = msgspec.to_builtins(variant) if variant is not None and variant != Variant() else None
    canonical = json.dumps({"model": model, "variant": spec}, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False)
    return "var-" + hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class CompiledVariant:
    id: str
    active: bool = False  # False: a plain arm, nothing to rewrite
    params: tuple[tuple[str, msgspec.Raw], ...] = ()
    drop: tuple[str, ...] = ()  # client keys that would clash with a set parameter
    system: str | None = None
    prepend: bool = False
    fixed: tuple[dict[str, str], ...] = ()  # fixed examples as messages
    retriever: Retriever | None = None


def route_tenants(cfg: RouterConfig, route: str) -> set[str]:
    """Tenants whose (non-admin) client keys may use `route`; open dev mode is tenant `default`."""
    if cfg.auth is None:
        return {DEFAULT_TENANT}
    return {k.tenant for k in cfg.auth.keys if not k.admin and (k.routes is None or route in k.routes)}


def resolve_index(cfg: RouterConfig, route: str, i: int, arm: Arm, state_dir: Path) -> FewShotIndex | None:
    """Load the arm's few-shot export and check it belongs to the tenant(s) the route serves."""
    if arm.variant is None or arm.variant.fewshot is None:
        return None
    fs = arm.variant.fewshot
    at = f"routes.{route}.arms[{i}].variant.fewshot.dataset"
    try:
        index = load_index(export_path(state_dir, fs.dataset, fs.path))
    except FewShotError as err:
        raise ConfigError(at, f"few-shot dataset {fs.dataset!r}: {err}") from None
    if index.dataset != fs.dataset:
        raise ConfigError(at, f"the export at {export_path(state_dir, fs.dataset, fs.path)} holds dataset "
                              f"{index.dataset!r}, not {fs.dataset!r}")
    foreign = route_tenants(cfg, route) - {index.tenant}
    if foreign:
        raise ConfigError(at, f"few-shot dataset {fs.dataset!r} belongs to tenant {index.tenant!r}, but route "
                              f"{route!r} serves tenant(s) {', '.join(sorted(foreign))}: examples never cross tenants")
    return index


def check_resources(cfg: RouterConfig, state_dir: Path) -> None:
    """Every few-shot export the config names exists, is valid and is the route's tenant's (ConfigError)."""
    for rname, route in cfg.routes.items():
        for i, arm in enumerate(route.arms):
            resolve_index(cfg, rname, i, arm, state_dir)


def compile_variant(cfg: RouterConfig, route: str, i: int, arm: Arm, state_dir: Path,
                    client_for: Callable[[str], EmbeddingClient]) -> CompiledVariant:
    """The hot-path form of an arm's variant; `client_for(upstream name)` gives the embedding client."""
    vid = variant_id(arm.model, arm.variant)
    v = arm.variant
    if v is None or v == Variant():
        return CompiledVariant(id=vid)
    params = tuple((k, msgspec.Raw(_enc.encode(val))) for k, val in msgspec.to_builtins(v.params).items())
    drop: tuple[str, ...] = ()
    if v.params.max_tokens is not None:
        drop = ("max_completion_tokens",)
    elif v.params.max_completion_tokens is not None:
        drop = ("max_tokens",)
    fixed = tuple(m for ex in v.examples for m in ({"role": "user", "content": ex.user},
                                                   {"role": "assistant", "content": ex.assistant}))
    retriever = None
    index = resolve_index(cfg, route, i, arm, state_dir)
    if index is not None and v.fewshot is not None:
        fs = v.fewshot
        up = fs.embedding_upstream or cfg.upstream_for(arm.model)[0]
        retriever = Retriever(index, client_for(up), k=fs.k, timeout_ms=fs.timeout_ms,
                              min_similarity=fs.min_similarity)
    return CompiledVariant(id=vid, active=True, params=params, drop=drop, system=v.system_prompt,
                           prepend=v.system_mode == "prepend", fixed=fixed, retriever=retriever)


def rewrite_messages(messages: list[Any], v: CompiledVariant, shots: tuple[Shot, ...] = ()) -> list[Any]:
    n = 0
    while n < len(messages) and isinstance(messages[n], dict) and messages[n].get("role") in _SYSTEM_ROLES:
        n += 1
    head: list[Any] = messages[:n]
    if v.system is not None:
        mine = {"role": "system", "content": v.system}
        head = [mine, *head] if v.prepend else [mine]
    examples = [*v.fixed]
    for s in shots:
        examples.append({"role": "user", "content": s.user})
        examples.append({"role": "assistant", "content": s.assistant})
    return [*head, *examples, *messages[n:]]


def apply(doc: dict[str, msgspec.Raw], v: CompiledVariant, messages: list[Any],
          shots: tuple[Shot, ...] = ()) -> dict[str, msgspec.Raw]:
    """A new body with the variant's overrides (the input is not modified)."""
    out = dict(doc)
    for k in v.drop:
        out.pop(k, None)
    for k, raw in v.params:
        out[k] = raw
    if v.system is not None or v.fixed or shots:
        out["messages"] = msgspec.Raw(_enc.encode(rewrite_messages(messages, v, shots)))
    return out


class RequestContext(Protocol):
    """The per-request fields `prepare` fills in (gateway.proxy's request context has them)."""

    messages: Any
    waited: float
    variant: str | None
    fewshot: FewShotNote | None


async def prepare(ctx: RequestContext, doc: dict[str, msgspec.Raw], v: CompiledVariant) -> dict[str, msgspec.Raw]:
    """The body to forward for this arm; records the variant id and the retrieval on `ctx`."""
    ctx.variant = v.id
    ctx.fewshot = None
    if not v.active:
        return doc
    shots: tuple[Shot, ...] = ()
    if v.retriever is not None:
        shots, ctx.fewshot, waited = await v.retriever.retrieve(user_text(ctx.messages))
        ctx.waited += waited
    return apply(doc, v, ctx.messages, shots)
