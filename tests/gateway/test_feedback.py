"""POST /v1/feedback through the real Litestar app (in-process), embedded sink."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from gateway.app import create_app
from gateway.errors import ApiError
from gateway.feedback import Deduper, parse_feedback, validate_value
from gateway.settings import Settings
from tests.conftest import write_config
from tests.support.archive import archived_events as archived

KEY_ACME, KEY_OTHER = "sk-acme-123", "sk-other-456"
EXTRA = f"""
metrics:
  resolved: {{type: boolean}}
  latency_score: {{type: float, min: 0, max: 10}}
auth:
  keys:
    - {{sha256: "{hashlib.sha256(KEY_ACME.encode()).hexdigest()}", tenant: acme}}
    - {{sha256: "{hashlib.sha256(KEY_OTHER.encode()).hexdigest()}", tenant: other}}
"""
ACME = {"authorization": f"Bearer {KEY_ACME}"}
OTHER = {"authorization": f"Bearer {KEY_OTHER}"}


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[tuple[TestClient, Any, Path]]:
    cfg = write_config(tmp_path / "router.yaml", "http://127.0.0.1:9", extra=EXTRA)
    state = tmp_path / "state"
    state.mkdir()
    app = create_app(Settings(state_dir=state, config_path=cfg, reload_interval_s=60))
    with TestClient(app) as client:
        yield client, app.state.runtime, state


def new_id(rt: Any, tenant: str = "acme", arm: str = "treatment") -> str:
    token, _ = rt.signer.new(tenant=tenant, route="support", experiment="support-ft-2", arm=arm, phase=1,
                             config_version=rt.config.version, traffic="live")
    return token


def feedback_events(state: Path) -> list[dict[str, Any]]:
    return [e for e in archived(state) if e["kind"] == "feedback"]


def flush(client: TestClient, rt: Any) -> None:
    client.blocking_portal.call(rt.sink.flush)


GOOD = [
    ("thumbs", 1), ("thumbs", -1), ("edited_response", "Better answer."), ("followup", True),
    ("csat", 5), ("approved", False), ("policy_violation", True),
    ("review", {"factuality": 5, "helpfulness": 4, "tone": 5, "policy": 5, "completeness": 4, "overall": 4,
                "quality": 8, "category": "refund", "reviewer": "ana"}),
    ("resolved", True), ("latency_score", 7.5),
]


def test_every_metric_is_recorded_with_attribution(gw) -> None:
    client, rt, state = gw
    iid = new_id(rt)
    for metric, value in GOOD:
        r = client.post("/v1/feedback", json={"interaction_id": iid, "metric": metric, "value": value,
                                              "ticket": "T-1"}, headers=ACME)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "recorded"
    flush(client, rt)
    events = feedback_events(state)
    assert [(e["metric"], e["value"]) for e in events] == GOOD
    e = events[0]
    assert (e["tenant"], e["route"], e["experiment"], e["arm"], e["phase"]) == (
        "acme", "support", "support-ft-2", "treatment", 1)
    assert e["interaction_id"] == iid and e["source"] == "user" and e["extra"] == {"ticket": "T-1"}
    assert events[7]["source"] == "reviewer"  # review defaults to a reviewer signal
    metrics_text = client.get("/metrics").text
    assert 'abgate_feedback_total{arm="treatment",metric="thumbs",outcome="positive",route="support"} 1.0' \
        in metrics_text


def test_retry_with_same_idempotency_key_is_a_duplicate(gw) -> None:
    client, rt, state = gw
    iid = new_id(rt)
    body = {"interaction_id": iid, "metric": "thumbs", "value": 1, "idempotency_key": "click-1"}
    first = client.post("/v1/feedback", json=body, headers=ACME)
    again = client.post("/v1/feedback", json=body, headers=ACME)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": first.json()["event_id"]}
    other_key = client.post("/v1/feedback", json={**body, "idempotency_key": "click-2", "value": -1}, headers=ACME)
    assert other_key.json()["status"] == "recorded"
    flush(client, rt)
    assert [e["value"] for e in feedback_events(state)] == [1, -1]


BAD: list[tuple[str, Any, int, str | None]] = [
    ("not json", b"{oops", 400, None),
    ("array body", [1, 2], 400, None),
    ("missing id", {"metric": "thumbs", "value": 1}, 400, "interaction_id"),
    ("truncated id", "TRUNC", 400, "interaction_id"),
    ("forged id", "FORGED", 400, "interaction_id"),
    ("garbage id", {"interaction_id": "abg1.x.y", "metric": "thumbs", "value": 1}, 400, "interaction_id"),
    ("unknown metric", {"metric": "stars", "value": 1}, 400, "metric"),
    ("missing value", {"metric": "thumbs"}, 400, "value"),
    ("thumbs 0", {"metric": "thumbs", "value": 0}, 400, "value"),
    ("thumbs bool", {"metric": "thumbs", "value": True}, 400, "value"),
    ("thumbs string", {"metric": "thumbs", "value": "up"}, 400, "value"),
    ("csat 6", {"metric": "csat", "value": 6}, 400, "value"),
    ("csat float", {"metric": "csat", "value": 4.5}, 400, "value"),
    ("approved int", {"metric": "approved", "value": 1}, 400, "value"),
    ("followup string", {"metric": "followup", "value": "yes"}, 400, "value"),
    ("empty edit", {"metric": "edited_response", "value": "   "}, 400, "value"),
    ("review not object", {"metric": "review", "value": 5}, 400, "value"),
    ("review missing score", {"metric": "review", "value": {"overall": 4}}, 400, "value.factuality"),
    ("review score 0", {"metric": "review", "value": {"factuality": 0, "helpfulness": 4, "tone": 4, "policy": 4,
                                                      "completeness": 4, "overall": 4}}, 400, "value.factuality"),
    ("review quality 11", {"metric": "review", "value": {"factuality": 4, "helpfulness": 4, "tone": 4, "policy": 4,
                                                         "completeness": 4, "overall": 4, "quality": 11}},
     400, "value.quality"),
    ("review unknown field", {"metric": "review", "value": {"factuality": 4, "helpfulness": 4, "tone": 4,
                                                            "policy": 4, "completeness": 4, "overall": 4,
                                                            "vibes": 5}}, 400, "value.vibes"),
    ("custom bool wrong", {"metric": "resolved", "value": "true"}, 400, "value"),
    ("custom float over max", {"metric": "latency_score", "value": 10.5}, 400, "value"),
    ("custom float under min", {"metric": "latency_score", "value": -1}, 400, "value"),
    ("bad source", {"metric": "thumbs", "value": 1, "source": "bot"}, 400, "source"),
    ("bad idempotency key", {"metric": "thumbs", "value": 1, "idempotency_key": 7}, 400, "idempotency_key"),
    ("other tenant", "OTHER_TENANT", 404, "interaction_id"),
    ("no api key", "NOKEY", 401, None),
    ("wrong content type", "CT", 400, None),
]


@pytest.mark.parametrize(("name", "body", "status", "param"), BAD, ids=[b[0] for b in BAD])
def test_bad_feedback_is_refused_and_writes_nothing(gw, name: str, body: Any, status: int, param: str | None) -> None:
    client, rt, state = gw
    iid = new_id(rt)
    headers = dict(ACME)
    if body == "TRUNC":
        body = {"interaction_id": iid[:-6], "metric": "thumbs", "value": 1}
    elif body == "FORGED":
        kid, payload, sig = iid.split(".")[1:]
        other = new_id(rt, arm="control").split(".")[2]  # a different payload under the same signature
        body = {"interaction_id": f"abg1.{kid}.{other}.{sig}", "metric": "thumbs", "value": 1}
    elif body == "OTHER_TENANT":
        body = {"interaction_id": iid, "metric": "thumbs", "value": 1}
        headers = dict(OTHER)
    elif body == "NOKEY":
        body, headers = {"interaction_id": iid, "metric": "thumbs", "value": 1}, {}
    elif body == "CT":
        body = json.dumps({"interaction_id": iid, "metric": "thumbs", "value": 1}).encode()
        headers["content-type"] = "text/plain"
    elif isinstance(body, dict) and "interaction_id" not in body and name != "missing id":
        body = {"interaction_id": iid, **body}
    flush(client, rt)
    before = archived(state)
    if isinstance(body, bytes):
        r = client.post("/v1/feedback", content=body, headers={"content-type": "application/json", **headers})
    else:
        r = client.post("/v1/feedback", json=body, headers=headers)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) >= {"message", "type", "code"} and err["message"]
    if param is not None:
        assert err["param"] == param, err
        assert param.split(".")[-1] in err["message"] or param == "interaction_id"
    flush(client, rt)
    assert archived(state) == before


def test_other_tenant_gets_the_same_answer_as_unknown(gw) -> None:
    client, rt, _ = gw
    r = client.post("/v1/feedback", json={"interaction_id": new_id(rt), "metric": "thumbs", "value": 1},
                    headers=OTHER)
    assert r.status_code == 404 and "not found" in r.json()["error"]["message"]


def test_feedback_survives_a_restart(tmp_path: Path) -> None:
    """Ids are self-contained: a new process (same state dir secrets) accepts old ids."""
    cfg = write_config(tmp_path / "router.yaml", "http://127.0.0.1:9", extra=EXTRA)
    state = tmp_path / "state"
    state.mkdir()
    settings = Settings(state_dir=state, config_path=cfg, reload_interval_s=60)
    app = create_app(settings)
    with TestClient(app) as client:
        iid = new_id(app.state.runtime)
    app2 = create_app(settings)
    with TestClient(app2) as client:
        r = client.post("/v1/feedback", json={"interaction_id": iid, "metric": "csat", "value": 4}, headers=ACME)
        assert r.status_code == 200, r.text
    assert [e["value"] for e in feedback_events(state)] == [4]


def test_validation_functions_name_the_field() -> None:
    with pytest.raises(ApiError) as exc:
        parse_feedback(b'{"interaction_id": "x", "metric": "csat", "value": 0}', {})
    assert exc.value.param == "value" and "1 to 5" in exc.value.message
    assert validate_value("thumbs", -1, {}) == -1
    with pytest.raises(ApiError, match="known metrics: thumbs"):
        validate_value("nope", 1, {})


def test_deduper_lru_is_bounded() -> None:
    import asyncio

    async def run() -> None:
        d = Deduper(size=3)
        assert all([await d.claim(k) for k in "abcd"])
        assert await d.claim("a") is True  # evicted, so seen as new again
        assert await d.claim("d") is False

    asyncio.run(run())
