"""The upstream seam: the proxy driven in-process against MockTransports (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.upstream import Breaker, MockResponse, UpstreamConnectionError, UpstreamRequest
from tests.gateway.harness import gateway, json_response, sse_response

pytestmark = pytest.mark.anyio
MSGS = [{"role": "user", "content": "hi"}]
KEY = "sk-upstream-secret-123456"


def _completion(model: str, content: str = "hello") -> dict[str, object]:
    return {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6}}


def _echo(name: str, req: UpstreamRequest) -> MockResponse:
    body = json.loads(req.body or b"{}")
    return json_response(_completion(body["model"], f"echo:{body['model']}"))


async def test_chat_goes_through_the_transport_with_model_swapped(tmp_path: Path) -> None:
    async with gateway(tmp_path, _echo) as gw:
        r = await gw.client.post("/v1/chat/completions", json={"model": "support", "messages": MSGS, "user": "u1"})
        assert r.status_code == 200, r.text
        iid = r.headers["x-abgate-interaction-id"]
        assert r.json()["id"] == iid
        req = gw.transports["up"].requests[-1]
        assert req.method == "POST" and req.url == "http://up.test/v1/chat/completions" and not req.stream
        sent = json.loads(req.body or b"")
        assert sent["model"] in ("base-model", "ft-model") and sent["messages"] == MSGS and sent["user"] == "u1"
        ev = gw.event_for(iid)
        assert ev["status"] == "ok" and ev["response"] == f"echo:{sent['model']}" and ev["prompt_tokens"] == 5


async def test_timeouts_stay_504_after_the_circuit_opens_and_say_when_to_retry(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(name: str, req: UpstreamRequest) -> MockResponse:
        raise TimeoutError

    async with gateway(tmp_path, slow) as gw:
        rs = [await gw.client.post("/v1/chat/completions", json={"model": "support", "messages": MSGS,
                                                                 "user": f"u{i}"}) for i in range(7)]
        assert [r.status_code for r in rs] == [504] * 7
        codes = [r.json()["error"]["code"] for r in rs]
        assert codes == ["timeout"] * 5 + ["circuit_open"] * 2
        assert "retry-after" not in rs[0].headers
        assert 1 <= int(rs[-1].headers["retry-after"]) <= 5
        assert "timeout" in rs[-1].json()["error"]["message"]
        assert len(gw.transports["up"].requests) == 5  # the open circuit spared the upstream
        ev = gw.event_for(rs[-1].headers["x-abgate-interaction-id"])
        assert ev["status"] == "timeout" and ev["http_status"] == 504


async def test_connection_errors_fall_back_and_the_event_names_both_arms(tmp_path: Path) -> None:
    def handler(name: str, req: UpstreamRequest) -> MockResponse:
        if name == "other":
            raise UpstreamConnectionError("ClientConnectorError")
        return _echo(name, req)

    async with gateway(tmp_path, handler) as gw:
        r = await gw.client.post("/v1/chat/completions", json={"model": "fb", "messages": MSGS, "user": "u1"})
        assert r.status_code == 200 and r.headers["x-abgate-fallback-from"] == "broken"
        ev = gw.event_for(r.headers["x-abgate-interaction-id"])
        assert ev["arm"] == "broken" and ev["fallback_from"] == "broken" and ev["model"] == "base-model"


async def test_reset_mid_stream_ends_with_an_sse_error(tmp_path: Path) -> None:
    chunk = {"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "par"},
                                                                        "finish_reason": None}]}

    def handler(name: str, req: UpstreamRequest) -> MockResponse:
        return sse_response([chunk, UpstreamConnectionError("ClientPayloadError")])

    async with gateway(tmp_path, handler) as gw:
        r = await gw.client.post("/v1/chat/completions",
                                 json={"model": "support", "messages": MSGS, "user": "u1", "stream": True})
        assert r.status_code == 200
        datas = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
        assert datas[0]["choices"][0]["delta"]["content"] == "par"
        assert "connection lost mid-stream" in datas[-1]["error"]["message"]
        ev = gw.event_for(r.headers["x-abgate-interaction-id"])
        assert ev["status"] == "upstream_error" and ev["http_status"] == 502


async def test_upstream_200_echoing_our_key_is_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_UPSTREAM_KEY", KEY)

    def delta(text: str) -> bytes:
        return b"data: " + json.dumps({"id": "x", "choices": [{"index": 0, "delta": {"content": text}}]}).encode() \
            + b"\n\n"

    def handler(name: str, req: UpstreamRequest) -> MockResponse:
        assert req.headers["authorization"] == f"Bearer {KEY}"
        if req.stream:
            whole = delta(f"one event: {KEY}.")
            cut = whole.index(KEY.encode()) + 5  # the key split over two reads of one event
            return sse_response([whole[:cut], whole[cut:], delta(f" two deltas: {KEY[:9]}"), delta(KEY[9:])])
        return json_response(_completion("m", f"your key is {KEY}"))

    async with gateway(tmp_path, handler) as gw:
        r = await gw.client.post("/v1/chat/completions", json={"model": "support", "messages": MSGS, "user": "u1"})
        assert r.status_code == 200 and KEY not in r.text
        assert "[upstream key redacted]" in r.json()["choices"][0]["message"]["content"]
        r = await gw.client.post("/v1/chat/completions",
                                 json={"model": "support", "messages": MSGS, "user": "u1", "stream": True})
        assert r.status_code == 200 and KEY not in r.text.split("two deltas")[0]
        ev = gw.event_for(r.headers["x-abgate-interaction-id"])
        assert ev["response"].startswith("one event: [upstream key redacted].")
        assert ev["response"].endswith("two deltas: [upstream key redacted]")
        assert KEY not in json.dumps(gw.interactions())


def test_breaker_keeps_the_cause_of_the_last_failure() -> None:
    b = Breaker(threshold=2, cooldown_s=30)
    b.failure("timeout", 504, "timeout")
    assert b.allow()
    b.failure("timeout", 504, "timeout")
    assert not b.allow() and b.last_cause == ("timeout", 504, "timeout") and 29 <= b.retry_after_s() <= 30


def test_the_upstream_package_stands_alone() -> None:
    """No hidden cycle: the upstream side never pulls in the runtime or the proxy."""
    import subprocess
    import sys

    code = ("import sys, gateway.upstream, gateway.runtime; "
            "import gateway.upstream as u; "
            "bad = [m for m in ('gateway.proxy', 'gateway.app') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
