"""The openai Python SDK against the simulator directly and through a real abgate gateway.

Every case runs on both targets; via the gateway it also checks what abgate adds (signed
interaction id, the event in the archive)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.compat.conftest import Stack, Target, router_yaml, target_params, targets
from tests.support.gateway_helpers import event_for
from tests.support.procs import start_gateway

pytestmark = pytest.mark.integration

TOOLS: list[Any] = [{"type": "function", "function": {
    "name": "get_weather", "description": "Current weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"],
                   "additionalProperties": False}}}]
ASK: list[Any] = [{"role": "user", "content": "What is the weather in Paris right now?"}]


@pytest.fixture
def target(request: pytest.FixtureRequest, stack: Stack) -> Target:
    return targets(stack)[request.param]


@pytest.fixture
def client(target: Target) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=target.base_url, api_key="sk-compat", max_retries=0, timeout=20) as c:
        yield c


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_chat_non_stream_and_stream(client: openai.OpenAI, target: Target) -> None:
    model = target.model("support")
    full = client.chat.completions.with_raw_response.create(model=model, messages=ASK, user="u-1")
    r = full.parse()
    assert r.choices[0].message.content and r.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model=model, messages=ASK, user="u-1", stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == r.choices[0].message.content
    if target.via_gateway:
        assert r.id == full.headers["x-abgate-interaction-id"]
        assert target.state is not None and event_for(target.state, r.id)["response"] == r.choices[0].message.content


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_tools_round_trip(client: openai.OpenAI, target: Target) -> None:
    model = target.model("support")
    first = client.chat.completions.create(model=model, messages=ASK, tools=TOOLS, user="u-tools")
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert first.choices[0].finish_reason == "tool_calls"
    assert json.loads(call.function.arguments) == {"location": "Paris"}  # type: ignore[union-attr]
    follow = [*ASK, first.choices[0].message.model_dump(exclude_none=True),
              {"role": "tool", "tool_call_id": call.id, "content": "21C and sunny"}]
    second = client.chat.completions.create(model=model, messages=follow, tools=TOOLS, user="u-tools")
    assert second.choices[0].message.content == "According to get_weather: 21C and sunny"


@pytest.mark.parametrize("target", ["gateway"], indirect=True)
def test_tool_call_is_in_the_event(client: openai.OpenAI, target: Target) -> None:
    first = client.chat.completions.create(model="support", messages=ASK, tools=TOOLS, user="u-tools")
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    streamed = list(client.chat.completions.create(model="support", messages=ASK, tools=TOOLS, user="u-tools",
                                                   stream=True))
    assert target.state is not None
    for iid in (first.id, streamed[0].id):
        ev = event_for(target.state, iid)
        assert ev["finish_reason"] == "tool_calls"
        assert [(t["function"]["name"], t["function"]["arguments"]) for t in ev["tool_calls"]] == [
            ("get_weather", call.function.arguments)]  # type: ignore[union-attr]
        assert ev["tools"] == TOOLS  # the definitions too: the dataset builder exports complete tool examples


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_n2_plain_and_streamed(client: openai.OpenAI, target: Target) -> None:
    model = target.model("support")
    q: list[Any] = [{"role": "user", "content": "Explain compound interest briefly"}]
    plain = client.chat.completions.create(model=model, messages=q, n=2, user="u-n")
    texts = [c.message.content for c in plain.choices]
    assert len(texts) == 2 and texts[0] != texts[1]
    got = {0: "", 1: ""}
    for c in client.chat.completions.create(model=model, messages=q, n=2, user="u-n", stream=True):
        for ch in c.choices:
            got[ch.index] += ch.delta.content or ""
    assert [got[0], got[1]] == texts


@pytest.mark.parametrize("target", ["gateway"], indirect=True)
def test_n2_is_logged_per_choice(client: openai.OpenAI, target: Target) -> None:
    q: list[Any] = [{"role": "user", "content": "Explain compound interest briefly"}]
    plain = client.chat.completions.create(model="support", messages=q, n=2, user="u-n")
    streamed = list(client.chat.completions.create(model="support", messages=q, n=2, user="u-n", stream=True))
    texts = [c.message.content for c in plain.choices]
    assert target.state is not None
    for iid in (plain.id, streamed[0].id):
        ev = event_for(target.state, iid)
        assert [_choice_text(c) for c in ev["choices"]] == texts


def _choice_text(choice: Any) -> Any:
    """A logged choice: its text, whether stored as a string or as an object."""
    if isinstance(choice, dict):
        msg = choice.get("message") if isinstance(choice.get("message"), dict) else {}
        return choice.get("response", choice.get("content", msg.get("content")))
    return choice


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_retry_after_and_request_id_reach_the_sdk(client: openai.OpenAI, target: Target) -> None:
    raw = client.chat.completions.with_raw_response.create(model=target.model("support"), messages=ASK)
    assert raw.parse()._request_id is not None and raw.parse()._request_id.startswith("req_")
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model=target.model("limited"), messages=ASK)
    assert err.value.response.headers.get("retry-after") == "1"
    assert err.value.request_id is not None
    assert err.value.response.headers.get("x-ratelimit-remaining-requests") == "0"


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_responses_non_stream_stream_and_chaining(client: openai.OpenAI, target: Target) -> None:
    model = target.model("support")
    first = client.responses.create(model=model, input="Where is my order 424242?", user="u-resp")
    assert first.status == "completed" and "424242" in first.output_text
    events = list(client.responses.create(model=model, input="Where is my order 424242?", user="u-resp",
                                          stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == first.output_text
    second = client.responses.create(model=model, input="And when will it arrive?", previous_response_id=first.id,
                                     user="u-resp")
    assert second.previous_response_id == first.id
    assert second.usage is not None and first.usage is not None
    assert second.usage.input_tokens > first.usage.input_tokens
    assert client.responses.retrieve(second.id).output_text == second.output_text


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_responses_input_items_and_delete(client: openai.OpenAI, target: Target) -> None:
    r = client.responses.create(model=target.model("support"), user="u-items",
                                input=[{"role": "user", "content": "Where is my order 777?"}])
    items = client.responses.input_items.list(r.id, order="asc")
    assert [getattr(it, "role", None) for it in items.data] == ["user"]
    assert "777" in json.dumps(items.data[0].model_dump())
    deleted = client.responses.delete(r.id)  # the SDK returns None on 200
    assert deleted is None
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(r.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(r.id)


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_embeddings(client: openai.OpenAI, target: Target) -> None:
    e = client.embeddings.create(model=target.model("embed"), input=["refund my order", "refund my order please"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 256
    cos = sum(a * b for a, b in zip(e.data[0].embedding, e.data[1].embedding))
    assert cos > 0.5


@pytest.mark.parametrize("target", target_params(), indirect=True)
def test_models_retrieve(client: openai.OpenAI, target: Target) -> None:
    m = client.models.retrieve(target.model("support"))
    assert m.id == target.model("support") and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model-or-route")


def test_safety_identifier_splits_users_50_50(tmp_path_factory: pytest.TempPathFactory, stack: Stack) -> None:
    tmp = tmp_path_factory.mktemp("safety")
    cfg = tmp / "router.yaml"
    cfg.write_text(router_yaml(stack.sim_base, hash_attribute="safety_identifier"))
    gw, base = start_gateway(tmp, cfg, tmp / "state")
    try:
        arms = asyncio.run(_arms_for_users(f"{base}/v1", 400))
        again = asyncio.run(_arms_for_users(f"{base}/v1", 40))  # the same users again: the same arms
    finally:
        gw.stop()
    assert set(arms.values()) == {"control", "treatment"}
    assert all(arms[u] == a for u, a in again.items())
    share = sum(a == "treatment" for a in arms.values()) / len(arms)
    assert 0.42 <= share <= 0.58, share  # 3 standard deviations at 400 users


async def _arms_for_users(base_url: str, n: int) -> dict[str, str]:
    sem = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16)
    async with openai.AsyncOpenAI(base_url=base_url, api_key="sk-compat", max_retries=0,
                                  http_client=httpx.AsyncClient(limits=limits, timeout=20)) as c:
        async def one(i: int) -> tuple[str, str]:
            async with sem:
                raw = await c.chat.completions.with_raw_response.create(
                    model="support", messages=[{"role": "user", "content": "hi"}], safety_identifier=f"user-{i:05d}")
                return f"user-{i:05d}", raw.headers["x-abgate-arm"]

        return dict(await asyncio.gather(*(one(i) for i in range(n))))
