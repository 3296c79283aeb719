"""Chat Completions features through the real openai SDK against a simulator process: tools (plain
and streamed deltas), n choices (plain and streamed), json_schema answers, logprobs."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest

pytestmark = pytest.mark.integration
MODEL = "gpt-4o-mini-2024-07-18"
TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                   "required": ["location", "unit"], "additionalProperties": False}}}]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris right now?"}]


def _assemble(chunks: list[Any]) -> dict[int, dict[str, Any]]:
    """Per choice: content and tool calls put together from the deltas, as SDK users do."""
    out: dict[int, dict[str, Any]] = {}
    for c in chunks:
        for ch in c.choices:
            acc = out.setdefault(ch.index, {"content": "", "tools": {}, "finish": None})
            acc["content"] += ch.delta.content or ""
            for tc in ch.delta.tool_calls or ():
                t = acc["tools"].setdefault(tc.index, {"id": None, "name": "", "arguments": ""})
                t["id"] = tc.id or t["id"]
                if tc.function:
                    t["name"] += tc.function.name or ""
                    t["arguments"] += tc.function.arguments or ""
            acc["finish"] = ch.finish_reason or acc["finish"]
    return out


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS)
    msg = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls" and msg.content is None
    call = msg.tool_calls[0]  # type: ignore[index]
    assert call.type == "function" and call.function.name == "get_weather"  # type: ignore[union-attr]
    args = json.loads(call.function.arguments)  # type: ignore[union-attr]
    jsonschema.validate(args, TOOLS[0]["function"]["parameters"])
    assert args["location"] == "Paris"
    follow = [*ASK, msg.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "21C"}]
    second = client.chat.completions.create(model=MODEL, messages=follow, tools=TOOLS)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "According to get_weather: 21C"


def test_streamed_tool_call_deltas_assemble_to_the_plain_answer(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS).choices[0].message.tool_calls
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, stream=True))
    got = _assemble(chunks)[0]
    assert got["finish"] == "tool_calls" and got["content"] == ""
    assert len([c for c in chunks if c.choices and c.choices[0].delta.tool_calls]) >= 3  # really in pieces
    assert [(t["id"], t["name"], t["arguments"]) for t in got["tools"].values()] == [
        (p.id, p.function.name, p.function.arguments) for p in plain]  # type: ignore[union-attr]


def test_n_choices_plain_and_streamed(client: openai.OpenAI) -> None:
    q: list[Any] = [{"role": "user", "content": "Explain compound interest briefly"}]
    plain = client.chat.completions.create(model=MODEL, messages=q, n=2)
    assert [c.index for c in plain.choices] == [0, 1]
    texts = [c.message.content for c in plain.choices]
    assert texts[0] != texts[1]
    streamed = _assemble(list(client.chat.completions.create(model=MODEL, messages=q, n=2, stream=True)))
    assert [streamed[i]["content"] for i in (0, 1)] == texts
    assert all(streamed[i]["finish"] == "stop" for i in (0, 1))
    assert plain.usage is not None and plain.usage.completion_tokens > len(texts[0] or "") // 4


def test_json_schema_answer_is_valid(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}, "confidence": {"type": "number",
              "minimum": 0, "maximum": 1}, "sources": {"type": "array", "items": {"type": "string"}}},
              "required": ["answer", "confidence", "sources"], "additionalProperties": False}
    r = client.chat.completions.create(model=MODEL, messages=ASK, response_format={
        "type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}})
    value = json.loads(r.choices[0].message.content or "")
    jsonschema.validate(value, schema)
    assert value["answer"]
    obj = client.chat.completions.create(model=MODEL, messages=ASK, response_format={"type": "json_object"})
    assert isinstance(json.loads(obj.choices[0].message.content or ""), dict)


def test_logprobs_plain_and_streamed(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=2)
    lp = r.choices[0].logprobs
    assert lp is not None and lp.content
    assert "".join(t.token for t in lp.content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in lp.content)
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, logprobs=True, top_logprobs=2, stream=True))
    streamed = [t for c in chunks for ch in c.choices if ch.logprobs and ch.logprobs.content for t in ch.logprobs.content]
    assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in lp.content]
    assert client.chat.completions.create(model=MODEL, messages=ASK).choices[0].logprobs is None


@pytest.mark.parametrize(("extra", "param"), [({"n": 0}, "n"), ({"tool_choice": "sometimes"}, "tool_choice"),
                                              ({"top_logprobs": 30, "logprobs": True}, "top_logprobs"),
                                              ({"response_format": {"type": "yaml"}}, "response_format.type")])
def test_bad_parameters_are_400_naming_the_param(client: openai.OpenAI, extra: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=MODEL, messages=ASK, tools=TOOLS, **extra)
    assert err.value.param == param
