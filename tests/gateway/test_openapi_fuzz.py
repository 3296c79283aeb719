"""Fuzz every operation the running gateway publishes in its OpenAPI document (the full
`abgate serve` app: gateway + training admin routes), with and without credentials: random
query strings, path parameters, content types and bodies (random JSON, JSON objects built from the
field names the handlers read, raw bytes). No input may produce a 5xx, every error is
OpenAI-shaped, and the process keeps serving."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.procs import start_gateway, start_simulator

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("reliability_openapi_fuzz")]

ADMIN = "rel-fuzz-admin-5d1"
KEY = "sk-rel-fuzz-tenant"
# names the handlers read from query strings and bodies, so objects reach past the first check
FIELDS = ["model", "messages", "stream", "user", "interaction_id", "metric", "value", "idempotency_key", "arm",
          "route", "weight", "weights", "set", "tenant", "to_version", "expected_version", "reason", "author",
          "decision_id", "dataset_id", "split", "upstream", "validated_only", "min_quality", "rollback", "config",
          "base_model", "suffix", "hyperparameters", "limit"]


def _config(sim: str) -> str:
    return f"""
routes:
  support:
    experiment: support-ft-2
    arms:
      - {{name: control, model: gpt-4o-mini-2024-07-18, weight: 0.5}}
      - {{name: treatment, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: 0.5}}
upstreams:
  sim: {{base_url: "{sim}/v1", timeout_s: 10}}
default_upstream: sim
auth:
  admin_token_env: REL_FUZZ_ADMIN
  keys:
    - {{sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: acme}}
"""


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("relfuzz")
    sim_proc, sim = start_simulator(tmp, "--seed", "3")
    cfg = tmp / "router.yaml"
    cfg.write_text(_config(sim))
    proc = None
    try:
        proc, base = start_gateway(tmp, cfg, tmp / "state", env={"REL_FUZZ_ADMIN": ADMIN})
        with httpx.Client(base_url=base, timeout=15) as client:
            schema = client.get("/schema/openapi.json")
            assert schema.status_code == 200
            found = {(m.upper(), p) for p, item in schema.json()["paths"].items() for m in item
                   if m in ("get", "put", "post", "delete", "patch")}
            found.add(("POST", "/v1/chat/completions"))  # a raw ASGI route: not in the live schema
            ops = sorted(found)
            iid = client.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
                              json={"model": "support", "messages": [{"role": "user", "content": "hi"}]}).json()["id"]
            yield {"client": client, "proc": proc, "ops": ops, "iid": iid, "state": tmp / "state"}
    finally:
        if proc is not None:
            proc.stop()
        sim_proc.stop()


_scalar = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=24)
_json = st.recursive(_scalar, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)


def test_schema_lists_every_area(gw: dict[str, Any]) -> None:
    paths = {p for _, p in gw["ops"]}
    assert {"/v1/models", "/v1/feedback", "/admin/config", "/admin/promote", "/admin/export/jsonl",
            "/admin/fine-tune/create"} <= paths


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_no_operation_answers_5xx(gw: dict[str, Any], data: st.DataObject) -> None:
    c: httpx.Client = gw["client"]
    method, path = data.draw(st.sampled_from(gw["ops"]), label="op")
    known = st.sampled_from(["support", "control", "treatment", gw["iid"], 1, 0.5, 0, 2, "thumbs", "1"])
    params = data.draw(st.lists(st.sampled_from(["", gw["iid"], "support", "control", "1", "-1", "1e309", "null",
                                                 "true", "../..", "%00", "x" * 300]), min_size=1, max_size=1)
                       .map(lambda v: v[0]) | st.text(max_size=40), label="path param")
    url = path
    while "{" in url:
        a, b = url.index("{"), url.index("}")
        url = url[:a] + quote(params, safe="") + url[b + 1:]
    query = data.draw(st.dictionaries(st.sampled_from(FIELDS) | st.text(min_size=1, max_size=6),
                                      (known | _scalar).map(lambda v: v if isinstance(v, str) else json.dumps(v)),
                                      max_size=4), label="query")
    # admin half the time, so admin handlers see the bodies and not only the auth check
    auth = data.draw(st.sampled_from([f"Bearer {ADMIN}"] * 7 + [None, f"Bearer {KEY}", f"Bearer {KEY}", "Bearer sk-wrong",
                                      f"Bearer {ADMIN}x", f"Basic {ADMIN}", "Bearer"]), label="auth")
    headers = {"authorization": auth} if auth is not None else {}
    kind = data.draw(st.sampled_from(["none", "object", "json", "bytes"]), label="body kind")
    content: bytes | None = None
    if kind == "object":
        content = json.dumps(data.draw(st.dictionaries(st.sampled_from(FIELDS), known | _json, max_size=5))).encode()
    elif kind == "json":
        content = json.dumps(data.draw(_json)).encode()
    elif kind == "bytes":
        content = data.draw(st.binary(max_size=120))
    if content is not None:
        headers["content-type"] = data.draw(st.sampled_from(["application/json", "text/plain",
                                                             "application/x-www-form-urlencoded"]))
    r = c.request(method, url, params=query, content=content, headers=headers)
    assert r.status_code < 500, (method, url, query, content, r.status_code, r.text[:500])
    if r.status_code >= 400 and not path.startswith("/readyz"):
        err = r.json()["error"]
        assert isinstance(err["message"], str) and err["message"] and err["type"], (method, url, r.text[:300])


def test_still_serving_after_the_fuzz(gw: dict[str, Any]) -> None:
    c = gw["client"]
    assert gw["proc"].alive()
    r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY}"},
               json={"model": "support", "messages": [{"role": "user", "content": "still there?"}]})
    assert r.status_code == 200, r.text
    assert "Traceback" not in gw["proc"].output()
