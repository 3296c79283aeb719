"""App-level protections on a real gateway: /metrics behind ABGATE_METRICS_TOKEN, one
Authorization header on feedback, non-ASCII interaction ids answered 400."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest

from tests.support.procs import Proc, start_gateway, start_simulator

pytestmark = pytest.mark.integration

KEY_A, KEY_B = "sk-tenant-a-app-test", "sk-tenant-b-app-test"
METRICS_TOKEN = "metrics-token-app-test"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    tmp = tmp_path_factory.mktemp("app")
    sim, base = start_simulator(tmp)
    cfg = tmp / "router.yaml"
    cfg.write_text(f"""
routes:
  support:
    experiment: app-exp
    arms: [{{name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}}]
upstreams:
  sim: {{base_url: "{base}/v1", timeout_s: 10}}
default_upstream: sim
auth:
  keys:
    - {{sha256: "{hashlib.sha256(KEY_A.encode()).hexdigest()}", tenant: a}}
    - {{sha256: "{hashlib.sha256(KEY_B.encode()).hexdigest()}", tenant: b}}
""")
    proc: Proc | None = None
    try:
        proc, gbase = start_gateway(tmp, cfg, tmp / "state", env={"ABGATE_METRICS_TOKEN": METRICS_TOKEN})
        with httpx.Client(base_url=gbase, timeout=10) as c:
            r = c.post("/v1/chat/completions", headers={"authorization": f"Bearer {KEY_A}"},
                       json={"model": "support", "user": "u1", "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            yield c, r.json()["id"]
    finally:
        if proc is not None:
            proc.stop()
        sim.stop()


def test_metrics_need_the_metrics_token(gw: tuple[httpx.Client, str]) -> None:
    c, _ = gw
    r = c.get("/metrics")
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_api_key"
    assert c.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/metrics", headers={"authorization": f"Bearer {KEY_A}"}).status_code == 401
    r = c.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and "abgate_requests_total" in r.text


def test_feedback_refuses_two_authorization_headers(gw: tuple[httpx.Client, str]) -> None:
    c, iid = gw
    body = {"interaction_id": iid, "metric": "thumbs", "value": 1}
    for pair in ([KEY_B, KEY_A], [KEY_A, KEY_B], [KEY_A, KEY_A]):
        r = c.post("/v1/feedback", json=body, headers=[("authorization", f"Bearer {k}") for k in pair])
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "multiple_authorization"
        assert "multiple Authorization headers" in r.json()["error"]["message"]
    r = c.post("/v1/feedback", json=body, headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 200 and r.json()["status"] == "recorded"


@pytest.mark.parametrize("tail", ["é", "\u2603\u2603", "ü" * 22])
def test_non_ascii_interaction_id_is_400(gw: tuple[httpx.Client, str], tail: str) -> None:
    c, iid = gw
    forged = iid[: -len(tail)] + tail
    r = c.post("/v1/feedback", json={"interaction_id": forged, "metric": "thumbs", "value": 1},
               headers={"authorization": f"Bearer {KEY_A}"})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_interaction_id"
