"""Redis mode: the router config lives in Redis; a change made elsewhere is served at once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from gateway import config as cfgmod
from gateway.redis_store import RedisConfigStore
from tests.conftest import write_config
from tests.support import http
from tests.support.gateway_helpers import start_upstream
from tests.support.procs import Proc, poll_until, start_gateway

pytestmark = pytest.mark.integration


def _config_with_limited_key(tmp_path: Path, up: str, key: str, *, rps: float, burst: int) -> Path:
    """A router config whose one client key (tenant acme) has its own rate limit."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return write_config(tmp_path / "router.yaml", up, extra=f"""
auth:
  keys:
    - {{sha256: "{digest}", tenant: acme, rate_limit_rps: {rps}, rate_limit_burst: {burst}}}
""")


def test_redis_mode_serves_and_follows_store_changes(tmp_path: Path, redis_server: tuple[Proc, str]) -> None:
    _, url = redis_server
    up_proc, up = start_upstream(tmp_path)
    cfg = write_config(tmp_path / "router.yaml", up)
    gw_proc = None
    try:
        gw_proc, gw = start_gateway(tmp_path, cfg, tmp_path / "state", "--redis", url)
        store = RedisConfigStore.from_url(url)
        cur = store.current()
        assert cur is not None and cur.author == "serve"
        with httpx.Client(base_url=gw, timeout=10) as c:
            body = {"model": "support", "messages": [{"role": "user", "content": "hi"}], "user": "r1"}
            r = c.post("/v1/chat/completions", json=body)
            assert r.status_code == 200 and r.headers["x-abgate-config-version"] == str(cur.version)
            new_cfg = cfgmod.parse_yaml(write_config(tmp_path / "v2.yaml", up, weights=(0.0, 1.0)).read_text())
            new = store.put(new_cfg, expected_version=cur.version, author="test", reason="all to treatment")
            poll_until(lambda: c.post("/v1/chat/completions", json=body).headers["x-abgate-config-version"]
                       == str(new.version), "the new version served", timeout=15)
            r = c.post("/v1/chat/completions", json=body)
            assert r.headers["x-abgate-arm"] == "treatment"
        store.close()
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()


def test_rate_limit_shared_across_replicas(tmp_path: Path, redis_server: tuple[Proc, str]) -> None:
    _, url = redis_server
    up_proc, up = start_upstream(tmp_path)
    key = "sk-shared-limit"
    cfg = _config_with_limited_key(tmp_path, up, key, rps=0.2, burst=2)
    procs: list[Proc] = []
    try:
        for i in range(2):
            p, gw = start_gateway(tmp_path / f"g{i}", cfg, tmp_path / "state", "--redis", url)
            procs.append(p)
            if i == 0:
                gw0 = gw
            else:
                gw1 = gw
        body = {"model": "support", "messages": [{"role": "user", "content": "hi"}]}
        h = {"authorization": f"Bearer {key}"}
        assert http.post(f"{gw0}/v1/chat/completions", json=body, headers=h, timeout=10).status_code == 200
        assert http.post(f"{gw1}/v1/chat/completions", json=body, headers=h, timeout=10).status_code == 200
        third = http.post(f"{gw0}/v1/chat/completions", json=body, headers=h, timeout=10)
        assert third.status_code == 429 and int(third.headers["retry-after"]) >= 1
    finally:
        for p in procs:
            p.stop()
        up_proc.stop()


def test_redis_outage_keeps_serving_last_good_config(tmp_path: Path, redis_server: tuple[Proc, str]) -> None:
    redis_proc, url = redis_server
    up_proc, up = start_upstream(tmp_path)
    key = "sk-limited"
    cfg = _config_with_limited_key(tmp_path, up, key, rps=100, burst=100)
    gw_proc = None
    try:
        gw_proc, gw = start_gateway(tmp_path, cfg, tmp_path / "state", "--redis", url)
        body = {"model": "support", "messages": [{"role": "user", "content": "hi"}], "user": "o1"}
        h = {"authorization": f"Bearer {key}"}
        with httpx.Client(base_url=gw, timeout=10) as c:
            before = c.post("/v1/chat/completions", json=body, headers=h)
            assert before.status_code == 200
            redis_proc.stop()
            poll_until(lambda: "config_reload_failed" in gw_proc.output()
                       or "config_subscription_lost" in gw_proc.output(), "the gateway to notice the outage")
            for _ in range(5):  # config from memory, rate limit falls back to local buckets
                r = c.post("/v1/chat/completions", json=body, headers=h)
                assert r.status_code == 200, r.text
                assert r.headers["x-abgate-config-version"] == before.headers["x-abgate-config-version"]
        assert gw_proc.alive()
        assert "config_reload_failed" in gw_proc.output() or "config_subscription_lost" in gw_proc.output()
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()
