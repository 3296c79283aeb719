"""Request routing for the simulator process: health, models, chat, embeddings, files, fine-tuning."""

from __future__ import annotations

import base64
import random
import time
from array import array
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from simulator.chat import ChatHandler
from simulator.embeddings import DIM, embed
from simulator.errors import error, status_error
from simulator.finetune import FineTuneStore
from simulator.generate import approx_tokens
from simulator.headers import RateHeaders
from simulator.http import Request, Response, StreamWriter
from simulator.responses import ResponsesHandler

_json = msgspec.json.Encoder()
BASE_MODELS = ("gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-mini-2025-04-14", "gpt-4.1-nano-2025-04-14",
               "text-embedding-3-small", "gpt-6-luna")
# OpenAI's 2027-01-14 retirement (gpt-4o-mini-2024-07-18, gpt-4o, gpt-4.1, gpt-4.1-mini and their fine-tunes);
# `GET /v1/models` carries it as the optional `shutdown_date`
SHUTDOWN_DATES = {"gpt-4o-mini-2024-07-18": "2027-01-14", "gpt-4o-2024-08-06": "2027-01-14",
                  "gpt-4.1-2025-04-14": "2027-01-14", "gpt-4.1-mini-2025-04-14": "2027-01-14"}


@dataclass(frozen=True, slots=True)
class Settings:
    latency_ms: float = 0.0
    ttft_ms: float = 0.0
    error_rate: float = 0.0
    error_status: int = 500
    seed: int = 0
    ft_seconds: float = 3.0
    rate_limit: float = 0.0      # requests per second per process; 0 = unlimited
    chunk_words: int = 2
    state_dir: str = ""


def ok(data: Any, status: int = 200) -> Response:
    return Response(status, _json.encode(data))


class RateLimiter:
    """Token bucket (per process): over the rate answers 429 like OpenAI, with retry-after."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = max(1.0, rate)
        self.last = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(max(1.0, self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Simulator:
    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.rng = random.Random(settings.seed)
        self.chat = ChatHandler(seed=settings.seed, latency_ms=settings.latency_ms, ttft_ms=settings.ttft_ms,
                                chunk_words=settings.chunk_words)
        self.limiter = RateLimiter(settings.rate_limit) if settings.rate_limit > 0 else None
        self.rate = RateHeaders()
        self.responses = ResponsesHandler(Path(settings.state_dir), seed=settings.seed, chunk_words=settings.chunk_words)
        self.ft = FineTuneStore(Path(settings.state_dir), ft_seconds=settings.ft_seconds, seed=settings.seed)
        self.chat_requests = 0  # received so far (`GET /_stats`): lets a test know its requests arrived

    def __call__(self, req: Request, writer: StreamWriter) -> Response | None | Awaitable[Response | None]:
        """Every answer carries OpenAI's `x-request-id`, `openai-processing-ms` and `x-ratelimit-*`."""
        started = time.perf_counter()
        limited = b"rate-limited" in req.body and _rate_limited_model(req.body)
        writer.extra = self.rate.render(len(req.body), started, exhausted=limited)
        if limited:
            result: Response | None | Awaitable[Response | None] = status_error(
                429, "Rate limit reached for requests (simulated: the model name contains 'rate-limited').",
                retry_after=req.headers.get("x-sim-retry-after", "1"))
        else:
            result = self._route(req, writer)
        if isinstance(result, Response):
            result.raw_headers += writer.extra
            return result
        if result is None:
            return None
        return _stamped(result, writer.extra)

    def _route(self, req: Request, writer: StreamWriter) -> Response | None | Awaitable[Response | None]:
        path = req.path[3:] if req.path.startswith("/v1/") else req.path
        if path == "/chat/completions":
            if req.method != "POST":
                return _method(req)
            self.chat_requests += 1
            return self.chat.handle(req, writer, self._fault(req))
        if path in ("/healthz", "/health"):
            return ok({"status": "ok"})
        if path == "/_stats":
            return ok({"chat_requests": self.chat_requests})
        forced = self._fault(req)
        if forced is not None:
            return status_error(forced, retry_after=req.headers.get("x-sim-retry-after", "1"))
        if path == "/responses" or path.startswith("/responses/"):
            return self.responses.route(req, path, writer)
        if path == "/embeddings":
            return self._embeddings(req) if req.method == "POST" else _method(req)
        if path == "/models" or path.startswith("/models/"):
            return self._models(req, path)
        if path == "/files" or path.startswith("/files/") or path.startswith("/fine_tuning/"):
            return self.ft.route(req, path)
        return error(404, f"Invalid URL ({req.method} {req.path})", code="unknown_url")

    def _fault(self, req: Request) -> int | None:
        """Status to fail this request with: forced by header, rate limit, or the random error rate."""
        forced = req.headers.get("x-sim-status")
        if forced is not None:
            try:
                code = int(forced)
            except ValueError:
                code = 0
            if code >= 400:
                return code
            if 200 <= code < 300:
                return None
        if self.limiter is not None and not self.limiter.allow():
            return 429
        if self.s.error_rate > 0 and self.rng.random() < self.s.error_rate:
            return self.s.error_status
        return None

    def _models(self, req: Request, path: str) -> Response:
        ids = list(BASE_MODELS) + self.ft.model_ids()
        if path == "/models":
            return ok({"object": "list", "data": [_model(m) for m in ids]})
        mid = path[len("/models/"):]
        if mid in ids or mid.startswith("ft:"):
            return ok(_model(mid))
        return error(404, f"The model '{mid}' does not exist or you do not have access to it.", code="model_not_found")

    def _embeddings(self, req: Request) -> Response:
        try:
            data = msgspec.json.decode(req.body)
        except msgspec.DecodeError as err:
            return error(400, f"We could not parse the JSON body of your request ({err}).")
        if not isinstance(data, dict) or not isinstance(data.get("model"), str):
            return error(400, "you must provide a model parameter", param="model")
        inp = data.get("input")
        texts = [inp] if isinstance(inp, str) else inp
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return error(400, "'input' must be a non-empty string or array of strings", param="input")
        dims = data.get("dimensions", DIM)
        if not isinstance(dims, int) or not 1 <= dims <= DIM:
            return error(400, f"'dimensions' must be an integer between 1 and {DIM}", param="dimensions")
        b64 = data.get("encoding_format") == "base64"
        out = []
        for i, t in enumerate(texts):
            vec = embed(t, dims)
            value: Any = base64.b64encode(array("f", vec).tobytes()).decode() if b64 else vec
            out.append({"object": "embedding", "index": i, "embedding": value})
        tokens = sum(approx_tokens(t) for t in texts)
        return ok({"object": "list", "data": out, "model": data["model"],
                   "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def _rate_limited_model(body: bytes) -> bool:
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return False
    return isinstance(data, dict) and isinstance(data.get("model"), str) and "rate-limited" in data["model"]


async def _stamped(result: Awaitable[Response | None], extra: str) -> Response | None:
    resp = await result
    if resp is not None:
        resp.raw_headers += extra
    return resp


def _model(mid: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"id": mid, "object": "model", "created": 1721172741,
                           "owned_by": "system" if not mid.startswith("ft:") else "user"}
    base = mid.split(":")[1] if mid.startswith("ft:") and mid.count(":") >= 1 else mid
    if base in SHUTDOWN_DATES:  # a fine-tune retires with its base model
        doc["shutdown_date"] = SHUTDOWN_DATES[base]
    return doc


def _method(req: Request) -> Response:
    return error(405, f"Method {req.method} not allowed for {req.path}", code="method_not_allowed")
