"""Runner behaviour against a mocked OpenAI API (respx): retries, backoff, pinning, failures."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import respx

from evaluation.offline.dataset import EvalExample
from evaluation.offline.runner import RateLimiter, RunSettings, Target, run_all

BASE = "http://up.test/v1"


def examples(n: int) -> list[EvalExample]:
    return [EvalExample(id=f"e{i}", line=i + 1, prompt=({"role": "user", "content": f"q{i}"},), reference="r",
                        category="c") for i in range(n)]


def completion(content: str, model: str = "m") -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}


FAST = RunSettings(concurrency=2, retries=3, backoff_s=0.001)


@respx.mock
def test_retries_429_and_5xx_then_succeeds() -> None:
    calls: dict[str, int] = {}

    def reply(request: httpx.Request) -> httpx.Response:
        q = json.loads(request.content)["messages"][0]["content"]
        calls[q] = calls.get(q, 0) + 1
        if q == "q0" and calls[q] == 1:
            return httpx.Response(429, headers={"retry-after-ms": "5"}, json={"error": {"message": "slow down"}})
        if q == "q1" and calls[q] <= 2:
            return httpx.Response(503, json={"error": {"message": "overloaded"}})
        return httpx.Response(200, json=completion(f"answer {q}"))

    respx.post(f"{BASE}/chat/completions").mock(side_effect=reply)
    seen: list[str] = []
    out = asyncio.run(run_all(examples(3), Target(BASE, "m", extra_body={"temperature": 0}), FAST,
                              on_result=lambda r: seen.append(r.id)))
    assert [r.id for r in out] == ["e0", "e1", "e2"] and sorted(seen) == ["e0", "e1", "e2"]
    assert all(r.ok for r in out)
    assert [r.attempts for r in out] == [2, 3, 1]
    assert out[0].output == "answer q0" and out[0].prompt_tokens == 3 and out[0].latency_ms is not None
    assert calls == {"q0": 2, "q1": 3, "q2": 1}


@respx.mock
def test_client_errors_are_not_retried_and_exhausted_retries_fail() -> None:
    def reply(request: httpx.Request) -> httpx.Response:
        q = json.loads(request.content)["messages"][0]["content"]
        if q == "q0":
            return httpx.Response(400, json={"error": {"message": "context too long", "type": "invalid_request_error"}})
        return httpx.Response(500, json={"error": {"message": "boom"}})

    route = respx.post(f"{BASE}/chat/completions").mock(side_effect=reply)
    out = asyncio.run(run_all(examples(2), Target(BASE, "m"), RunSettings(concurrency=1, retries=2, backoff_s=0.001)))
    assert not out[0].ok and out[0].attempts == 1 and out[0].http_status == 400
    assert out[0].error == "HTTP 400: context too long"
    assert not out[1].ok and out[1].attempts == 3 and out[1].error == "HTTP 500: boom"
    assert route.call_count == 4


@respx.mock
def test_connection_errors_are_retried() -> None:
    route = respx.post(f"{BASE}/chat/completions").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(200, json=completion("ok"))])
    [r] = asyncio.run(run_all(examples(1), Target(BASE, "m"), FAST))
    assert r.ok and r.attempts == 2 and route.call_count == 2


@respx.mock
def test_gateway_mode_pins_the_arm_with_the_admin_token() -> None:
    got: list[httpx.Request] = []

    def reply(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(200, json=completion("hi", model="ft:x"),
                              headers={"x-abgate-model": "ft:x", "x-abgate-arm": "treatment",
                                       "x-abgate-interaction-id": "tok123"})

    respx.post("http://gw.test/v1/chat/completions").mock(side_effect=reply)
    t = Target("http://gw.test/v1", "support", api_key="admintok", arm="treatment", via_gateway=True)
    [r] = asyncio.run(run_all(examples(1), t, FAST))
    req = got[0]
    assert req.headers["x-abgate-arm"] == "treatment" and req.headers["authorization"] == "Bearer admintok"
    assert json.loads(req.content)["model"] == "support"
    assert (r.model, r.arm, r.interaction_id) == ("ft:x", "treatment", "tok123")


def test_rate_limiter_spaces_request_starts() -> None:
    """On a virtual clock: five requests at once start 20 ms apart; after a pause, at once again."""
    now = [100.0]
    slept: list[float] = []

    async def sleep(d: float) -> None:
        slept.append(round(d, 9))

    async def go() -> None:
        lim = RateLimiter(50.0, clock=lambda: now[0], sleep=sleep)  # 20 ms apart
        await asyncio.gather(*(lim.wait() for _ in range(5)))
        assert slept == [0.02, 0.04, 0.06, 0.08]
        now[0] += 1.0  # long after the last scheduled start: no wait
        await lim.wait()
        assert len(slept) == 4
        await lim.wait()  # the next one is one interval after that
        assert slept[-1] == 0.02

    asyncio.run(go())


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        asyncio.run(run_all(examples(1), Target(BASE, "m"), RunSettings(concurrency=0)))
