"""`POST /v1/chat/completions`: OpenAI-shaped answers, streamed or not, with per-request fault injection."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import msgspec

from simulator import generate as gen
from simulator.errors import error, status_error
from simulator.generate import BadRequest, Choice, approx_tokens
from simulator.http import Request, Response, StreamWriter

_json = msgspec.json.Encoder()
_PREFIX = os.urandom(4).hex()  # ids unique across worker processes


@dataclass(frozen=True, slots=True)
class Completion:
    """What a request body asks for, and the answer, independent of timing (cacheable per body)."""

    model: str
    choices: tuple[Choice, ...]
    prompt_tokens: int
    completion_tokens: int
    stream: bool
    include_usage: bool

    @property
    def plain(self) -> bool:
        """One text choice without logprobs: the benchmark's hot path, pre-encoded."""
        return len(self.choices) == 1 and not self.choices[0].tool_calls and self.choices[0].logprobs is None


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    return ""


def parse(body: bytes, seed: int, echo: bool) -> Completion:
    data = gen.json_object(body)
    mdl = data.get("model")
    if not isinstance(mdl, str) or not mdl:
        raise BadRequest("you must provide a model parameter", "model")
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise BadRequest("'messages' must be a non-empty array of message objects", "messages")
    system: list[str] = []
    user = ""
    tool_output: str | None = None
    tool_name: str | None = None
    names: dict[str, str] = {}  # tool call id -> function name, from earlier assistant messages
    shots = 0  # assistant turns in the prompt: few-shot examples (or earlier turns)
    prompt_tokens = 3
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"Invalid value for 'messages[{i}]': expected an object with a 'role'.", f"messages[{i}]")
        text = _text(m.get("content"))
        prompt_tokens += 3 + approx_tokens(text)
        role = m["role"]
        tool_output = None
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            user = text
        elif role == "assistant":
            shots += 1
            for tc in m.get("tool_calls") or ():
                if isinstance(tc, dict) and isinstance(tc.get("function"), dict):
                    names[str(tc.get("id"))] = str(tc["function"].get("name"))
                    prompt_tokens += approx_tokens(str(tc["function"].get("arguments") or ""))
        elif role == "tool":
            if not isinstance(m.get("tool_call_id"), str):
                raise BadRequest(f"Missing required parameter: 'messages[{i}].tool_call_id'.",
                                 f"messages[{i}].tool_call_id", "missing_required_parameter")
            tool_output, tool_name = text, names.get(m["tool_call_id"])
    n = data.get("n", 1)
    if n is None:
        n = 1
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
        raise BadRequest("Invalid value for 'n': must be an integer between 1 and 128.", "n")
    tools = gen.parse_tools(data.get("tools"), chat=True)
    schema, json_object = gen.parse_schema_format(data.get("response_format"), "response_format")
    limit = data.get("max_completion_tokens") or data.get("max_tokens")
    ask = gen.Ask(
        model=mdl, system="\n".join(system), user=user, tool_output=tool_output, tool_name=tool_name, tools=tools,
        tool_choice=gen.parse_tool_choice(data.get("tool_choice"), tools, chat=True), json_schema=schema,
        json_object=json_object, limit=limit if isinstance(limit, int) else None,
        top_logprobs=gen.parse_top_logprobs(data.get("logprobs"), data.get("top_logprobs")),
        echo=body.decode("utf-8", "replace") if echo else None, shots=shots)
    choices = gen.answers(ask, seed, n)
    stream = data.get("stream") is True
    opts = data.get("stream_options")
    include_usage = stream and isinstance(opts, dict) and opts.get("include_usage") is True
    return Completion(mdl, choices, prompt_tokens, gen.output_tokens(choices), stream, include_usage)


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
            resp = status_error(forced_status, retry_after=h.get("x-sim-retry-after", "1"))
            return _later(resp, max(delay, ttft)) if (delay or ttft) else resp
        try:
            comp = self._completion(req.body, echo)
        except BadRequest as err:
            return error(err.status, str(err), param=err.param, code=err.code)
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
            "choices": [{"index": i, "message": _message(ch),
                         "logprobs": None if ch.logprobs is None else {"content": list(ch.logprobs), "refusal": None},
                         "finish_reason": ch.finish_reason} for i, ch in enumerate(c.choices)],
            "usage": _usage(c), "service_tier": "default", "system_fingerprint": "fp_simulator",
        })

    def _events(self, c: Completion) -> list[bytes]:
        if not c.plain:
            return self._events_general(c)
        choice = c.choices[0]
        content = choice.content or ""
        created = str(int(time.time())).encode()
        common = (b'{"id":"' + self._id().encode() + b'","object":"chat.completion.chunk","created":' + created
                  + b',"model":' + _json.encode(c.model) + b',"service_tier":"default","system_fingerprint":"fp_simulator",')
        head = b"data: " + common + b'"choices":[{"index":0,"delta":'
        tail_usage = b',"usage":null' if c.include_usage else b""
        open_tail = b',"logprobs":null,"finish_reason":null}]' + tail_usage + b"}\n\n"
        out = [head + b'{"role":"assistant","content":"","refusal":null}' + open_tail]
        for piece in _pieces(content, self.chunk_words):
            out.append(head + b'{"content":' + _json.encode(piece) + b"}" + open_tail)
        out.append(head + b'{},"logprobs":null,"finish_reason":' + _json.encode(choice.finish_reason) + b"}]"
                   + tail_usage + b"}\n\n")
        if c.include_usage:  # OpenAI's last chunk: empty choices, the whole request's usage
            out.append(b"data: " + common + b'"choices":[],"usage":' + _json.encode(_usage(c)) + b"}\n\n")
        out.append(b"data: [DONE]\n\n")
        return out

    def _events_general(self, c: Completion) -> list[bytes]:
        """n choices (each streamed in turn, chunks carry `index`), tool-call deltas, logprobs per chunk."""
        base = {"id": self._id(), "object": "chat.completion.chunk", "created": int(time.time()), "model": c.model,
                "service_tier": "default", "system_fingerprint": "fp_simulator"}
        usage: dict[str, Any] = {"usage": None} if c.include_usage else {}

        def chunk(index: int, delta: dict[str, Any], logprobs: Any = None, finish: str | None = None) -> bytes:
            body = {**base, "choices": [{"index": index, "delta": delta, "logprobs": logprobs,
                                         "finish_reason": finish}], **usage}
            return b"data: " + _json.encode(body) + b"\n\n"

        out: list[bytes] = []
        for i, ch in enumerate(c.choices):
            if ch.tool_calls:
                for k, tc in enumerate(ch.tool_calls):
                    head = {"index": k, "id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": ""}}
                    delta: dict[str, Any] = {"tool_calls": [head]}
                    if k == 0:
                        delta = {"role": "assistant", "content": None, "tool_calls": [head], "refusal": None}
                    out.append(chunk(i, delta))
                    step = max(1, len(tc.arguments) // 3 + 1)  # arguments arrive in a few fragments
                    for a in range(0, len(tc.arguments), step):
                        out.append(chunk(i, {"tool_calls": [{"index": k, "function": {"arguments": tc.arguments[a:a + step]}}]}))
            else:
                out.append(chunk(i, {"role": "assistant", "content": "", "refusal": None},
                                 None if ch.logprobs is None else {"content": [], "refusal": None}))
                for piece, lps in _pieces_with_logprobs(ch, self.chunk_words):
                    out.append(chunk(i, {"content": piece}, None if lps is None else {"content": lps, "refusal": None}))
            out.append(chunk(i, {}, None, ch.finish_reason))
        if c.include_usage:
            out.append(b"data: " + _json.encode({**base, "choices": [], "usage": _usage(c)}) + b"\n\n")
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


def _message(ch: Choice) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": "assistant", "content": ch.content, "refusal": None}
    if ch.tool_calls:
        msg["tool_calls"] = [{"id": t.id, "type": "function", "function": {"name": t.name, "arguments": t.arguments}}
                             for t in ch.tool_calls]
    return msg


def _pieces_with_logprobs(ch: Choice, words: int) -> list[tuple[str, list[dict[str, Any]] | None]]:
    """Content pieces; with logprobs, pieces are whole tokens so each chunk carries its tokens' entries."""
    if ch.logprobs is None:
        return [(p, None) for p in _pieces(ch.content or "", words)]
    toks = list(ch.logprobs)
    step = max(1, words)
    return [("".join(t["token"] for t in toks[i:i + step]), toks[i:i + step]) for i in range(0, len(toks), step)]


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
