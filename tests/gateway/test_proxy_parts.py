"""Unit tests of the gateway's small parts: ids, auth, rate limit, breaker, config errors, rewriting."""

from __future__ import annotations

import hashlib
import json

import msgspec
import pytest

from gateway import config as cfgmod
from gateway.auth import AuthIndex
from gateway.config import ApiKey, Auth
from gateway.errors import ApiError
from gateway.ids import IdSigner, InvalidInteractionId
from gateway.proxy import chat_relay, request
from gateway.proxy.context import Ctx
from gateway.ratelimit import RateLimiter
from gateway.state import load_secrets, rotate_id_key
from gateway.upstream import breaker as breaker_mod
from gateway.upstream.breaker import Breaker

_RAW = msgspec.json.Decoder(dict[str, msgspec.Raw])
FIELDS = dict(tenant="acme", route="support", experiment="e", arm="treatment", phase=2, config_version=7,
              traffic="live")


# -- interaction ids ---------------------------------------------------------------------------

def test_id_roundtrip_carries_attribution() -> None:
    s = IdSigner((("k1", b"x" * 32),))
    token, ref = s.new(**FIELDS)
    got = s.verify(token)
    assert got == ref and got.arm == "treatment" and got.phase == 2 and got.config_version == 7


@pytest.mark.parametrize("mutate", [
    lambda t: t[:-3],  # truncated signature
    lambda t: t.rsplit(".", 1)[0],  # signature missing
    lambda t: t.replace("abg1.", "abg2.", 1),
    lambda t: ".".join([*t.split(".")[:2], t.split(".")[2][:-2] + "AA", t.split(".")[3]]),  # payload altered
    lambda t: "",
])
def test_forged_or_truncated_ids_are_refused(mutate) -> None:
    s = IdSigner((("k1", b"x" * 32),))
    token, _ = s.new(**FIELDS)
    with pytest.raises(InvalidInteractionId):
        s.verify(mutate(token))


def test_id_signed_with_other_key_is_refused() -> None:
    token, _ = IdSigner((("k1", b"a" * 32),)).new(**FIELDS)
    with pytest.raises(InvalidInteractionId, match="does not verify"):
        IdSigner((("k1", b"b" * 32),)).verify(token)


def test_rotated_key_old_ids_verify_during_grace(tmp_path) -> None:
    old = IdSigner(load_secrets(tmp_path).id_keys)
    token, ref = old.new(**FIELDS)
    rotate_id_key(tmp_path, keep=2)
    new = IdSigner(load_secrets(tmp_path).id_keys)
    assert new.verify(token) == ref  # grace period: old key still verifies
    fresh, _ = new.new(**FIELDS)
    assert fresh.split(".")[1] != token.split(".")[1]  # new ids use the new key
    rotate_id_key(tmp_path, keep=1)
    with pytest.raises(InvalidInteractionId, match="unknown or retired"):
        IdSigner(load_secrets(tmp_path).id_keys).verify(token)


# -- auth -------------------------------------------------------------------------------------

def _sha(k: str) -> str:
    return hashlib.sha256(k.encode()).hexdigest()


def test_auth_keys_tenants_routes(monkeypatch) -> None:
    monkeypatch.delenv("ABGATE_ADMIN_TOKEN", raising=False)
    idx = AuthIndex(Auth(keys=(ApiKey(sha256=_sha("k-a"), tenant="acme", routes=("support",)),
                               ApiKey(sha256=_sha("k-admin"), tenant="ops", admin=True))))
    p = idx.client("Bearer k-a")
    assert p.tenant == "acme" and p.may_use("support") and not p.may_use("other")
    with pytest.raises(ApiError) as e:
        idx.client("Bearer nope")
    assert e.value.status == 401
    with pytest.raises(ApiError):
        idx.client(None)
    with pytest.raises(ApiError):
        idx.client("Basic k-a")
    assert not idx.may_pin(p, "Bearer k-a")
    assert idx.may_pin(idx.client("Bearer k-admin"), "Bearer k-admin")
    with pytest.raises(ApiError) as e:  # auth on, no admin token configured: admin disabled
        idx.check_admin("Bearer k-admin")
    assert e.value.status == 403


def test_admin_token(monkeypatch) -> None:
    monkeypatch.setenv("MY_ADMIN", "tok")
    idx = AuthIndex(Auth(admin_token_env="MY_ADMIN"))
    idx.check_admin("Bearer tok")
    for bad in (None, "Bearer tok2", "Bearer to"):
        with pytest.raises(ApiError) as e:
            idx.check_admin(bad)
        assert e.value.status == 401
    assert idx.client("Bearer tok").admin  # the admin token may also call the API (eval pinning)


def test_open_mode(monkeypatch) -> None:
    monkeypatch.delenv("ABGATE_ADMIN_TOKEN", raising=False)
    idx = AuthIndex(None)
    assert idx.client(None).tenant == "default"
    p = idx.client("Bearer anything")
    assert p.tenant == "default" and p.key_hash == _sha("anything")
    idx.check_admin(None)
    monkeypatch.setenv("ABGATE_ADMIN_TOKEN", "t")
    with pytest.raises(ApiError):
        idx.check_admin(None)


# -- rate limit and breaker -------------------------------------------------------------------

def test_token_bucket() -> None:
    now = [0.0]
    rl = RateLimiter(clock=lambda: now[0])
    assert rl.check("k", 2.0, 3) is None
    assert rl.check("k", 2.0, 3) is None
    assert rl.check("k", 2.0, 3) is None
    wait = rl.check("k", 2.0, 3)
    assert wait == pytest.approx(0.5)
    assert RateLimiter.retry_after_header(wait) == b"1"
    now[0] = 0.5
    assert rl.check("k", 2.0, 3) is None
    assert rl.check("other", 2.0, 3) is None  # per key


def test_breaker_opens_and_half_opens(monkeypatch) -> None:
    t = [100.0]
    monkeypatch.setattr(breaker_mod.time, "monotonic", lambda: t[0])
    b = Breaker(threshold=3, cooldown_s=5)
    for _ in range(2):
        b.failure()
    assert b.allow() and b.state == "closed"
    b.failure()
    assert b.state == "open" and not b.allow()
    t[0] += 5.1
    assert b.allow()  # one probe
    assert not b.allow()  # ... only one
    b.failure()
    assert not b.allow()
    t[0] += 5.1
    assert b.allow()
    b.success()
    assert b.state == "closed" and b.allow() and b.allow()


# -- config validation names the field ---------------------------------------------------------

BASE = {
    "routes": {"r": {"experiment": "e", "arms": [{"name": "a", "model": "m", "weight": 0.5},
                                                  {"name": "b", "model": "n", "weight": 0.5}]}},
    "upstreams": {"u": {"base_url": "http://x/v1"}},
}


def _with(path: list, value) -> dict:
    doc = json.loads(json.dumps(BASE))
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(("path", "value", "field"), [
    (["routes", "r", "arms", 1, "weight"], 0.7, "routes.r.arms"),
    (["routes", "r", "arms", 1, "weight"], "x", "routes.r.arms[1].weight"),
    (["routes", "r", "fallback"], "zzz", "routes.r.fallback"),
    (["routes", "r", "hash_attribute"], "cookie", "routes.r.hash_attribute"),
    (["routes", "r", "coverage"], 1.5, "routes.r.coverage"),
    (["upstreams", "u", "base_url"], "ftp://x", "upstreams.u.base_url"),
    (["auth"], {"keys": [{"sha256": "abc", "tenant": "t"}]}, "auth.keys[0].sha256"),
])
def test_config_errors_name_the_field(path, value, field) -> None:
    with pytest.raises(cfgmod.ConfigError) as e:
        cfgmod.validate(_with(path, value))
    assert e.value.field == field


# -- body and stream rewriting --------------------------------------------------------------

def test_ensure_usage_merges_client_stream_options() -> None:
    doc = _RAW.decode(b'{"model":"r","stream":true}')
    assert chat_relay.ensure_usage(doc) is True and bytes(doc["stream_options"]) == b'{"include_usage":true}'
    doc = _RAW.decode(b'{"stream_options":{"x":1}}')
    assert chat_relay.ensure_usage(doc) is True
    assert json.loads(bytes(doc["stream_options"])) == {"x": 1, "include_usage": True}
    doc = _RAW.decode(b'{"stream_options":{"include_usage":true}}')
    assert chat_relay.ensure_usage(doc) is False


def test_rewrite_event_replaces_id_and_strips_injected_usage() -> None:
    ctx = Ctx(t0=0.0, rt=None, comp=None, interaction_id="NEW")  # type: ignore[arg-type]
    rw = chat_relay.ChatStream(ctx, injected=True)
    plain = chat_relay.ChatStream(ctx, injected=False)
    ev = 'data: {"id":"up","choices":[{"index":0,"delta":{"content":"hé"},"finish_reason":null}],"usage":null}'.encode()
    out = rw.rewrite(ev)
    assert json.loads(out[6:]) == {"id": "NEW", "choices": [{"index": 0, "delta": {"content": "hé"},
                                                              "finish_reason": None}]}
    usage = b'data: {"id":"up","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2}}'
    assert rw.rewrite(usage) is None
    assert (ctx.prompt_tokens, ctx.completion_tokens, ctx.parts) == (5, 2, ["hé"])
    kept = plain.rewrite(usage)
    assert json.loads(kept[6:])["usage"]["completion_tokens"] == 2
    assert rw.rewrite(b"data: [DONE]") == b"data: [DONE]"
    assert rw.rewrite(b": keep-alive") == b": keep-alive"
    assert rw.rewrite(b"data: {broken") == b"data: {broken"


def test_parse_rejects_bad_bodies() -> None:
    for body, needle in [(b"{", "not valid JSON"), (b"[]", "JSON object"), (b'{"a":"\xff"}', "UTF-8")]:
        with pytest.raises(ApiError) as e:
            request.parse(body)
        assert e.value.status == 400 and needle in e.value.message
    doc = request.parse(b'{"model":"x","messages":[ 1,  2 ]}')
    assert bytes(doc["messages"]) == b"[ 1,  2 ]"
