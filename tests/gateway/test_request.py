"""Reading requests: lenient content types, gzip bodies, ambiguous Authorization, unit ids,
and unauthenticated junk kept out of the event log (in-process, MockTransport upstream)."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import msgspec
import pytest

from gateway import config as cfgmod
from gateway.errors import ApiError
from gateway.proxy import handler, record
from gateway.proxy.request import Headers, parse, read_body
from gateway.ratelimit import RateLimiter
from gateway.upstream import MockResponse, UpstreamRequest
from tests.gateway.harness import CONFIG, gateway, json_response

pytestmark = pytest.mark.anyio
MSGS = [{"role": "user", "content": "hi"}]
BODY = json.dumps({"model": "support", "messages": MSGS, "user": "u1"}).encode()


def _echo(name: str, req: UpstreamRequest) -> MockResponse:
    body = json.loads(req.body or b"{}")
    return json_response({"id": "up", "object": "chat.completion", "model": body["model"],
                          "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"},
                                       "finish_reason": "stop"}]})


@pytest.mark.parametrize("ctype", [None, "application/x-www-form-urlencoded", "text/plain;charset=UTF-8"])
async def test_json_bodies_without_a_json_content_type_are_accepted(tmp_path: Path, ctype: str | None) -> None:
    async with gateway(tmp_path, _echo) as gw:
        headers = {"content-type": ctype} if ctype else {}
        r = await gw.client.post("/v1/chat/completions", content=BODY, headers=headers)
        assert r.status_code == 200, r.text


async def test_gzip_bodies_are_inflated_within_the_size_cap(tmp_path: Path) -> None:
    async with gateway(tmp_path, _echo) as gw:
        r = await gw.client.post("/v1/chat/completions", content=gzip.compress(BODY),
                                 headers={"content-type": "application/json", "content-encoding": "gzip"})
        assert r.status_code == 200, r.text
        assert json.loads(gw.transports["up"].requests[-1].body or b"")["messages"] == MSGS
        bomb = gzip.compress(b'{"model":"support","messages":[{"role":"user","content":"' + b"a" * 5_000_000 + b'"}]}')
        assert len(bomb) < 20_000
        r = await gw.client.post("/v1/chat/completions", content=bomb, headers={"content-encoding": "gzip"})
        assert r.status_code == 413 and "decompressed" in r.json()["error"]["message"]
        r = await gw.client.post("/v1/chat/completions", content=b"not gzip", headers={"content-encoding": "gzip"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_content_encoding"
        r = await gw.client.post("/v1/chat/completions", content=BODY, headers={"content-encoding": "br"})
        assert r.status_code == 415
        r = await gw.client.post("/v1/chat/completions", content=gzip.compress(BODY))  # encoding not declared
        assert r.status_code == 400 and "Content-Encoding: gzip" in r.json()["error"]["message"]


async def test_two_authorization_headers_are_refused(tmp_path: Path) -> None:
    async with gateway(tmp_path, _echo) as gw:
        r = await gw.client.post("/v1/chat/completions", content=BODY,
                                 headers=[("authorization", "Bearer a"), ("authorization", "Bearer b")])
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("multiple Authorization headers")
        assert gw.transports["up"].requests == []


async def test_safety_identifier_and_prompt_cache_key_are_unit_ids(tmp_path: Path) -> None:
    sid_route = """  sid:
    experiment: sid-exp
    hash_attribute: safety_identifier
    arms:
      - {name: control, model: base-model, weight: 0.5}
      - {name: treatment, model: ft-model, weight: 0.5}
"""
    config = CONFIG.replace("\nupstreams:", "\n" + sid_route + "upstreams:", 1)
    async with gateway(tmp_path, _echo, config=config) as gw:
        arms = []
        for i in range(2000):
            r = await gw.client.post("/v1/chat/completions",
                                     json={"model": "sid", "messages": MSGS, "safety_identifier": f"user-{i}"})
            arms.append(r.headers["x-abgate-arm"])
        share = arms.count("treatment") / len(arms)
        assert 0.46 <= share <= 0.54, share
        evs = gw.interactions()
        assert all(e["unit"] is not None for e in evs)
        # the default (`user`) order: safety_identifier > user > prompt_cache_key
        salt = gw.rt.secrets.unit_salt
        for body, value in [({"safety_identifier": "s", "user": "u", "prompt_cache_key": "p"}, "s"),
                            ({"user": "u", "prompt_cache_key": "p"}, "u"), ({"prompt_cache_key": "p"}, "p")]:
            r = await gw.client.post("/v1/chat/completions", json={"model": "support", "messages": MSGS, **body})
            ev = gw.event_for(r.headers["x-abgate-interaction-id"])
            assert ev["unit"] == hashlib.sha256(salt + value.encode()).hexdigest()
        r = await gw.client.post("/v1/chat/completions", json={"model": "sid", "messages": MSGS, "user": "u"})
        assert gw.event_for(r.headers["x-abgate-interaction-id"])["unit"] is None  # sid route reads only its field


def test_config_accepts_the_new_hash_attributes() -> None:
    base = {"routes": {"r": {"experiment": "e", "arms": [{"name": "a", "model": "m", "weight": 1.0}]}},
            "upstreams": {"u": {"base_url": "http://x/v1"}}}
    for attr in ("safety_identifier", "prompt_cache_key"):
        base["routes"]["r"]["hash_attribute"] = attr  # type: ignore[index]
        assert cfgmod.validate(base).routes["r"].hash_attribute == attr
    base["routes"]["r"]["hash_attribute"] = "cookie"  # type: ignore[index]
    with pytest.raises(cfgmod.ConfigError, match="safety_identifier"):
        cfgmod.validate(base)


AUTH_CONFIG = CONFIG + f"""
auth:
  keys:
    - {{sha256: "{hashlib.sha256(b'sk-good').hexdigest()}", tenant: acme}}
"""


async def test_unauthenticated_junk_is_counted_sampled_and_limited(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(record, "unauth_sampler", record._Sampler())
    # a frozen clock: the bucket never refills mid-test, however slow the machine is
    monkeypatch.setattr(handler, "unauth_limiter", RateLimiter(clock=lambda: 0.0))
    async with gateway(tmp_path, _echo, config=AUTH_CONFIG) as gw:
        statuses = []
        for i in range(60):
            r = await gw.client.post("/v1/chat/completions", content=BODY, headers={"authorization": f"Bearer bad{i}"})
            statuses.append(r.status_code)
        # a burst of 40 unauthenticated requests per address, then 429 with a retry-after
        assert statuses[:40] == [401] * 40 and set(statuses[40:]) == {429}
        assert r.headers["retry-after"]
        ok = await gw.client.post("/v1/chat/completions", content=BODY, headers={"authorization": "Bearer sk-good"})
        assert ok.status_code == 200  # keyed traffic from the same address is not limited
        evs = gw.interactions()
        rejected = [e for e in evs if e["status"] == "rejected"]
        assert len(rejected) == 1  # 1 in UNAUTH_SAMPLE_EVERY of the 60 is written
        assert [e["status"] for e in evs if e["status"] == "ok"] == ["ok"]
        text = gw.rt.metrics.render()[0].decode()
        assert 'status="rejected"' in text


async def test_body_reading_directly() -> None:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": gzip.compress(b'{"a":1}'), "more_body": False}

    h = Headers([(b"content-encoding", b"gzip")])
    assert parse(await read_body(receive, h, 100, 1.0)) == {"a": msgspec.Raw(b"1")}
    with pytest.raises(ApiError) as e:
        await read_body(receive, h, 3, 1.0)
    assert e.value.status == 413
