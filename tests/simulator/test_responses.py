"""The Responses API through the real openai SDK against a simulator process: create (plain and
streamed, with OpenAI's event names), previous_response_id chaining, retrieve, delete, tools, formats."""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

pytestmark = pytest.mark.integration
MODEL = "gpt-4o-mini-2024-07-18"
TOOLS: list[Any] = [{"type": "function", "name": "lookup_order", "description": "Order status",
                     "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}},
                                    "required": ["order_id"], "additionalProperties": False}, "strict": True}]


def test_create_and_retrieve(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, instructions="You are Order Support.",
                                input="Where is my order 424242?")
    assert r.object == "response" and r.status == "completed" and r.id.startswith("resp_")
    assert "424242" in r.output_text and r.output[0].type == "message"
    assert r.usage is not None and r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    again = client.responses.retrieve(r.id)
    assert again.id == r.id and again.output_text == r.output_text
    items = list(client.responses.input_items.list(r.id))
    assert [(i.type, i.role) for i in items] == [("message", "user")]  # type: ignore[union-attr]
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve("resp_doesnotexist")


def test_stream_event_names_and_text(client: openai.OpenAI) -> None:
    plain = client.responses.create(model=MODEL, input="Explain compound interest briefly")
    events = list(client.responses.create(model=MODEL, input="Explain compound interest briefly", stream=True))
    types = [e.type for e in events]
    assert types[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.content_part.added"]
    assert types[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done",
                          "response.completed"]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == plain.output_text
    final = events[-1].response  # type: ignore[union-attr]
    assert final.output_text == plain.output_text and client.responses.retrieve(final.id).id == final.id
    with client.responses.stream(model=MODEL, input="Explain compound interest briefly") as stream:
        for _ in stream:
            pass
        assert stream.get_final_response().output_text == plain.output_text


def test_sse_lines_carry_the_event_name(sim_base: str) -> None:
    with httpx.stream("POST", f"{sim_base}/v1/responses", json={"model": MODEL, "input": "hi", "stream": True}) as r:
        text = "".join(r.iter_text())
    blocks = [b for b in text.split("\n\n") if b]
    for b in blocks:
        event, data = b.split("\n", 1)
        assert event.startswith("event: ") and json.loads(data[len("data: "):])["type"] == event[len("event: "):]


def test_previous_response_id_chains_the_conversation(client: openai.OpenAI) -> None:
    first = client.responses.create(model=MODEL, input="What is the weather in Paris?", tools=TOOLS,
                                    tool_choice="required")
    call = first.output[0]
    assert call.type == "function_call" and call.name == "lookup_order"
    assert json.loads(call.arguments)["order_id"]
    second = client.responses.create(model=MODEL, previous_response_id=first.id, tools=TOOLS, input=[
        {"type": "function_call_output", "call_id": call.call_id, "output": "shipped yesterday"}])
    assert second.previous_response_id == first.id
    assert second.output_text == "According to lookup_order: shipped yesterday"
    third = client.responses.create(model=MODEL, previous_response_id=second.id, input="thanks!")
    assert third.usage is not None and second.usage is not None
    assert third.usage.input_tokens > second.usage.input_tokens  # the earlier turns are in the context
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=MODEL, previous_response_id="resp_nope", input="x")
    assert err.value.code == "previous_response_not_found"


def test_streamed_function_call_events(client: openai.OpenAI) -> None:
    events = list(client.responses.create(model=MODEL, input="check order 7", tools=TOOLS, tool_choice="required",
                                          stream=True))
    args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    done = next(e for e in events if e.type == "response.function_call_arguments.done")
    assert args == done.arguments and json.loads(args)["order_id"]


def test_json_schema_format_and_logprobs(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"summary": {"type": "string"}, "priority": {"type": "integer",
              "minimum": 1, "maximum": 3}}, "required": ["summary", "priority"], "additionalProperties": False}
    r = client.responses.create(model=MODEL, input="Summarise my ticket", text={"format": {
        "type": "json_schema", "name": "ticket", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(r.output_text), schema)
    lp = client.responses.create(model=MODEL, input="hello", include=["message.output_text.logprobs"], top_logprobs=2)
    part = lp.output[0].content[0]  # type: ignore[union-attr]
    assert part.logprobs and "".join(t.token for t in part.logprobs) == part.text  # type: ignore[union-attr]


def test_max_output_tokens_is_incomplete_and_delete(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, input="Explain compound interest", max_output_tokens=4)
    assert r.status == "incomplete" and r.incomplete_details is not None
    assert r.incomplete_details.reason == "max_output_tokens"
    client.responses.delete(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)


def test_store_false_is_not_retrievable(client: openai.OpenAI) -> None:
    r = client.responses.create(model=MODEL, input="hi", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
