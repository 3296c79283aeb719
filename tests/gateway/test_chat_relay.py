"""Agent-style chat answers in the log: tool calls (streamed deltas assembled) and every choice."""

from __future__ import annotations

import json

import openai
import pytest

from tests.gateway.conftest import Live
from tests.support.gateway_helpers import event_for

pytestmark = pytest.mark.integration
MSGS = [{"role": "user", "content": "weather in Paris?"}]
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}]
ARGS = '{"city": "Paris", "unit": "c"}'


def _sdk(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.gw}/v1", api_key="sk", max_retries=0)


def test_tool_call_round_trip_is_recorded(live: Live) -> None:
    client = _sdk(live)
    raw = client.chat.completions.with_raw_response.create(model="support", messages=MSGS, tools=TOOLS, user="t1")
    c = raw.parse()
    call = c.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris", "unit": "c"}
    ev = event_for(live.state, c.id)
    assert ev["finish_reason"] == "tool_calls" and ev["response"] is None
    assert ev["tool_calls"] == [{"id": "call_0", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ARGS}}]
    assert ev["choices"] is None
    # the tool's answer goes back; the second turn's messages carry the call and its result
    follow = [*MSGS, c.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "21C"}]
    c2 = client.chat.completions.create(model="support", messages=follow, user="t1")
    ev2 = event_for(live.state, c2.id)
    assert ev2["messages"][-1] == {"role": "tool", "tool_call_id": "call_0", "content": "21C"}
    assert ev2["response"].startswith("echo:")


def test_streamed_tool_call_deltas_are_assembled(live: Live) -> None:
    stream = _sdk(live).chat.completions.create(model="support", messages=MSGS, tools=TOOLS, user="t2", stream=True)
    chunks = list(stream)
    args = "".join(ch.choices[0].delta.tool_calls[0].function.arguments or ""
                   for ch in chunks if ch.choices and ch.choices[0].delta.tool_calls)
    assert args == ARGS
    ev = event_for(live.state, chunks[0].id)
    assert ev["tool_calls"] == [{"id": "call_0", "type": "function",
                                 "function": {"name": "get_weather", "arguments": ARGS}}]
    assert ev["finish_reason"] == "tool_calls" and ev["stream"] is True


def test_n2_non_stream_logs_every_choice(live: Live) -> None:
    c = _sdk(live).chat.completions.create(model="support", messages=MSGS, n=2, user="t3")
    assert len(c.choices) == 2
    ev = event_for(live.state, c.id)
    assert ev["response"] == c.choices[0].message.content
    assert [(x["index"], x["response"], x["finish_reason"]) for x in ev["choices"]] == [
        (0, c.choices[0].message.content, "stop"), (1, c.choices[1].message.content, "stop")]


def test_n2_stream_logs_each_choice_separately(live: Live) -> None:
    chunks = list(_sdk(live).chat.completions.create(model="support", messages=MSGS, n=2, user="t4", stream=True))
    texts = {0: "", 1: ""}
    for ch in chunks:
        for choice in ch.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts[0] != texts[1] and texts[1] == texts[0] + "#1"
    ev = event_for(live.state, chunks[0].id)
    assert ev["response"] == texts[0]
    assert [(x["index"], x["response"]) for x in ev["choices"]] == [(0, texts[0]), (1, texts[1])]


def test_n2_streamed_tool_calls_per_choice(live: Live) -> None:
    chunks = list(_sdk(live).chat.completions.create(model="support", messages=MSGS, n=2, tools=TOOLS, user="t5",
                                                     stream=True))
    ev = event_for(live.state, chunks[0].id)
    assert [x["tool_calls"][0]["id"] for x in ev["choices"]] == ["call_0", "call_1"]
    assert all(x["tool_calls"][0]["function"]["arguments"] == ARGS for x in ev["choices"])
