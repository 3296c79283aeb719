"""Event schema: one JSON object per line in the archive (see DESIGN.md "Events").

Structs are encoded with msgspec; `omit_defaults` is off so every line carries every
field of its kind and DuckDB infers one stable schema.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

import msgspec

Status = Literal["ok", "upstream_error", "timeout", "client_closed", "rejected"]
Traffic = Literal["live", "eval"]
FeedbackSource = Literal["user", "reviewer", "system"]


def now_rfc3339() -> str:
    """UTC now as `YYYY-MM-DDTHH:MM:SS.mmmZ` (on every request's path: the part up to the
    seconds is formatted once per second)."""
    sec, milli = divmod(time.time_ns() // 1_000_000, 1000)
    return f"{_second_prefix(sec)}{milli:03d}Z"


@lru_cache(maxsize=4)
def _second_prefix(sec: int) -> str:
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S.")


def new_event_id() -> str:
    return uuid.uuid4().hex


def feedback_event_id(interaction_id: str, metric: str, idempotency_key: str | None) -> str:
    """Deterministic for keyed feedback, so a retried POST yields the same event_id everywhere."""
    if idempotency_key is None:
        return new_event_id()
    digest = hashlib.sha256(f"{interaction_id}\x00{metric}\x00{idempotency_key}".encode()).hexdigest()
    return digest[:32]


class Common(msgspec.Struct, kw_only=True, tag_field="kind"):
    event_id: str
    ts: str
    tenant: str
    route: str | None = None
    experiment: str | None = None
    arm: str | None = None
    phase: int | None = None
    config_version: int | None = None
    interaction_id: str | None = None


class FewShotNote(msgspec.Struct, kw_only=True):
    """What dynamic few-shot retrieval did for one request (`Interaction.fewshot`)."""

    status: Literal["ok", "skipped"]  # skipped: answered without the examples (see `error`)
    dataset: str
    ids: list[str] = []               # the curated examples sent, nearest first
    similarity: list[float] = []
    retrieval_ms: float | None = None
    error: str | None = None


class Interaction(Common, kw_only=True, tag="interaction"):
    unit: str | None  # salted sha256 of the hash attribute; None = anonymous
    traffic: Traffic
    model: str | None
    stream: bool
    status: Status
    http_status: int
    latency_ms: float
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    fallback_from: str | None = None
    messages: Any = None
    response: str | None = None
    finish_reason: str | None = None
    error: str | None = None
    variant: str | None = None        # stable id of the arm's model + overrides (gateway.variants)
    fewshot: FewShotNote | None = None
    # chat | responses | embeddings (docs/design-changes.md "Responses API, embeddings ...")
    endpoint: str = "chat"
    tool_calls: Any = None  # choice 0's tool calls, OpenAI chat format (Responses: function_call items)
    choices: Any = None  # every choice when n > 1: [{index, response, tool_calls, finish_reason}]
    input: Any = None  # Responses API `input` (string or items) / embeddings `input`, as sent
    instructions: Any = None  # Responses API `instructions`
    tools: Any = None  # the request's tool definitions (chat or Responses format), as sent
    output: Any = None  # Responses API output items, as the upstream returned them
    previous_response_id: str | None = None  # the interaction id this Responses turn continues
    upstream_id: str | None = None  # the upstream's own response id (Responses API)


class Feedback(Common, kw_only=True, tag="feedback"):
    metric: str
    value: Any
    idempotency_key: str | None = None
    source: FeedbackSource = "user"
    unit: str | None = None
    traffic: Traffic = "live"
    extra: dict[str, Any] | None = None


class Decision(Common, kw_only=True, tag="decision"):
    decision_id: str
    verdict: str
    record: dict[str, Any]


class ConfigChange(Common, kw_only=True, tag="config"):
    action: str  # set | rollback | promote | rollout_step | ...
    author: str
    reason: str
    decision_id: str | None = None
    previous_version: int | None = None


class Audit(Common, kw_only=True, tag="audit"):
    action: str
    actor: str
    detail: dict[str, Any] | None = None


Event = Interaction | Feedback | Decision | ConfigChange | Audit

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode(event: Event) -> bytes:
    return _encoder.encode(event)


def decode(line: bytes | str) -> Event:
    event: Event = _decoder.decode(line)
    return event
