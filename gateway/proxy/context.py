"""The per-request record every proxy handler fills in and `record.finish` turns into one
Interaction event plus its metrics."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeAlias

if TYPE_CHECKING:
    from gateway.events import FewShotNote
    from gateway.runtime import Compiled, Runtime

# A decoded JSON value (what msgspec hands back for an untyped field).
Json: TypeAlias = "None | bool | int | float | str | list[Json] | dict[str, Json]"
Endpoint = Literal["chat", "responses", "embeddings"]
StatusName = Literal["ok", "upstream_error", "timeout", "client_closed", "rejected"]


@dataclass(slots=True)
class ChoiceAcc:
    """One extra choice (index > 0) or choice 0's tool calls while a stream is relayed."""

    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    tools: dict[int, dict[str, str]] | None = None  # tool-call index -> {id, type, name, arguments}


@dataclass(slots=True)
class Ctx:
    t0: float
    rt: Runtime
    comp: Compiled
    endpoint: Endpoint = "chat"
    tenant: str = "unknown"
    route: str | None = None
    experiment: str | None = None
    arm: str | None = None
    phase: int | None = None
    config_version: int | None = None
    interaction_id: str | None = None
    uuid: str = ""
    unit: str | None = None
    traffic: Literal["live", "eval"] = "live"
    model: str | None = None
    stream: bool = False
    strip_usage: bool = False  # we asked a stream for usage the client did not want
    status: StatusName = "rejected"
    http_status: int = 500
    waited: float = 0.0  # seconds spent awaiting the upstream or the client socket
    ttft: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    price: tuple[float, float] = (0.0, 0.0)
    fallback_from: str | None = None
    messages: Json = None
    response: str | None = None
    finish_reason: str | None = None
    tool_calls: list[Json] | None = None
    choices: list[Json] | None = None
    # Responses API
    input: Json = None
    instructions: Json = None
    tools: Json = None  # the request's tool definitions (chat or Responses format), as sent
    output: list[Json] | None = None
    previous_response_id: str | None = None
    upstream_id: str | None = None
    variant: str | None = None  # the arm variant's stable id (gateway.variants)
    fewshot: FewShotNote | None = None  # what dynamic few-shot retrieval did
    error: str | None = None
    capture: str = "full"
    unauthenticated: bool = False  # refused for a missing/invalid key: counted, events sampled
    closed: bool = False
    finished: bool = False
    recorded: bool = False
    parts: list[str] = field(default_factory=list)  # choice 0's streamed text
    acc: dict[int, ChoiceAcc] | None = None  # streamed tool calls / choices > 0
    upstream_headers: tuple[tuple[bytes, bytes], ...] = ()
