"""What the simulated model answers, for Chat Completions and the Responses API alike.

An `Ask` is the request reduced to what matters (system text, last user text, last tool output,
tools, tool choice, output format, limits); `answer(ask, seed, index)` gives choice `index`:
a text answer, a tool call, or structured JSON.

Tool calls: `tool_choice` "none" never calls, "required" or a named function always calls, "auto"
calls when the user's message names the tool (a word of its name of 4+ letters, e.g. "weather" for
`get_weather`) and the last message is not already a tool result. After a tool result the answer
quotes it: "According to <tool>: <output>".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from simulator import logprobs as lp
from simulator import model, schema


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: dict[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class Ask:
    model: str
    system: str
    user: str
    tool_output: str | None = None   # the conversation ends with a tool result
    tool_name: str | None = None     # the function whose result that is (when known)
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "auto"        # auto | none | required | <function name>
    json_schema: dict[str, Any] | None = None
    json_object: bool = False
    limit: int | None = None         # max output tokens
    top_logprobs: int | None = None  # None: no logprobs; 0..20: with that many alternatives
    echo: str | None = None          # x-sim-echo: the content is this text
    shots: int = 0                   # assistant turns in the prompt (few-shot examples)


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Choice:
    content: str | None
    finish_reason: str                      # stop | length | tool_calls
    tool_calls: tuple[ToolCall, ...] = ()
    logprobs: tuple[dict[str, Any], ...] | None = field(default=None)


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.param = param
        self.code = code
        self.status = status


_object = msgspec.json.Decoder()


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object; BadRequest with OpenAI's wording otherwise."""
    try:
        data = _object.decode(body)
    except msgspec.DecodeError as err:
        raise BadRequest(f"We could not parse the JSON body of your request ({err}).") from None
    if not isinstance(data, dict):
        raise BadRequest("The request body must be a JSON object.")
    return data


def approx_tokens(text: str) -> int:
    # ~4 characters a token is OpenAI's own rule of thumb; exact counts are not the simulator's job
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _words(name: str) -> list[str]:
    return [w.lower() for w in re.split(r"[_\-\s.]+|(?<=[a-z])(?=[A-Z])", name) if len(w) >= 4]


def _pick_tool(ask: Ask) -> Tool | None:
    if not ask.tools or ask.tool_choice == "none":
        return None
    if ask.tool_choice not in ("auto", "required"):
        return next((t for t in ask.tools if t.name == ask.tool_choice), None)
    if ask.tool_choice == "auto" and ask.tool_output is not None:
        return None
    text = ask.user.lower()
    named = next((t for t in ask.tools if any(w in text for w in _words(t.name))), None)
    if named is not None:
        return named
    return ask.tools[0] if ask.tool_choice == "required" else None


def _call_id(key: str, index: int) -> str:
    return "call_" + hashlib.blake2b(f"{key}\x1f{index}".encode("utf-8", "surrogatepass"), digest_size=12).hexdigest()


def answer(ask: Ask, seed: int, index: int = 0, taken: tuple[str | None, ...] = ()) -> Choice:
    """Choice `index` of the answer; `taken` are the earlier choices' contents (n > 1 differ)."""
    key = f"{seed}\x1f{ask.model}\x1f{ask.system}\x1f{ask.user}\x1f{ask.tool_output}\x1f{index}"
    tool = _pick_tool(ask)
    if tool is not None:
        args = schema.generate(tool.parameters or {"type": "object", "properties": {}}, key=key, user=ask.user)
        text = json.dumps(args, ensure_ascii=False, separators=(",", ":"))
        return Choice(None, "tool_calls", (ToolCall(_call_id(key, 0), tool.name, text),))
    if ask.echo is not None:
        content = ask.echo
    elif ask.tool_output is not None:
        content = f"According to {ask.tool_name or 'the tool'}: {ask.tool_output.strip()[:500]}"
    else:
        content = model.answer(ask.model, ask.system, ask.user, seed + index, ask.shots)
        if content in taken:
            content = f"{content} (variant {index + 1})"
    if ask.json_schema is not None:
        content = json.dumps(schema.generate(ask.json_schema, key=key, text=content, user=ask.user),
                             ensure_ascii=False, separators=(",", ":"))
    elif ask.json_object and not _is_json_object(content):
        content = json.dumps({"answer": content}, ensure_ascii=False, separators=(",", ":"))
    finish = "stop"
    if ask.limit is not None and ask.limit > 0 and approx_tokens(content) > ask.limit:
        content, finish = content[: ask.limit * 4], "length"
    logprobs = tuple(lp.entries(content, ask.top_logprobs)) if ask.top_logprobs is not None else None
    return Choice(content, finish, (), logprobs)


def answers(ask: Ask, seed: int, n: int) -> tuple[Choice, ...]:
    out: list[Choice] = []
    for i in range(n):
        out.append(answer(ask, seed, i, tuple(c.content for c in out)))
    return tuple(out)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def output_tokens(choices: tuple[Choice, ...]) -> int:
    total = 0
    for c in choices:
        total += approx_tokens(c.content or "")
        total += sum(approx_tokens(t.name) + approx_tokens(t.arguments) for t in c.tool_calls)
    return total


def parse_tools(raw: Any, *, chat: bool) -> tuple[Tool, ...]:
    """Chat: [{type: function, function: {name, parameters}}]; Responses: [{type: function, name, parameters}]."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise BadRequest("'tools' must be an array", "tools")
    out = []
    for i, t in enumerate(raw):
        fn = t.get("function") if chat and isinstance(t, dict) else t
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str) or not fn["name"]:
            where = f"tools[{i}].function.name" if chat else f"tools[{i}].name"
            raise BadRequest(f"Missing required parameter: '{where}'.", where, "missing_required_parameter")
        params = fn.get("parameters")
        out.append(Tool(fn["name"], params if isinstance(params, dict) else {}, str(fn.get("description") or "")))
    return tuple(out)


def parse_tool_choice(raw: Any, tools: tuple[Tool, ...], *, chat: bool) -> str:
    if raw is None:
        return "auto"
    if raw in ("auto", "none", "required"):
        return str(raw)
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = (raw.get("function") or {}).get("name") if chat else raw.get("name")
        if isinstance(name, str) and any(t.name == name for t in tools):
            return name
        raise BadRequest(f"Invalid value for 'tool_choice': no function named {name!r} in 'tools'.", "tool_choice")
    raise BadRequest("Invalid value for 'tool_choice': expected 'none', 'auto', 'required' or a function.",
                     "tool_choice")


def parse_schema_format(fmt: Any, param: str) -> tuple[dict[str, Any] | None, bool]:
    """(json schema, json_object) from chat `response_format` or Responses `text.format`."""
    if fmt is None:
        return None, False
    if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
        raise BadRequest(f"Invalid value for '{param}.type': expected 'text', 'json_object' or 'json_schema'.",
                         f"{param}.type")
    if fmt["type"] == "json_object":
        return None, True
    if fmt["type"] == "json_schema":
        body = fmt.get("json_schema") if "json_schema" in fmt else fmt  # chat nests it; Responses does not
        sch = body.get("schema") if isinstance(body, dict) else None
        if not isinstance(sch, dict):
            raise BadRequest(f"Missing required parameter: '{param}.json_schema.schema'.", f"{param}.schema")
        return sch, False
    return None, False


def parse_top_logprobs(enabled: Any, top: Any) -> int | None:
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= lp.MAX_TOP):
        raise BadRequest(f"Invalid 'top_logprobs': must be an integer between 0 and {lp.MAX_TOP}.", "top_logprobs")
    if enabled is not True:
        if top is not None and enabled is not None:
            raise BadRequest("'top_logprobs' requires 'logprobs' to be true.", "top_logprobs")
        return None
    return int(top or 0)
