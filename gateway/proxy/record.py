"""The one place a proxied request becomes its Interaction event and metrics.

Every handler calls `finish(ctx)` (idempotent) before its answer leaves, and once more in its
`finally`, so exactly one event is emitted per request whatever happens. Requests refused for
a missing or invalid key are counted in the metrics but only 1 in `UNAUTH_SAMPLE_EVERY` is
written as an event: junk traffic cannot crowd accepted interactions out of the sink.
"""

from __future__ import annotations

import time
from os import urandom

import structlog

from gateway import events as ev
from gateway.proxy.context import Ctx
from gateway.redact import capture, capture_json

log = structlog.get_logger("abgate.proxy")
perf = time.perf_counter
UNAUTH_SAMPLE_EVERY = 100


class _Sampler:
    __slots__ = ("seen",)

    def __init__(self) -> None:
        self.seen = 0

    def keep(self) -> bool:
        self.seen += 1
        return self.seen % UNAUTH_SAMPLE_EVERY == 1  # the first one, then 1 in N


unauth_sampler = _Sampler()


def finish(ctx: Ctx) -> None:
    if not ctx.recorded:
        ctx.recorded = True
        _record(ctx)


def _record(ctx: Ctx) -> None:
    """Emit the request's Interaction event and its metrics; never raises."""
    rt = ctx.rt
    try:
        total = perf() - ctx.t0
        if ctx.stream and ctx.completion_tokens is None and ctx.status == "ok" and ctx.endpoint == "chat":
            from gateway.tokens import count_completion, count_prompt

            ctx.completion_tokens = count_completion(ctx.response or "")
            ctx.prompt_tokens = count_prompt(ctx.messages)
        cost = None
        if ctx.prompt_tokens is not None or ctx.completion_tokens is not None:
            pin, pout = ctx.price
            cost = ((ctx.prompt_tokens or 0) * pin + (ctx.completion_tokens or 0) * pout) / 1e6
        overhead = max(0.0, total - ctx.waited)
        rt.metrics.observe_request(
            ctx.route or "", ctx.arm or "", ctx.model or "", ctx.status, total, ctx.ttft, overhead,
            ctx.prompt_tokens, ctx.completion_tokens, cost)
        if ctx.unauthenticated and not unauth_sampler.keep():
            return
        mode = ctx.capture
        messages, response = capture(mode, ctx.messages, ctx.response)
        extra = (ctx.tool_calls is not None or ctx.choices is not None or ctx.tools is not None
                 or ctx.endpoint != "chat")
        event = ev.Interaction(
            event_id=urandom(16).hex(), ts=ev.now_rfc3339(), tenant=ctx.tenant, route=ctx.route,
            experiment=ctx.experiment, arm=ctx.arm, phase=ctx.phase, config_version=ctx.config_version,
            interaction_id=ctx.interaction_id, unit=ctx.unit, traffic=ctx.traffic,
            model=ctx.model, stream=ctx.stream, status=ctx.status,
            http_status=ctx.http_status, latency_ms=round(total * 1000, 3),
            ttft_ms=round(ctx.ttft * 1000, 3) if ctx.ttft is not None else None,
            overhead_ms=round(overhead * 1000, 4), prompt_tokens=ctx.prompt_tokens,
            completion_tokens=ctx.completion_tokens, cost_usd=cost, fallback_from=ctx.fallback_from,
            messages=messages, response=response, finish_reason=ctx.finish_reason, error=ctx.error,
            endpoint=ctx.endpoint, variant=ctx.variant, fewshot=ctx.fewshot,
            tool_calls=capture_json(mode, ctx.tool_calls) if extra else None,
            choices=capture_json(mode, ctx.choices) if extra else None,
            input=capture_json(mode, ctx.input) if extra else None,
            instructions=capture_json(mode, ctx.instructions) if extra else None,
            tools=capture_json(mode, ctx.tools) if extra else None,
            output=capture_json(mode, ctx.output) if extra else None,
            previous_response_id=ctx.previous_response_id, upstream_id=ctx.upstream_id)
        rt.sink.emit(event)
    except Exception:
        log.exception("record_failed", interaction_id=ctx.interaction_id)
