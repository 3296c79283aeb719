"""Send every held-out example to a model: bounded concurrency, a request-rate cap,
retries with exponential backoff on 429 / 408 / 409 / 5xx / connection errors (honouring
`retry-after`), through the openai SDK either straight to an upstream or through the
abgate gateway with a pinned arm (`x-abgate-arm`, admin token => traffic `eval`)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from evaluation.offline.dataset import EvalExample
from evaluation.offline.runs import ExampleResult

RETRYABLE = frozenset({408, 409, 429})
MAX_BACKOFF_S = 30.0


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go. Gateway mode: base_url is the gateway's /v1, `model` the route."""

    base_url: str
    model: str
    api_key: str = "unused"
    arm: str | None = None  # gateway mode: the pinned arm
    via_gateway: bool = False
    timeout_s: float = 60.0
    extra_body: dict[str, Any] = field(default_factory=dict)  # temperature, max_tokens, seed, ...

    def headers(self) -> dict[str, str]:
        return {"x-abgate-arm": self.arm} if self.via_gateway and self.arm else {}

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {"mode": "gateway" if self.via_gateway else "direct", "base_url": self.base_url,
                             "model": self.model, **self.extra_body}
        if self.via_gateway:
            d["route"], d["arm"] = self.model, self.arm
        return d


@dataclass(frozen=True, slots=True)
class RunSettings:
    concurrency: int = 4
    rps: float | None = None  # max request starts per second (None = unlimited)
    retries: int = 3
    backoff_s: float = 0.5


class RateLimiter:
    """Spaces request starts at least 1/rps apart (a leaky bucket without bursts).
    `clock` and `sleep` are seams for tests (a virtual clock instead of the wall clock)."""

    def __init__(self, rps: float | None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.interval = 1.0 / rps if rps else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()
        self._clock = clock
        self._sleep = sleep

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = self._clock()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await self._sleep(delay)


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        v = headers.get(name)
        if v:
            try:
                return max(0.0, float(v) * scale)
            except ValueError:
                return None
    return None


def backoff_delay(attempt: int, base: float, retry_after: float | None, rng: random.Random) -> float:
    if retry_after is not None:
        return min(MAX_BACKOFF_S, retry_after)
    # full jitter keeps concurrent workers from retrying in lockstep
    return min(MAX_BACKOFF_S, base * 2.0 ** attempt) * (0.5 + 0.5 * rng.random())


def make_client(target: Target) -> openai.AsyncOpenAI:
    # max_retries=0: retries (and their accounting) are ours, not the SDK's.
    # The openai SDK annotates `http_client` as an httpx2 client but accepts an httpx one at run
    # time (openai._httpx2.is_legacy_httpx_async_client); httpx is what respx mocks in the tests.
    return openai.AsyncOpenAI(base_url=target.base_url, api_key=target.api_key, max_retries=0,
                              timeout=target.timeout_s, default_headers=target.headers() or None,
                              http_client=httpx.AsyncClient(timeout=target.timeout_s))  # type: ignore[arg-type]


async def run_one(client: openai.AsyncOpenAI, target: Target, ex: EvalExample, settings: RunSettings,
                  limiter: RateLimiter, rng: random.Random) -> ExampleResult:
    res = ExampleResult(id=ex.id, line=ex.line, category=ex.category, prompt=list(ex.prompt), reference=ex.reference)
    for attempt in range(settings.retries + 1):
        await limiter.wait()
        res.attempts = attempt + 1
        t0 = time.perf_counter()
        retry_after: float | None = None
        try:
            raw = await client.chat.completions.with_raw_response.create(
                model=target.model, messages=list(ex.prompt), **target.extra_body)  # type: ignore[arg-type]
            elapsed = (time.perf_counter() - t0) * 1000.0
            comp = raw.parse()
        except openai.APIStatusError as e:
            res.http_status, res.error = e.status_code, f"HTTP {e.status_code}: {_message(e)}"
            if not (e.status_code in RETRYABLE or e.status_code >= 500):
                return res  # a 4xx will not get better by asking again
            retry_after = _retry_after(e.response.headers)
        except openai.APIConnectionError as e:  # includes timeouts
            res.http_status, res.error = None, f"{type(e).__name__}: {e}"
        else:
            choice = comp.choices[0] if comp.choices else None
            if choice is None:
                res.error = "response has no choices"
                return res
            res.ok, res.error, res.http_status = True, None, raw.http_response.status_code
            res.output = choice.message.content or ""
            res.finish_reason = choice.finish_reason
            res.latency_ms = elapsed
            res.model = raw.headers.get("x-abgate-model") or comp.model
            res.arm = raw.headers.get("x-abgate-arm")
            res.interaction_id = raw.headers.get("x-abgate-interaction-id")
            if comp.usage is not None:
                res.prompt_tokens, res.completion_tokens = comp.usage.prompt_tokens, comp.usage.completion_tokens
            return res
        if attempt < settings.retries:
            await asyncio.sleep(backoff_delay(attempt, settings.backoff_s, retry_after, rng))
    return res


def _message(e: openai.APIStatusError) -> str:
    body = e.body
    if isinstance(body, dict):
        err = body.get("error", body)
        message = err.get("message") if isinstance(err, dict) else None
        if isinstance(message, str):
            return message[:300]
    return str(e.message)[:300]


async def run_all(examples: Sequence[EvalExample], target: Target, settings: RunSettings,
                  on_result: Callable[[ExampleResult], None] | None = None,
                  client: openai.AsyncOpenAI | None = None, seed: int = 0) -> list[ExampleResult]:
    """Results in dataset order. Never raises for a failed example: it is recorded as failed."""
    if settings.concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    own = client is None
    client = client or make_client(target)
    limiter = RateLimiter(settings.rps)
    sem = asyncio.Semaphore(settings.concurrency)
    rng = random.Random(seed)

    async def task(ex: EvalExample) -> ExampleResult:
        async with sem:
            r = await run_one(client, target, ex, settings, limiter, rng)
        if on_result is not None:
            on_result(r)
        return r

    try:
        return list(await asyncio.gather(*(task(ex) for ex in examples)))
    finally:
        if own:
            await client.close()
