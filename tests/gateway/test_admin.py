"""Auth, rate limits, admin config endpoints and hot reload on a real `abgate serve` process."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import http
from tests.support.gateway_helpers import archive_events, event_for, start_upstream, upstream_and_gateway, wait_events
from tests.support.procs import Proc, abgate_cmd, free_port, poll_until, start_gateway, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("gateway_admin")]

MSGS = [{"role": "user", "content": "hi"}]
ADMIN = "admin-secret-token"
UPSTREAM_KEY = "sk-planted-upstream-key-7f3a9"
KEY_A, KEY_B, KEY_SLOW = "sk-tenant-a", "sk-tenant-b", "sk-tenant-limited"


def _sha(k: str) -> str:
    return hashlib.sha256(k.encode()).hexdigest()


def _config(up: str, weights: tuple[float, float] = (0.5, 0.5), model_b: str = "ft:base-model:acme:x") -> str:
    return f"""
routes:
  support:
    experiment: support-ft-2
    arms:
      - {{name: control, model: base-model, weight: {weights[0]}}}
      - {{name: treatment, model: "{model_b}", weight: {weights[1]}}}
  other:
    experiment: other-exp
    arms: [{{name: only, model: base-model, weight: 1.0}}]
upstreams:
  up: {{base_url: "{up}/v1", timeout_s: 5, api_key_env: UPSTREAM_TEST_KEY}}
auth:
  admin_token_env: GW_TEST_ADMIN
  keys:
    - {{sha256: "{_sha(KEY_A)}", tenant: acme, routes: [support]}}
    - {{sha256: "{_sha(KEY_B)}", tenant: globex}}
    - {{sha256: "{_sha(KEY_SLOW)}", tenant: slowco, rate_limit_rps: 0.5, rate_limit_burst: 2}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with upstream_and_gateway(tmp_path_factory.mktemp("gwadmin"), _config,
                              env={"GW_TEST_ADMIN": ADMIN, "UPSTREAM_TEST_KEY": UPSTREAM_KEY}) as live:
        yield {"gw": live.gw, "up": live.up, "state": live.state, "client": live.client, "cfg": live.cfg,
               "proc": live.proc, "tmp": live.tmp}


def chat(client: httpx.Client, key: str | None, route: str = "support", **headers: str) -> httpx.Response:
    h = dict(headers)
    if key is not None:
        h["authorization"] = f"Bearer {key}"
    return client.post("/v1/chat/completions", json={"model": route, "messages": MSGS, "user": "u1"}, headers=h)


def admin(token: str = ADMIN) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_api_keys_map_to_tenants_and_routes(env: dict[str, Any]) -> None:
    c = env["client"]
    assert chat(c, None).status_code == 401
    bad = chat(c, "sk-wrong")
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_api_key"
    ok = chat(c, KEY_A)
    assert ok.status_code == 200
    assert event_for(env["state"], ok.headers["x-abgate-interaction-id"])["tenant"] == "acme"
    assert chat(c, KEY_A, route="other").status_code == 404  # not one of this key's routes
    assert chat(c, KEY_B, route="other").status_code == 200
    models_a = c.get("/v1/models", headers={"authorization": f"Bearer {KEY_A}"}).json()
    assert [m["id"] for m in models_a["data"]] == ["support"]
    models_b = c.get("/v1/models", headers={"authorization": f"Bearer {KEY_B}"}).json()
    assert {m["id"] for m in models_b["data"]} == {"support", "other"}
    assert c.get("/v1/models").status_code == 401


def test_upstream_key_sent_upstream_but_never_logged(env: dict[str, Any]) -> None:
    r = chat(env["client"], KEY_A)
    assert r.status_code == 200
    last = http.get(f"{env['up']}/_last").json()
    assert last["headers"]["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    # the client's own key is not forwarded upstream
    assert KEY_A not in json.dumps(last["headers"])
    wait_events(env["state"], lambda e: e.get("interaction_id") == r.headers["x-abgate-interaction-id"])
    for path in env["state"].rglob("*"):
        if path.is_file():
            assert UPSTREAM_KEY.encode() not in path.read_bytes(), path
    assert UPSTREAM_KEY not in env["proc"].output()
    assert UPSTREAM_KEY not in env["client"].get("/metrics").text


def test_rate_limit_429_with_retry_after(env: dict[str, Any]) -> None:
    codes = [chat(env["client"], KEY_SLOW, route="other") for _ in range(4)]
    assert [r.status_code for r in codes[:2]] == [200, 200]
    limited = codes[2]
    assert limited.status_code == 429
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert int(limited.headers["retry-after"]) >= 1
    assert chat(env["client"], KEY_A).status_code == 200  # other keys unaffected


def test_admin_requires_token(env: dict[str, Any]) -> None:
    c = env["client"]
    assert c.get("/admin/config").status_code == 401
    assert c.get("/admin/config", headers=admin("nope")).status_code == 401
    assert c.get("/admin/config", headers={"authorization": f"Bearer {KEY_A}"}).status_code == 401
    r = c.get("/admin/config", headers=admin())
    assert r.status_code == 200 and "support" in r.json()["config"]["routes"]


def test_pin_needs_admin(env: dict[str, Any]) -> None:
    c = env["client"]
    assert chat(c, KEY_A, **{"x-abgate-arm": "treatment"}).status_code == 403
    r = chat(c, ADMIN, **{"x-abgate-arm": "treatment"})
    assert r.status_code == 200 and r.headers["x-abgate-arm"] == "treatment"


def test_admin_put_promote_rollback_history(env: dict[str, Any]) -> None:
    c = env["client"]
    cur = c.get("/admin/config", headers=admin()).json()
    v = cur["version"]
    # invalid config names the field; the old config keeps serving
    bad = _config(env["up"], weights=(0.7, 0.7))
    r = c.put(f"/admin/config?expected_version={v}", content=bad, headers=admin())
    assert r.status_code == 400 and "routes.support.arms" in r.json()["error"]["message"]
    # stale expected_version -> 409
    r = c.put(f"/admin/config?expected_version={v - 1 if v > 1 else v + 5}", content=_config(env["up"]),
              headers=admin())
    assert r.status_code == 409
    # promote with a decision id
    r = c.post("/admin/promote", json={"route": "support", "arm": "treatment", "weight": 0.8, "decision_id": "dec-1"},
               headers=admin())
    assert r.status_code == 200, r.text
    promoted = r.json()["version"]
    assert promoted == v + 1
    now = c.get("/admin/config", headers=admin()).json()
    arms = {a["name"]: a["weight"] for a in now["config"]["routes"]["support"]["arms"]}
    assert arms == pytest.approx({"control": 0.2, "treatment": 0.8})
    assert now["config"]["routes"]["support"]["phase"] == cur["config"]["routes"]["support"]["phase"] + 1
    assert chat(c, KEY_A).headers["x-abgate-config-version"] == str(promoted)
    assert c.post("/admin/promote", json={"route": "support", "arm": "treatment"}, headers=admin()).status_code == 400
    # rollback to the version before
    r = c.post("/admin/config/rollback", json={"to_version": v, "reason": "test"}, headers=admin())
    assert r.status_code == 200
    hist = c.get("/admin/config/history", headers=admin()).json()["data"]
    assert [h["action"] for h in hist[-2:]] == ["promote", "rollback"]
    assert hist[-2]["decision_id"] == "dec-1"
    changes = wait_events(env["state"], lambda e: e.get("kind") == "config" and e["config_version"] > v, n=2)
    assert {e["action"] for e in changes} >= {"promote", "rollback"}


def test_hot_reload_file_and_invalid_file_keeps_serving(env: dict[str, Any]) -> None:
    c = env["client"]
    # the loop takes over the route's weights (as promote/rollback/rollout do): a file edit then
    # changes the spec (the treatment's model) and keeps them, whatever weights the file says
    r = c.post("/admin/promote", json={"route": "support", "weights": {"control": 0.4, "treatment": 0.6},
                                       "decision_id": "dec-hot"}, headers=admin())
    assert r.status_code == 200, r.text
    before = int(chat(c, KEY_A).headers["x-abgate-config-version"])
    managed = {a["name"]: a["weight"] for a in
               c.get("/admin/config", headers=admin()).json()["config"]["routes"]["support"]["arms"]}
    assert managed == pytest.approx({"control": 0.4, "treatment": 0.6})
    env["cfg"].write_text(_config(env["up"], weights=(0.0, 1.0), model_b="ft:base-model:acme:y"))
    os.utime(env["cfg"], None)
    poll_until(lambda: int(chat(c, KEY_A).headers["x-abgate-config-version"]) > before, "the edited file served",
               timeout=10, interval=0.1)
    r = chat(c, KEY_A)
    now = c.get("/admin/config", headers=admin()).json()["config"]["routes"]["support"]
    assert {a["name"]: a["weight"] for a in now["arms"]} == managed
    assert now["arms"][1]["model"] == "ft:base-model:acme:y"
    served = int(r.headers["x-abgate-config-version"])
    env["cfg"].write_text(_config(env["up"]).replace("weight: 0.5}", "weight: 0.9}", 1))  # sums to 1.4
    time.sleep(0.1)
    os.utime(env["cfg"], None)
    poll_until(lambda: "config_file_invalid" in env["proc"].output(), "the invalid file reported", timeout=10)
    out = env["proc"].output()
    assert "config_file_invalid" in out and "routes.support.arms" in out
    r = chat(c, KEY_A)
    assert r.status_code == 200 and int(r.headers["x-abgate-config-version"]) == served


def test_serve_refuses_invalid_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("routes:\n  r:\n    experiment: e\n    arms: [{name: a, model: m, weight: 2}]\nupstreams:\n"
                   "  u: {base_url: 'http://127.0.0.1:1/v1'}\n")
    proc = Proc(abgate_cmd("serve", "--config", str(cfg), "--port", str(free_port()), "--state-dir",
                           str(tmp_path / "s")), log=tmp_path / "serve.log").start()
    assert proc.popen is not None
    assert proc.popen.wait(30) == 1
    assert "routes.r.arms[0].weight" in proc.output()


def test_two_workers_share_one_metrics_scrape_and_sigterm_flushes(tmp_path: Path) -> None:
    up_proc, up = start_upstream(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(_config(up).split("auth:")[0])
    state = tmp_path / "state"
    gw_proc = None
    try:
        gw_proc, gw = start_gateway(tmp_path, cfg, state, "--workers", "2")
        ids = []
        with httpx.Client(base_url=gw, timeout=10) as c:
            for i in range(30):
                r = c.post("/v1/chat/completions", json={"model": "support", "messages": MSGS, "user": f"w{i}"})
                assert r.status_code == 200
                ids.append(r.headers["x-abgate-interaction-id"])
            text = c.get("/metrics").text
        total = sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                    if line.startswith("abgate_requests_total{") and 'route="support"' in line and 'status="ok"' in line)
        assert total == 30
        assert gw_proc.stop(sig=signal.SIGTERM, timeout=30) == 0
        gw_proc = None
        got = {e["interaction_id"] for e in archive_events(state) if e.get("kind") == "interaction"}
        assert set(ids) <= got
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()


def test_sigterm_drains_in_flight_requests(tmp_path: Path) -> None:
    up_proc, up = start_upstream(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(_config(up, model_b="slow-model").split("auth:")[0])
    state = tmp_path / "state"
    gw_proc = None
    try:
        gw_proc, gw = start_gateway(tmp_path, cfg, state)
        results: list[httpx.Response] = []

        def slow_call() -> None:
            with httpx.Client(base_url=gw, timeout=20) as c:
                results.append(c.post("/v1/chat/completions", json={"model": "support", "messages": MSGS},
                                      headers={"x-abgate-arm": "treatment"}))  # pinned to the slow model

        t = threading.Thread(target=slow_call)
        t.start()
        poll_until(lambda: http.get(f"{up}/_count").json().get("slow-model", 0) >= 1,
                   "the request to wait on the 3 s upstream")
        # uvicorn re-raises SIGTERM after its graceful shutdown: -15 after a clean drain is fine
        assert gw_proc.stop(sig=signal.SIGTERM, timeout=30) in (0, -signal.SIGTERM)
        t.join(20)
        assert "Application shutdown complete" in gw_proc.output()
        gw_proc = None
        assert results and results[0].status_code == 200  # not cut
        iid = results[0].headers["x-abgate-interaction-id"]
        assert any(e.get("interaction_id") == iid for e in archive_events(state))  # flushed before exit
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()


def test_open_mode_without_auth_section(tmp_path: Path) -> None:
    up_proc, up = start_upstream(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(_config(up).split("auth:")[0])
    gw_proc = None
    try:
        gw_proc, gw = start_gateway(tmp_path, cfg, tmp_path / "state")
        wait_http(f"{gw}/healthz", gw_proc)
        with httpx.Client(base_url=gw, timeout=10) as c:
            r = c.post("/v1/chat/completions", json={"model": "support", "messages": MSGS})
            assert r.status_code == 200
            assert event_for(tmp_path / "state", r.headers["x-abgate-interaction-id"])["tenant"] == "default"
            assert c.get("/admin/config").status_code == 200  # open dev mode, no admin token set
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()
