"""The Responses API through a real gateway process, driven by the real openai SDK."""

from __future__ import annotations

import base64
import json

import openai
import pytest

from tests.gateway.conftest import Live
from tests.support import http
from tests.support.gateway_helpers import event_for

pytestmark = pytest.mark.integration


def _sdk(live: Live) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.gw}/v1", api_key="sk-client", max_retries=0)


def _upstream_last(live: Live) -> dict:
    doc = http.get(f"{live.up}/_last").json()
    return json.loads(base64.b64decode(doc["body"])) if doc.get("body") else doc


def test_non_stream_id_is_the_interaction_id_and_the_event_has_items(live: Live) -> None:
    client = _sdk(live)
    raw = client.responses.with_raw_response.create(model="support", input="What is 2+2?", instructions="be brief",
                                                    user="alice")
    r = raw.parse()
    iid = raw.headers["x-abgate-interaction-id"]
    assert r.id == iid and iid.startswith("abg1.")
    assert r.output_text.startswith("echo:") and r.usage.output_tokens == 4
    assert raw.headers["x-abgate-route"] == "support" and raw.headers["x-abgate-arm"] in ("control", "treatment")
    assert r._request_id.startswith("req_up_")  # upstream x-request-id reaches the SDK
    ev = event_for(live.state, iid)
    assert ev["endpoint"] == "responses" and ev["status"] == "ok" and ev["route"] == "support"
    assert ev["input"] == "What is 2+2?" and ev["instructions"] == "be brief"
    assert ev["output"][0]["type"] == "message" and ev["response"] == r.output_text
    assert ev["upstream_id"].startswith("resp_up") and ev["prompt_tokens"] == 9 and ev["completion_tokens"] == 4
    assert ev["finish_reason"] == "stop" and ev["unit"] is not None and ev["model"] in ("base-model", "ft-model")


def test_chaining_maps_back_to_the_upstream_id_and_keeps_the_arm(live: Live) -> None:
    client = _sdk(live)
    first = client.responses.with_raw_response.create(model="support", input="hi", user="bob")
    r1 = first.parse()
    arm = first.headers["x-abgate-arm"]
    up1 = event_for(live.state, r1.id)["upstream_id"]
    r2 = client.responses.with_raw_response.create(model="support", input=[{"role": "user", "content": "again"}],
                                                   previous_response_id=r1.id, user="bob")
    assert _upstream_last(live)["previous_response_id"] == up1  # the upstream saw its own id
    assert r2.parse().output_text.endswith("turn 2") and r2.headers["x-abgate-arm"] == arm
    # a different user continuing bob's conversation stays on bob's arm too
    others = [client.responses.with_raw_response.create(model="support", input="x", previous_response_id=r1.id,
                                                        user=f"other-{i}") for i in range(6)]
    assert {o.headers["x-abgate-arm"] for o in others} == {arm}
    ev = event_for(live.state, r2.parse().id)
    assert ev["previous_response_id"] == r1.id and ev["input"] == [{"role": "user", "content": "again"}]


def test_stream_rewrites_every_response_id_and_records_the_output(live: Live) -> None:
    client = _sdk(live)
    events = list(client.responses.create(model="support", input="stream please", user="carol", stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    ids = {e.response.id for e in events if hasattr(e, "response")}
    assert len(ids) == 1
    iid = ids.pop()
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-1].response.output_text == text
    ev = event_for(live.state, iid)
    assert ev["stream"] is True and ev["status"] == "ok" and ev["response"] == text
    assert ev["output"][0]["content"][0]["text"] == text and ev["completion_tokens"] == 4 and ev["ttft_ms"] > 0
    # the streamed response chains like any other
    nxt = client.responses.create(model="support", input="more", previous_response_id=iid, user="carol")
    assert nxt.output_text.endswith("turn 2")


def test_retrieve_by_the_gateway_id(live: Live) -> None:
    client = _sdk(live)
    r = client.responses.create(model="support", input="keep me", user="dave")
    got = client.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    assert client.with_options().responses.with_raw_response.retrieve(r.id).headers["x-request-id"]


def test_tool_calls_are_recorded(live: Live) -> None:
    client = _sdk(live)
    tools = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {}}}]
    r = client.responses.create(model="support", input="weather?", tools=tools, user="erin")
    call = r.output[0]
    assert call.type == "function_call" and call.name == "get_weather"
    ev = event_for(live.state, r.id)
    assert ev["tool_calls"] == [{"id": call.call_id, "type": "function",
                                 "function": {"name": "get_weather", "arguments": call.arguments}}]
    assert ev["finish_reason"] == "tool_calls"


@pytest.mark.parametrize(("prev", "status", "code"), [
    ("abg1.nope.xx.yy", 400, "invalid_response_id"),
    ("resp_upstream_raw", 400, "invalid_response_id"),
])
def test_bad_previous_response_ids_are_refused(live: Live, prev: str, status: int, code: str) -> None:
    r = live.client.post("/v1/responses", json={"model": "support", "input": "x", "previous_response_id": prev})
    assert r.status_code == status and r.json()["error"]["code"] == code
    assert r.json()["error"]["param"] == "previous_response_id"


def test_a_chat_interaction_id_is_not_a_response(live: Live) -> None:
    chat = live.client.post("/v1/chat/completions", json={"model": "support", "messages": [
        {"role": "user", "content": "hi"}], "user": "u"})
    r = live.client.post("/v1/responses", json={"model": "support", "input": "x",
                                                "previous_response_id": chat.json()["id"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "response_not_found"
    g = live.client.get(f"/v1/responses/{chat.json()['id']}")
    assert g.status_code == 404


def test_feedback_on_a_response_id(live: Live) -> None:
    r = _sdk(live).responses.create(model="support", input="rate me", user="fay")
    fb = live.client.post("/v1/feedback", json={"interaction_id": r.id, "metric": "thumbs", "value": 1})
    assert fb.status_code in (200, 201), fb.text
    ev = event_for(live.state, r.id)
    assert ev["arm"] in ("control", "treatment")
