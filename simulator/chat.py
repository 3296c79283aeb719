"""`POST /v1/chat/completions`: OpenAI-shaped answers, streamed or not, with per-request fault injection."""

from __future__ import annotations

import asyncio
import math
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec

from simulator import model
from simulator.errors import error, status_error
from simulator.http import Request, Response, StreamWriter

_json = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()
_PREFIX = os.urandom(4).hex()  # ids unique across worker processes


@dataclass(frozen=True, slots=True)
class Completion:
    """What a request body asks for, and the answer, independent of timing (cacheable per body)."""

    model: str
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    include_usage: bool


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def approx_tokens(text: str) -> int:
    # ~4 characters a token is OpenAI's own rule of thumb; exact counts are not the simulator's job
    return max(1, math.ceil(len(text) / 4)) if text else 0


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def parse(body: bytes, seed: int, echo: bool) -> Completion:
    try:
        data = _decode.decode(body)
    except msgspec.DecodeError as err:
        raise BadRequest(f"We could not parse the JSON body of your request ({err}).") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    mdl = data.get("model")
    if not isinstance(mdl, str) or not mdl:
        raise BadRequest("you must provide a model parameter", "model")
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty array of message objects", "messages")
    system: list[str] = []
    user = ""
    shots = 0  # assistant turns in the prompt: few-shot examples (or earlier turns)
    prompt_tokens = 3
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"Invalid value for 'messages[{i}]': expected an object with a 'role'.", f"messages[{i}]")
        text = _text(m.get("content"))
        prompt_tokens += 3 + approx_tokens(text)
        if m["role"] in ("system", "developer"):
            system.append(text)
        elif m["role"] == "user":
            user = text
        elif m["role"] == "assistant":
            shots += 1
    stream = data.get("stream") is True
    opts = data.get("stream_options")
    include_usage = stream and isinstance(opts, dict) and opts.get("include_usage") is True
    content = body.decode("utf-8", "replace") if echo else model.answer(mdl, "\n".join(system), user, seed, shots)
    finish = "stop"
    limit = data.get("max_completion_tokens") or data.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and approx_tokens(content) > limit:
        content, finish = content[: limit * 4], "length"
    return Completion(mdl, content, finish, prompt_tokens, approx_tokens(content), stream, include_usage)


class ChatHandler:
    """Holds the cache and the per-process knobs; `handle` is called for every chat request."""

    def __init__(self, *, seed: int, latency_ms: float, ttft_ms: float, chunk_words: int) -> None:
        self.seed = seed
        self.latency_ms = latency_ms
        self.ttft_ms = ttft_ms
        self.chunk_words = max(1, chunk_words)
        self._cache: dict[bytes, Completion] = {}
        self._n = 0

    def _completion(self, body: bytes, echo: bool) -> Completion:
        if echo:
            return parse(body, self.seed, True)
        hit = self._cache.get(body)
        if hit is None:
            hit = parse(body, self.seed, False)
            if len(self._cache) >= 10_000:  # bounded: drop everything rather than track recency
                self._cache.clear()
            self._cache[body] = hit
        return hit

    def _id(self) -> str:
        self._n += 1
        return f"chatcmpl-sim{_PREFIX}{self._n:010x}"

    def handle(self, req: Request, writer: StreamWriter, forced_status: int | None) -> Response | None | Awaitable[Response | None]:
        h = req.headers
        echo = h.get("x-sim-echo", "") in ("1", "true", "body")
        delay = _ms(h.get("x-sim-delay-ms"), self.latency_ms)
        ttft = _ms(h.get("x-sim-ttft-ms"), self.ttft_ms)
        if forced_status is not None:
            resp = status_error(forced_status)
            return _later(resp, max(delay, ttft)) if (delay or ttft) else resp
        try:
            comp = self._completion(req.body, echo)
        except BadRequest as err:
            return error(400, str(err), param=err.param)
        disconnect = _int(h.get("x-sim-disconnect-after-chunks"))
        extra = (("x-sim-model", comp.model),)
        if not comp.stream:
            resp = Response(200, self._body(comp), headers=extra)
            return _later(resp, max(delay, ttft)) if (delay or ttft) else resp
        events = self._events(comp)
        if not delay and not ttft and disconnect is None:
            writer.start(200, "text/event-stream", extra + (("cache-control", "no-cache"),))
            writer._conn.write(b"".join(b"%x\r\n%b\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n")
            return None
        return self._paced(writer, events, extra, ttft, delay, disconnect)

    def _body(self, c: Completion) -> bytes:
        return _json.encode({
            "id": self._id(), "object": "chat.completion", "created": int(time.time()), "model": c.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": c.content, "refusal": None},
                         "logprobs": None, "finish_reason": c.finish_reason}],
            "usage": _usage(c), "service_tier": "default", "system_fingerprint": "fp_simulator",
        })

    def _events(self, c: Completion) -> list[bytes]:
        created = str(int(time.time())).encode()
        common = (b'{"id":"' + self._id().encode() + b'","object":"chat.completion.chunk","created":' + created
                  + b',"model":' + _json.encode(c.model) + b',"service_tier":"default","system_fingerprint":"fp_simulator",')
        head = b"data: " + common + b'"choices":[{"index":0,"delta":'
        tail_usage = b',"usage":null' if c.include_usage else b""
        open_tail = b',"logprobs":null,"finish_reason":null}]' + tail_usage + b"}\n\n"
        out = [head + b'{"role":"assistant","content":"","refusal":null}' + open_tail]
        for piece in _pieces(c.content, self.chunk_words):
            out.append(head + b'{"content":' + _json.encode(piece) + b"}" + open_tail)
        out.append(head + b'{},"logprobs":null,"finish_reason":' + _json.encode(c.finish_reason) + b"}]"
                   + tail_usage + b"}\n\n")
        if c.include_usage:  # OpenAI's last chunk: empty choices, the whole request's usage
            out.append(b"data: " + common + b'"choices":[],"usage":' + _json.encode(_usage(c)) + b"}\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    async def _paced(self, writer: StreamWriter, events: list[bytes], extra: tuple[tuple[str, str], ...],
                     ttft: float, delay: float, disconnect: int | None) -> None:
        writer.start(200, "text/event-stream", extra + (("cache-control", "no-cache"),))
        if ttft:
            await asyncio.sleep(ttft / 1000)
        # the rest of the latency budget is spread over the remaining events
        gap = max(0.0, delay - ttft) / 1000 / max(1, len(events) - 1)
        for i, ev in enumerate(events):
            if disconnect is not None and i >= disconnect:
                writer.abort()
                return
            if i and gap:
                await asyncio.sleep(gap)
            if writer.closed:
                return
            await writer.send(ev)
        writer.end()


def _usage(c: Completion) -> dict[str, Any]:
    return {"prompt_tokens": c.prompt_tokens, "completion_tokens": c.completion_tokens,
            "total_tokens": c.prompt_tokens + c.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}}


def _pieces(text: str, words: int) -> list[str]:
    parts = text.split(" ")
    return [" ".join(parts[i:i + words]) + (" " if i + words < len(parts) else "") for i in range(0, len(parts), words)]


async def _later(resp: Response, ms: float) -> Response:
    await asyncio.sleep(ms / 1000)
    return resp


def _ms(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
