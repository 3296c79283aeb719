"""Tenant isolation end to end, and schema fuzzing of /v1/feedback, on one real `abgate serve`.

Two tenants' keys: tenant B must not touch tenant A's interactions, routes or admin
endpoints; arbitrary feedback bodies must never get a 5xx.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.gateway_helpers import archive_events, wait_events
from tests.support.procs import start_gateway, start_simulator

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("reliability_tenants")]

ADMIN = "rel-admin-token-91c"
KEY_A, KEY_B = "sk-rel-tenant-a", "sk-rel-tenant-b"
MSGS = [{"role": "user", "content": "Where is my order?"}]


def _sha(k: str) -> str:
    return hashlib.sha256(k.encode()).hexdigest()


def _config(sim: str) -> str:
    return f"""
routes:
  support:
    experiment: support-ft-2
    hash_attribute: user
    arms:
      - {{name: control, model: gpt-4o-mini-2024-07-18, weight: 0.5}}
      - {{name: treatment, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: 0.5}}
  billing:
    experiment: billing-exp
    arms: [{{name: only, model: gpt-4o-mini-2024-07-18, weight: 1.0}}]
upstreams:
  sim: {{base_url: "{sim}/v1", timeout_s: 10}}
models:
  gpt-4o-mini-2024-07-18: {{upstream: sim}}
  "ft:gpt-4o-mini-2024-07-18:acme:support:abc123": {{upstream: sim}}
auth:
  admin_token_env: REL_TEST_ADMIN
  keys:
    - {{sha256: "{_sha(KEY_A)}", tenant: acme, routes: [billing, support]}}
    - {{sha256: "{_sha(KEY_B)}", tenant: globex, routes: [support]}}
"""


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("reltenants")
    sim_proc, sim = start_simulator(tmp)
    cfg = tmp / "router.yaml"
    cfg.write_text(_config(sim))
    state = tmp / "state"
    proc = None
    try:
        proc, base = start_gateway(tmp, cfg, state, env={"REL_TEST_ADMIN": ADMIN})
        with httpx.Client(base_url=base, timeout=10) as client:
            yield {"client": client, "state": state, "proc": proc}
    finally:
        if proc is not None:
            proc.stop()
        sim_proc.stop()


def _chat(c: httpx.Client, key: str, route: str = "support", user: str = "u1") -> httpx.Response:
    return c.post("/v1/chat/completions", headers=bearer(key), json={"model": route, "user": user, "messages": MSGS})


def _feedback(c: httpx.Client, key: str, iid: str, ikey: str) -> httpx.Response:
    return c.post("/v1/feedback", headers=bearer(key),
                  json={"interaction_id": iid, "metric": "thumbs", "value": 1, "idempotency_key": ikey})


def test_tenant_b_cannot_touch_tenant_a(gw: dict[str, Any]) -> None:
    c, state = gw["client"], gw["state"]
    a = _chat(c, KEY_A)
    assert a.status_code == 200, a.text
    iid_a = a.json()["id"]

    # feedback on A's interaction by B: the same answer as an unknown id, nothing recorded
    r = _feedback(c, KEY_B, iid_a, "b-steals")
    assert r.status_code == 404, r.text
    assert r.json()["error"]["type"] and "not found" in r.json()["error"]["message"]
    assert _feedback(c, KEY_A, iid_a, "a-own").status_code == 200
    fb = wait_events(state, lambda e: e.get("kind") == "feedback" and e.get("interaction_id") == iid_a)
    assert len(fb) == 1 and fb[0]["tenant"] == "acme"

    # A's route is not B's: refused, and B's own route still works
    r = _chat(c, KEY_B, route="billing")
    assert r.status_code in (403, 404), r.text
    assert set(r.json()["error"]) >= {"message", "type", "code"}
    assert _chat(c, KEY_B, route="support").status_code == 200
    assert [m["id"] for m in c.get("/v1/models", headers=bearer(KEY_B)).json()["data"]] == ["support"]

    # no tenant key opens an admin endpoint
    for key in (KEY_A, KEY_B):
        assert c.get("/admin/config", headers=bearer(key)).status_code == 401
        assert c.get("/admin/export/jsonl", params={"tenant": "acme"}, headers=bearer(key)).status_code == 401
    assert c.get("/admin/export/jsonl", params={"tenant": "acme"}).status_code == 401
    r = c.get("/admin/export/jsonl", params={"tenant": "acme"}, headers=bearer(ADMIN))
    assert r.status_code == 200, r.text
    assert r.headers["x-abgate-examples"] == "0"


# --- schema fuzz of /v1/feedback ------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=10,
)
_METRICS = ["thumbs", "csat", "edited_response", "followup", "approved", "policy_violation", "review",
            "quality", "category", "nope"]


def _body(draw_iid: Any, draw_metric: Any, draw_value: Any, extra: dict[str, Any], drop: list[str]) -> dict[str, Any]:
    body: dict[str, Any] = {"interaction_id": draw_iid, "metric": draw_metric, "value": draw_value, **extra}
    for k in drop:
        body.pop(k, None)
    return body


@pytest.fixture(scope="module")
def ids(gw: dict[str, Any]) -> dict[str, str]:
    c = gw["client"]
    own = _chat(c, KEY_A, user="fuzz").json()["id"]
    other = _chat(c, KEY_B, user="fuzz").json()["id"]
    return {"own": own, "other": other, "tampered": own[:-2] + ("AA" if not own.endswith("AA") else "BB")}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_feedback_fuzz_never_5xx(gw: dict[str, Any], ids: dict[str, str], data: st.DataObject) -> None:
    c = gw["client"]
    iid = data.draw(st.sampled_from([ids["own"], ids["other"], ids["tampered"]]) | _json, label="iid")
    metric = data.draw(st.sampled_from(_METRICS) | _json, label="metric")
    value = data.draw(_json, label="value")
    extra = data.draw(st.dictionaries(st.sampled_from(["idempotency_key", "comment", "scores", "reviewer",
                                                       "overall", "tags", "zzz"]), _json, max_size=3), label="extra")
    drop = data.draw(st.lists(st.sampled_from(["interaction_id", "metric", "value"]), max_size=2), label="drop")
    raw = data.draw(st.sampled_from(["json", "json", "json", "bytes"]), label="encoding")
    if raw == "bytes":
        content = data.draw(st.binary(max_size=200), label="bytes")
    else:
        content = json.dumps(_body(iid, metric, value, extra, drop)).encode()
    r = c.post("/v1/feedback", content=content, headers={**bearer(KEY_A), "content-type": "application/json"})
    assert r.status_code < 500, (r.status_code, r.text, content)
    if r.status_code >= 400:
        err = r.json()["error"]
        assert set(err) >= {"message", "type", "code"} and err["message"]


def test_gateway_still_serves_after_fuzz(gw: dict[str, Any], ids: dict[str, str]) -> None:
    c = gw["client"]
    assert c.get("/readyz").status_code == 200
    assert gw["proc"].alive()
    # nothing fuzzed reached the other tenant's interaction
    other = [e for e in archive_events(gw["state"])
             if e.get("kind") == "feedback" and e.get("interaction_id") == ids["other"]]
    assert other == []
