"""Upstream headers reach the client (never hop-by-hop ones or secrets); 429 back-off works."""

from __future__ import annotations

import openai
import pytest

from tests.gateway.conftest import UPSTREAM_KEY, Live
from tests.support.gateway_helpers import event_for

pytestmark = pytest.mark.integration
MSGS = [{"role": "user", "content": "hi"}]


def test_request_id_rate_limit_and_processing_headers_pass_secrets_do_not(live: Live) -> None:
    r = live.client.post("/v1/chat/completions", json={"model": "support", "messages": MSGS, "user": "h1"})
    assert r.status_code == 200
    assert r.headers["x-request-id"].startswith("req_up_") and r.headers["openai-processing-ms"] == "7"
    assert r.headers["x-ratelimit-remaining-requests"] == "499" and r.headers["x-ratelimit-limit-requests"] == "500"
    assert "set-cookie" not in r.headers and "openai-organization" not in r.headers
    with live.client.stream("POST", "/v1/chat/completions",
                            json={"model": "support", "messages": MSGS, "user": "h1", "stream": True}) as s:
        assert s.headers["x-request-id"].startswith("req_up_") and "set-cookie" not in s.headers
        s.read()


def test_sdk_sees_request_id_and_honours_retry_after(live: Live) -> None:
    client = openai.OpenAI(base_url=f"{live.gw}/v1", api_key="sk", max_retries=0)
    c = client.chat.completions.create(model="support", messages=MSGS, user="h2")
    assert c._request_id and c._request_id.startswith("req_up_")
    with pytest.raises(openai.RateLimitError) as err:
        client.chat.completions.create(model="limited", messages=MSGS, user="h2")
    assert err.value.response.headers["retry-after"] == "1"
    assert err.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.value.request_id and err.value.request_id.startswith("req_up_")
    iid = err.value.response.headers["x-abgate-interaction-id"]
    ev = event_for(live.state, iid)
    assert ev["status"] == "upstream_error" and ev["http_status"] == 429


def test_an_upstream_200_echoing_the_key_is_scrubbed_before_relay_and_archive(live: Live) -> None:
    for body in ({"model": "leak", "messages": MSGS}, {"model": "leak", "messages": MSGS, "stream": True}):
        r = live.client.post("/v1/chat/completions", json=body)
        assert r.status_code == 200 and UPSTREAM_KEY not in r.text and "[upstream key redacted]" in r.text
        ev = event_for(live.state, r.headers["x-abgate-interaction-id"])
        assert UPSTREAM_KEY not in str(ev)
    r = live.client.post("/v1/responses", json={"model": "leak", "input": "x"})
    assert r.status_code == 200 and UPSTREAM_KEY not in r.text
