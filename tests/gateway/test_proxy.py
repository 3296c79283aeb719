"""The chat proxy through a real `abgate serve` process and a real scripted upstream."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import http
from tests.support.gateway_helpers import event_for, upstream_and_gateway, wait_events
from tests.support.procs import free_port

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("gateway_proxy")]

MSGS = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]


def _config(up: str, dead_port: int) -> str:
    return f"""
routes:
  support:
    experiment: support-ft-2
    arms:
      - {{name: control, model: base-model, weight: 0.5}}
      - {{name: treatment, model: "ft:base-model:acme:x", weight: 0.5}}
  hdr:
    experiment: hdr-exp
    hash_attribute: "header:x-team-user"
    arms:
      - {{name: control, model: base-model, weight: 0.5}}
      - {{name: treatment, model: "ft:base-model:acme:x", weight: 0.5}}
  fb:
    experiment: fb-exp
    fallback: control
    arms:
      - {{name: control, model: base-model, weight: 0.0}}
      - {{name: broken, model: status-500-model, weight: 1.0}}
  err5:
    experiment: err5-exp
    arms: [{{name: only, model: status-500-model, weight: 1.0}}]
  err4:
    experiment: err4-exp
    arms: [{{name: only, model: status-400-model, weight: 1.0}}]
  slow:
    experiment: slow-exp
    arms: [{{name: only, model: slow-model, weight: 1.0}}]
  stall:
    experiment: stall-exp
    arms: [{{name: only, model: stall-model, weight: 1.0}}]
  nousage:
    experiment: nousage-exp
    arms: [{{name: only, model: nousage-model, weight: 1.0}}]
  dead:
    experiment: dead-exp
    arms: [{{name: only, model: dead-model, weight: 1.0}}]
  dead2:
    experiment: dead2-exp
    fallback: control
    arms:
      - {{name: control, model: base-model, weight: 0.0}}
      - {{name: gone, model: dead-model, weight: 1.0}}
upstreams:
  up: {{base_url: "{up}/v1", timeout_s: 5}}
  slowup: {{base_url: "{up}/v1", timeout_s: 1}}
  deadup: {{base_url: "http://127.0.0.1:{dead_port}/v1", timeout_s: 1, connect_timeout_s: 0.5}}
default_upstream: up
models:
  base-model: {{input_per_mtok: 1.0, output_per_mtok: 2.0}}
  "ft:base-model:acme:x": {{input_per_mtok: 3.0, output_per_mtok: 4.0}}
  slow-model: {{upstream: slowup}}
  dead-model: {{upstream: deadup}}
limits: {{max_body_bytes: 20000, body_timeout_s: 1}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("gwproxy")
    dead_port = free_port()
    with upstream_and_gateway(tmp, lambda up: _config(up, dead_port)) as live:
        yield {"gw": live.gw, "up": live.up, "state": live.state, "client": live.client, "proc": live.proc}


def chat(client: httpx.Client, route: str, user: str | None = "u1", **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"model": route, "messages": MSGS, **extra}
    if user is not None:
        body["user"] = user
    return client.post("/v1/chat/completions", json=body)


def last_upstream_body(env: dict[str, Any]) -> bytes:
    doc = http.get(f"{env['up']}/_last").json()
    return base64.b64decode(doc["body"])


def test_non_stream_both_arms_headers_and_event(env: dict[str, Any]) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for i in range(40):
        r = chat(env["client"], "support", user=f"user-{i}")
        assert r.status_code == 200, r.text
        arm = r.headers["x-abgate-arm"]
        seen.setdefault(arm, {"r": r, "user": f"user-{i}"})
    assert set(seen) == {"control", "treatment"}
    for arm, item in seen.items():
        r = item["r"]
        body = r.json()
        iid = r.headers["x-abgate-interaction-id"]
        assert body["id"] == iid and iid.startswith("abg1.")
        assert r.headers["x-abgate-route"] == "support"
        assert r.headers["x-abgate-config-version"].isdigit()
        model = "base-model" if arm == "control" else "ft:base-model:acme:x"
        assert r.headers["x-abgate-model"] == model
        assert body["choices"][0]["message"]["content"] == f"echo:{model}"
        assert body["system_fingerprint"] == "fp_x"  # unknown upstream fields pass through
        ev = event_for(env["state"], iid)
        assert ev["status"] == "ok" and ev["http_status"] == 200 and ev["arm"] == arm and ev["model"] == model
        assert ev["route"] == "support" and ev["experiment"] == "support-ft-2" and ev["traffic"] == "live"
        assert ev["prompt_tokens"] == 11 and ev["completion_tokens"] == 3
        price = (1.0, 2.0) if arm == "control" else (3.0, 4.0)
        assert ev["cost_usd"] == pytest.approx((11 * price[0] + 3 * price[1]) / 1e6)
        assert ev["messages"] == MSGS and ev["response"] == f"echo:{model}" and ev["finish_reason"] == "stop"
        assert len(ev["unit"]) == 64 and item["user"] not in json.dumps(ev)  # salted hash, never the raw id
        assert ev["latency_ms"] >= ev["overhead_ms"] >= 0
    # the same user always lands on the same arm
    again = chat(env["client"], "support", user=seen["treatment"]["user"])
    assert again.headers["x-abgate-arm"] == "treatment"


def test_body_forwarded_byte_for_byte_except_model(env: dict[str, Any]) -> None:
    raw = (b'{"model":"support","messages":[{"role":"user","content":"caf\\u00e9 \xe2\x98\x95",  "name" : "x"}],'
           b'"user":"u-bytes","temperature":0.70,"tools":[ {"type":"function","function":{"name":"f","parameters":'
           b'{"type":"object","properties":{}}}} ],"n":1}')
    r = env["client"].post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    model = r.headers["x-abgate-model"]
    sent = last_upstream_body(env)
    expected = raw.replace(b'"model":"support"', b'"model":' + json.dumps(model).encode())
    assert sent == expected


def test_stream_both_arms_ids_rewritten_usage_stripped(env: dict[str, Any]) -> None:
    arms: dict[str, str] = {}
    for i in range(40):
        with env["client"].stream("POST", "/v1/chat/completions",
                                  json={"model": "support", "messages": MSGS, "user": f"s-{i}", "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            iid = r.headers["x-abgate-interaction-id"]
            events = [line for line in r.iter_lines() if line.startswith("data: ")]
        arm = r.headers["x-abgate-arm"]
        if arm in arms:
            continue
        arms[arm] = iid
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e[6:]) for e in events[:-1]]
        assert chunks and all(c["id"] == iid for c in chunks)
        assert all("usage" not in c for c in chunks)  # the client did not ask for usage
        assert all(c["choices"] for c in chunks)  # the usage-only chunk is stripped
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert text == f"echo:{r.headers['x-abgate-model']}"
        sent = json.loads(last_upstream_body(env))
        assert sent["stream_options"] == {"include_usage": True}
        ev = event_for(env["state"], iid)
        assert ev["stream"] is True and ev["status"] == "ok" and ev["response"] == text
        assert ev["prompt_tokens"] == 11 and ev["completion_tokens"] == 3 and ev["ttft_ms"] is not None
        assert ev["finish_reason"] == "stop"
        if len(arms) == 2:
            break
    assert set(arms) == {"control", "treatment"}


def test_stream_usage_kept_when_client_asks(env: dict[str, Any]) -> None:
    with env["client"].stream("POST", "/v1/chat/completions", json={
            "model": "support", "messages": MSGS, "user": "k", "stream": True,
            "stream_options": {"include_usage": True}}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: {")]
    chunks = [json.loads(line[6:]) for line in lines]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 3
    assert all(c["id"] == r.headers["x-abgate-interaction-id"] for c in chunks)


def test_stream_tokens_counted_when_upstream_gives_no_usage(env: dict[str, Any]) -> None:
    with env["client"].stream("POST", "/v1/chat/completions",
                              json={"model": "nousage", "messages": MSGS, "stream": True}) as r:
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in r.iter_lines() if line.startswith("data: {"))
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert text == "echo:nousage-model"
    assert ev["completion_tokens"] is not None and ev["completion_tokens"] > 0
    assert ev["prompt_tokens"] is not None and ev["prompt_tokens"] > 6  # 3 priming + 3 per message + content


def test_upstream_4xx_passed_through(env: dict[str, Any]) -> None:
    r = chat(env["client"], "err4")
    assert r.status_code == 400
    assert r.json() == {"error": {"message": "bad param x", "type": "invalid_request_error", "code": "bad_x",
                                  "param": "x"}}
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert ev["http_status"] == 400 and ev["status"] == "upstream_error"


def test_upstream_5xx_is_502(env: dict[str, Any]) -> None:
    r = chat(env["client"], "err5")
    assert r.status_code == 502
    err = r.json()["error"]
    assert err["type"] == "upstream_error" and err["code"] == "http_500" and "500" in err["message"]
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert ev["status"] == "upstream_error" and ev["http_status"] == 502


def test_timeout_is_504(env: dict[str, Any]) -> None:
    r = chat(env["client"], "slow")
    assert r.status_code == 504
    assert r.json()["error"]["code"] == "timeout"
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert ev["status"] == "timeout" and ev["http_status"] == 504


def test_fallback_arm_retried_once(env: dict[str, Any]) -> None:
    r = chat(env["client"], "fb")
    assert r.status_code == 200, r.text
    assert r.headers["x-abgate-arm"] == "broken"  # the assigned arm (intent to treat)
    assert r.headers["x-abgate-model"] == "base-model"  # ... answered by the fallback arm
    assert r.json()["choices"][0]["message"]["content"] == "echo:base-model"
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert ev["fallback_from"] == "broken" and ev["model"] == "base-model" and ev["status"] == "ok"
    metrics = env["client"].get("/metrics").text
    assert 'abgate_fallbacks_total{route="fb"} 1.0' in metrics
    with env["client"].stream("POST", "/v1/chat/completions",
                              json={"model": "fb", "messages": MSGS, "stream": True, "user": "u9"}) as sr:
        assert sr.status_code == 200 and sr.headers.get("x-abgate-fallback-from") == "broken", sr.headers
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in sr.iter_lines() if line.startswith("data: {"))
    assert text == "echo:base-model"


def test_connection_refused_502_then_circuit_opens_and_fallback_serves(env: dict[str, Any]) -> None:
    codes = [chat(env["client"], "dead").json()["error"]["code"] for _ in range(7)]
    assert codes[0] == "connection"
    assert codes[-1] == "circuit_open"  # after 5 consecutive failures the upstream is not tried
    r = chat(env["client"], "dead2")  # same dead upstream, but with a fallback arm
    assert r.status_code == 200 and r.headers["x-abgate-model"] == "base-model"


def test_client_disconnect_mid_stream_cancels_upstream(env: dict[str, Any]) -> None:
    before = http.get(f"{env['up']}/_cancelled").json()["cancelled"]
    with env["client"].stream("POST", "/v1/chat/completions",
                              json={"model": "stall", "messages": MSGS, "stream": True}) as r:
        iid = r.headers["x-abgate-interaction-id"]
        for line in r.iter_lines():
            if line.startswith("data: "):
                break  # got the first chunk; now hang up
    ev = event_for(env["state"], iid)
    assert ev["status"] == "client_closed" and ev["http_status"] == 499
    cancelled = False
    for _ in range(100):
        if http.get(f"{env['up']}/_cancelled").json()["cancelled"] > before:
            cancelled = True
            break
        time.sleep(0.05)
    assert cancelled, "upstream request was not cancelled"


def test_client_giving_up_on_a_slow_answer_is_client_closed(env: dict[str, Any]) -> None:
    with pytest.raises(httpx.ReadTimeout):
        env["client"].post("/v1/chat/completions", json={"model": "slow", "messages": MSGS, "user": "gives-up"},
                           timeout=0.6)
    evs = wait_events(env["state"], lambda e: e.get("kind") == "interaction" and e.get("route") == "slow"
                      and e.get("status") == "client_closed")
    assert evs[0]["http_status"] == 499  # not "timeout": the upstream wait was cancelled when the client left


def test_unknown_route_404_and_models_list(env: dict[str, Any]) -> None:
    r = chat(env["client"], "nope")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "model_not_found" and r.json()["error"]["param"] == "model"
    models = env["client"].get("/v1/models").json()
    assert models["object"] == "list" and {"support", "fb", "err5"} <= {m["id"] for m in models["data"]}


@pytest.mark.parametrize(
    ("content", "ctype", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b"[1,2]", "application/json", 400, "invalid_json"),
        (b'{"model":"support","messages":[{"role":"user","content":"\xff\xfe"}]}', "application/json", 400,
         "invalid_json"),
        (b'{"model":"support"}', "application/json", 400, "invalid_request"),
        (b'{"model":"support","messages":"hi"}', "application/json", 400, "invalid_request"),
        (b'{"model":"support","messages":[{"content":"x"}]}', "application/json", 400, "invalid_request"),
        (b'{"model":5,"messages":[]}', "application/json", 400, "invalid_request"),
        (b"model=support", "application/x-www-form-urlencoded", 400, "invalid_content_type"),  # curl -d, not JSON
        (b'{"model":"support","messages":[]}', "application/xml", 400, "invalid_content_type"),
        (b'{"model":"support","messages":[{"role":"user","content":"' + b"x" * 30000 + b'"}]}', "application/json",
         413, "request_too_large"),
    ],
)
def test_bad_input_is_rejected_with_openai_errors(env: dict[str, Any], content: bytes, ctype: str, status: int,
                                                  code: str) -> None:
    r = env["client"].post("/v1/chat/completions", content=content, headers={"content-type": ctype})
    assert r.status_code == status
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"]
    assert chat(env["client"], "support").status_code == 200  # still serving


def test_rejected_requests_are_logged_as_events(env: dict[str, Any]) -> None:
    r = env["client"].post("/v1/chat/completions", content=b"{oops", headers={"content-type": "application/json"})
    assert r.status_code == 400
    evs = wait_events(env["state"], lambda e: e.get("kind") == "interaction" and e.get("status") == "rejected"
                      and e.get("http_status") == 400 and "not valid JSON" in (e.get("error") or ""))
    assert evs[0]["route"] is None


def test_header_hash_attribute_and_anonymous(env: dict[str, Any]) -> None:
    arms = set()
    for i in range(30):
        r = env["client"].post("/v1/chat/completions", json={"model": "hdr", "messages": MSGS},
                               headers={"x-team-user": f"t{i}"})
        arms.add(r.headers["x-abgate-arm"])
    assert arms == {"control", "treatment"}
    r = chat(env["client"], "support", user=None)  # no user: control, anonymous
    assert r.headers["x-abgate-arm"] == "control"
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert ev["unit"] is None


def test_pinned_arm_is_eval_traffic(env: dict[str, Any]) -> None:
    r = env["client"].post("/v1/chat/completions", json={"model": "support", "messages": MSGS, "user": "p"},
                           headers={"x-abgate-arm": "treatment"})
    assert r.status_code == 200 and r.headers["x-abgate-arm"] == "treatment"
    ev = event_for(env["state"], r.headers["x-abgate-interaction-id"])
    assert ev["traffic"] == "eval"
    bad = env["client"].post("/v1/chat/completions", json={"model": "support", "messages": MSGS},
                             headers={"x-abgate-arm": "nosuch"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "unknown_arm"


def _raw_request(gw: str, data: bytes, pause_after: float = 0.0, rest: bytes = b"") -> bytes:
    host, port = gw.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=20) as s:
        s.sendall(data)
        if pause_after:
            time.sleep(pause_after)
            try:
                s.sendall(rest)
            except OSError:
                pass
        out = b""
        while b"\r\n\r\n" not in out or not out.rstrip().endswith(b"}"):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out


def test_slow_body_is_cut_off_with_408(env: dict[str, Any]) -> None:
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 200\r\n\r\n")
    out = _raw_request(env["gw"], head + b'{"model":"support",', pause_after=2.5, rest=b"x")
    assert out.startswith(b"HTTP/1.1 408"), out[:200]
    assert b'"code":"body_timeout"' in out
    assert chat(env["client"], "support").status_code == 200


def test_huge_headers_refused_with_431(env: dict[str, Any]) -> None:
    # past the server's --max-header-bytes (80 KiB): refused while reading, before the app
    r = env["client"].post("/v1/chat/completions", json={"model": "support", "messages": MSGS},
                           headers={"x-big": "a" * 100_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    # past the proxy's 64 KiB of headers but inside the server's cap: a rejected event
    r = env["client"].post("/v1/chat/completions", json={"model": "support", "messages": MSGS},
                           headers={"x-big": "a" * 70_000})
    assert r.status_code == 431 and r.json()["error"]["code"] == "headers_too_large"
    wait_events(env["state"], lambda e: e.get("kind") == "interaction" and e.get("http_status") == 431
                and e.get("status") == "rejected")
    assert env["client"].get("/v1/models", headers={"x-big": "a" * 100_000}).status_code == 431
    assert chat(env["client"], "support").status_code == 200


def test_health_ready_metrics(env: dict[str, Any]) -> None:
    assert env["client"].get("/healthz").status_code == 200
    ready = env["client"].get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["sink_writable"] is True
    text = env["client"].get("/metrics").text
    assert 'abgate_requests_total{arm="control",model="base-model",route="support",status="ok"}' in text
    schema = env["client"].get("/schema/openapi.json")
    assert schema.status_code == 200 and "/v1/models" in schema.json()["paths"]


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_bodies = st.one_of(
    st.binary(max_size=200),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {"model": st.sampled_from(["support", "fb", "nope", ""]) | _json_values},
        optional={"messages": _json_values | st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system"]) | _json_values}, optional={"content": _json_values}),
            max_size=3),
                  "stream": _json_values, "user": _json_values, "stream_options": _json_values},
    ).map(lambda d: json.dumps(d).encode()),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(body=_bodies, ctype=st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8"]))
def test_fuzzed_bodies_never_get_a_5xx(env: dict[str, Any], body: bytes, ctype: str) -> None:
    r = env["client"].post("/v1/chat/completions", content=body, headers={"content-type": ctype})
    assert r.status_code < 500, (body, r.status_code, r.text)
    if r.status_code >= 400:
        err = r.json()["error"]
        assert err["message"] and err["type"] and err["code"]


def test_client_leaving_mid_body_is_recorded_and_harmless(env: dict[str, Any]) -> None:
    host, port = env["gw"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 500\r\n\r\n" + b'{"model":"support",')
        time.sleep(0.2)
    wait_events(env["state"], lambda e: e.get("kind") == "interaction" and e.get("status") == "client_closed"
                and "before sending its body" in (e.get("error") or ""))
    assert chat(env["client"], "support").status_code == 200
