"""Headers on every answer (x-request-id, x-ratelimit-*), the rate-limited model switch with
retry-after, and models retrieve — seen by the openai SDK against a simulator process."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from tests.support import http

pytestmark = pytest.mark.integration
MODEL = "gpt-4o-mini-2024-07-18"
ASK: list[Any] = [{"role": "user", "content": "hi"}]
RATE = ("x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens")


@pytest.mark.parametrize(("method", "path", "body"), [
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": ASK}),
    ("POST", "/v1/chat/completions", {"model": MODEL, "messages": ASK, "stream": True}),
    ("POST", "/v1/responses", {"model": MODEL, "input": "hi"}),
    ("POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "hi"}),
    ("GET", "/v1/models", None), ("GET", "/v1/nope", None),
    ("POST", "/v1/chat/completions", {"model": MODEL}),
])
def test_every_answer_has_request_id_and_rate_headers(sim_base: str, method: str, path: str, body: Any) -> None:
    ids = set()
    for _ in range(2):
        r = http.request(method, sim_base + path, json=body)
        assert r.headers["x-request-id"].startswith("req_")
        ids.add(r.headers["x-request-id"])
        for h in RATE:
            assert h in r.headers, h
        assert int(r.headers["x-ratelimit-remaining-requests"]) <= int(r.headers["x-ratelimit-limit-requests"])
        assert r.headers["x-ratelimit-reset-requests"].endswith("s")
        assert int(r.headers["openai-processing-ms"]) >= 0
    assert len(ids) == 2


def test_sdk_sees_request_id(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=ASK)
    assert raw.parse()._request_id == raw.headers["x-request-id"]


def test_rate_limited_model_answers_429_with_retry_after(client: openai.OpenAI, sim_base: str) -> None:
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="sim-rate-limited", messages=ASK)
    assert err.value.response.headers["retry-after"] == "1"
    assert err.value.request_id and err.value.code == "rate_limit_exceeded"
    assert err.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    r = http.post(f"{sim_base}/v1/responses", json={"model": "gpt-rate-limited", "input": "x"},
                   headers={"x-sim-retry-after": "7"})
    assert r.status_code == 429 and r.headers["retry-after"] == "7"


def test_sdk_retries_a_429_then_reports_it(sim_base: str) -> None:
    # max_retries=1: the SDK backs off and tries again; the model is always rate-limited, so both are 429
    seen: list[httpx.Response] = []
    with openai.OpenAI(base_url=f"{sim_base}/v1", api_key="k", max_retries=1,
                       http_client=httpx.Client(event_hooks={"response": [seen.append]})) as c:
        with pytest.raises(openai.RateLimitError):
            c.chat.completions.create(model="sim-rate-limited", messages=ASK, extra_headers={"x-sim-retry-after": "0"})
    assert [r.status_code for r in seen] == [429, 429]


def test_models_retrieve(client: openai.OpenAI) -> None:
    m = client.models.retrieve(MODEL)
    assert m.id == MODEL and m.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_stats_count_the_chat_requests_received(sim_base: str) -> None:
    before = http.get(f"{sim_base}/_stats").json()["chat_requests"]
    for stream in (False, True):
        http.post(f"{sim_base}/v1/chat/completions", json={"model": MODEL, "messages": ASK, "stream": stream})
    http.post(f"{sim_base}/v1/embeddings", json={"model": "text-embedding-3-small", "input": "hi"})
    assert http.get(f"{sim_base}/v1/_stats").json()["chat_requests"] == before + 2
