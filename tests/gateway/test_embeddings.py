"""Embeddings and model retrieval through a real gateway, with the openai SDK."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import Live
from tests.support.gateway_helpers import event_for

pytestmark = pytest.mark.integration


def test_embeddings_are_routed_by_route_name(live: Live) -> None:
    client = openai.OpenAI(base_url=f"{live.gw}/v1", api_key="sk", max_retries=0)
    raw = client.embeddings.with_raw_response.create(model="emb", input=["a", "b"], user="e1")
    out = raw.parse()
    assert len(out.data) == 2 and out.data[1].embedding == pytest.approx([0.2, 0.2, -0.3])
    assert out.model in ("text-embedding-3-small", "text-embedding-3-large")
    assert raw.headers["x-abgate-model"] == out.model
    ev = event_for(live.state, raw.headers["x-abgate-interaction-id"])
    assert ev["endpoint"] == "embeddings" and ev["status"] == "ok" and ev["prompt_tokens"] == 8
    assert ev["input"] == ["a", "b"] and ev["route"] == "emb"
    arms = {client.embeddings.with_raw_response.create(model="emb", input="x", user=f"eu{i}").headers["x-abgate-arm"]
            for i in range(20)}
    assert arms == {"small", "large"}


def test_embeddings_bad_input(live: Live) -> None:
    r = live.client.post("/v1/embeddings", json={"model": "emb"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "input"
    r = live.client.post("/v1/embeddings", json={"model": "nope", "input": "x"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_models_retrieve(live: Live) -> None:
    client = openai.OpenAI(base_url=f"{live.gw}/v1", api_key="sk", max_retries=0)
    m = client.models.retrieve("support")
    assert m.id == "support" and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_base_url_without_v1(live: Live) -> None:
    client = openai.OpenAI(base_url=live.gw, api_key="sk", max_retries=0)
    assert client.chat.completions.create(model="support", messages=[{"role": "user", "content": "hi"}],
                                          user="nv").choices[0].message.content.startswith("echo:")
    assert client.responses.create(model="support", input="hi").output_text.startswith("echo:")
    assert client.embeddings.create(model="emb", input="hi").data
    assert {m.id for m in client.models.list()} >= {"support", "emb"}
    assert client.models.retrieve("emb").id == "emb"


def test_cors_preflight_and_answers(live: Live) -> None:
    pre = live.client.options("/v1/chat/completions", headers={
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, x-stainless-os"})
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-stainless-os" in pre.headers["access-control-allow-headers"]
    r = live.client.post("/v1/chat/completions", headers={"origin": "https://app.example"},
                         json={"model": "support", "messages": [{"role": "user", "content": "hi"}]})
    assert r.headers["access-control-allow-origin"] == "https://app.example"
    assert "x-abgate-interaction-id" in r.headers["access-control-expose-headers"]
    other = live.client.options("/v1/chat/completions", headers={
        "origin": "https://evil.example", "access-control-request-method": "POST"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    plain = live.client.get("/v1/models", headers={"origin": "https://evil.example"})
    assert plain.status_code == 200 and "access-control-allow-origin" not in plain.headers
