"""When the simulated model calls a tool, answers a tool result, varies n choices, truncates, adds logprobs."""

from __future__ import annotations

import json

import pytest

from simulator import generate as gen
from simulator.logprobs import tokens

WEATHER = gen.Tool("get_weather", {"type": "object", "properties": {"location": {"type": "string"}},
                                   "required": ["location"]})
ORDERS = gen.Tool("lookup_order", {"type": "object", "properties": {"order_id": {"type": "string"}}})


def ask(**kw: object) -> gen.Ask:
    base: dict[str, object] = {"model": "gpt-4o-mini", "system": "", "user": "What is the weather in Paris?",
                               "tools": (ORDERS, WEATHER)}
    return gen.Ask(**{**base, **kw})  # type: ignore[arg-type]


def test_auto_calls_the_tool_the_user_names() -> None:
    c = gen.answer(ask(), seed=0)
    assert c.finish_reason == "tool_calls" and c.content is None
    assert [(t.name, json.loads(t.arguments)) for t in c.tool_calls] == [("get_weather", {"location": "Paris"})]
    assert c.tool_calls[0].id.startswith("call_")


def test_auto_answers_text_when_no_tool_fits_and_after_a_tool_result() -> None:
    assert gen.answer(ask(user="Tell me a joke"), 0).tool_calls == ()
    after = gen.answer(ask(tool_output="18C and sunny", tool_name="get_weather"), 0)
    assert after.finish_reason == "stop" and after.content == "According to get_weather: 18C and sunny"


@pytest.mark.parametrize(("choice", "expect"), [("none", None), ("required", "lookup_order"),
                                                ("lookup_order", "lookup_order")])
def test_tool_choice(choice: str, expect: str | None) -> None:
    c = gen.answer(ask(user="hello there", tool_choice=choice), 0)
    assert (c.tool_calls[0].name if c.tool_calls else None) == expect


def test_n_choices_differ_and_are_deterministic() -> None:
    a = gen.answers(ask(tools=()), seed=0, n=3)
    assert len({c.content for c in a}) == 3
    assert a == gen.answers(ask(tools=()), seed=0, n=3)


def test_limit_truncates_with_finish_reason_length() -> None:
    c = gen.answer(ask(tools=(), limit=3), 0)
    assert c.finish_reason == "length" and len(c.content or "") == 12


def test_logprobs_cover_the_content() -> None:
    c = gen.answer(ask(tools=(), top_logprobs=3), 0)
    assert c.logprobs is not None and "".join(t["token"] for t in c.logprobs) == c.content
    assert all(len(t["top_logprobs"]) == 3 and t["top_logprobs"][0]["token"] == t["token"] and t["logprob"] < 0
               and bytes(t["bytes"]).decode() == t["token"] for t in c.logprobs)
    assert tokens("a  b, c") == ["a", "  ", "b", ",", " c"]


def test_json_object_wraps_free_text() -> None:
    c = gen.answer(ask(tools=(), json_object=True), 0)
    assert isinstance(json.loads(c.content or ""), dict)


@pytest.mark.parametrize(("raw", "param"), [("x", "tools"), ([{"type": "function", "function": {}}],
                                                             "tools[0].function.name")])
def test_bad_tools_name_the_field(raw: object, param: str) -> None:
    with pytest.raises(gen.BadRequest) as err:
        gen.parse_tools(raw, chat=True)
    assert err.value.param == param


def test_tool_choice_must_name_a_declared_function() -> None:
    with pytest.raises(gen.BadRequest, match="no function named 'nope'"):
        gen.parse_tool_choice({"type": "function", "function": {"name": "nope"}}, (WEATHER,), chat=True)
    assert gen.parse_tool_choice({"type": "function", "name": "get_weather"}, (WEATHER,), chat=False) == "get_weather"
