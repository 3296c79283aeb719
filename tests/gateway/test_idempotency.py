"""Feedback idempotency: kept across a restart in embedded mode (real `abgate serve`, restarted),
shared by the stores' backends, and a hung Redis (SIGSTOP) that costs one short wait, not
a timeout per feedback."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from gateway.idempotency import Deduper, MemoryIdempotency, RedisIdempotency, SqliteIdempotency
from tests.support.gateway_helpers import wait_events
from tests.support.procs import apoll_until, start_gateway, start_redis, start_simulator

pytestmark = pytest.mark.integration


def _config(base: str) -> str:
    return f"""
routes:
  support:
    experiment: idem-exp
    arms: [{{name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}}]
upstreams:
  sim: {{base_url: "{base}/v1", timeout_s: 10}}
default_upstream: sim
"""


def _chat(c: httpx.Client) -> str:
    r = c.post("/v1/chat/completions", json={"model": "support", "user": "u1",
                                            "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


@pytest.mark.parametrize("make", ["memory", "sqlite"])
def test_store_claims_once_and_release_allows_a_retry(tmp_path: Path, make: str) -> None:
    async def run() -> None:
        store = MemoryIdempotency() if make == "memory" else SqliteIdempotency(tmp_path / "i.sqlite")
        assert await store.claim("a") and not await store.claim("a")
        await store.release("a")
        assert await store.claim("a")
        await store.close()

    asyncio.run(run())


def test_sqlite_claims_survive_a_new_store_and_expire(tmp_path: Path) -> None:
    async def run() -> None:
        first = Deduper(SqliteIdempotency(tmp_path / "i.sqlite"))
        assert await first.claim("ev1")
        await first.close()
        again = Deduper(SqliteIdempotency(tmp_path / "i.sqlite"))  # a restarted worker
        assert not await again.claim("ev1")
        await again.close()
        expired = SqliteIdempotency(tmp_path / "i.sqlite", ttl_s=-1)
        assert await expired.claim("ev1")
        await expired.close()

    asyncio.run(run())


def test_idempotency_survives_a_gateway_restart(tmp_path: Path) -> None:
    sim, base = start_simulator(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(_config(base))
    state = tmp_path / "state"
    gw = None
    try:
        gw, gbase = start_gateway(tmp_path, cfg, state)
        body = {"metric": "thumbs", "value": 1, "idempotency_key": "click-1"}
        with httpx.Client(base_url=gbase, timeout=10) as c:
            iid = _chat(c)
            r = c.post("/v1/feedback", json={**body, "interaction_id": iid})
            assert r.json()["status"] == "recorded"
            event_id = r.json()["event_id"]
        wait_events(state, lambda e: e.get("event_id") == event_id)
        gw.stop()
        gw, gbase = start_gateway(tmp_path, cfg, state)
        with httpx.Client(base_url=gbase, timeout=10) as c:
            r = c.post("/v1/feedback", json={**body, "interaction_id": iid})
            assert r.status_code == 200 and r.json()["status"] == "duplicate", r.text
            r2 = c.post("/v1/feedback", json={**body, "idempotency_key": "click-2", "interaction_id": iid})
            assert r2.json()["status"] == "recorded"
        wait_events(state, lambda e: e.get("event_id") == r2.json()["event_id"])
        gw.stop()
        gw = None
        from tests.support.archive import archived_events

        assert sum(e.get("event_id") == event_id for e in archived_events(state)) == 1
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()


def test_hung_redis_costs_feedback_dedupe_one_short_wait(tmp_path: Path) -> None:
    proc, port = start_redis(tmp_path)

    async def run() -> None:
        store = RedisIdempotency(f"redis://127.0.0.1:{port}/0", timeout_s=0.25)
        d = Deduper(store)
        try:
            assert await d.claim("ev-before")
            assert not await Deduper(store).claim("ev-before")  # another replica sees it
            proc.popen.send_signal(signal.SIGSTOP)
            results = [await d.claim(f"ev-{i}") for i in range(20)]
            assert all(results)
            # one call waited the 0.25 s deadline; the other 19 never touched Redis (before: each
            # waited the 1 s socket timeout). Counted, not timed: how long is the benchmark's business.
            assert store.guard.failures == 1
            proc.popen.send_signal(signal.SIGCONT)
            await apoll_until(lambda: store.guard.up, "the guard to see Redis again")
            assert await d.claim("ev-after") and not await Deduper(store).claim("ev-after")
        finally:
            await d.close()

    try:
        asyncio.run(run())
    finally:
        proc.popen.send_signal(signal.SIGCONT)
        proc.stop()


def test_hung_redis_gateway_feedback_keeps_answering(tmp_path: Path) -> None:
    """Redis mode end to end: keyed feedback while Redis hangs is still recorded (the
    deduper's own client and guard, not the sink's)."""
    rproc, port = start_redis(tmp_path)
    sim, base = start_simulator(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(_config(base))
    gw = None
    try:
        gw, gbase = start_gateway(tmp_path, cfg, tmp_path / "state", "--redis", f"redis://127.0.0.1:{port}/0")
        with httpx.Client(base_url=gbase, timeout=30) as c:
            iid = _chat(c)
            rproc.popen.send_signal(signal.SIGSTOP)
            for i in range(10):
                r = c.post("/v1/feedback", json={"interaction_id": iid, "metric": "thumbs", "value": 1,
                                                 "idempotency_key": f"k{i}"})
                assert r.status_code == 200 and r.json()["status"] == "recorded", r.text
    finally:
        rproc.popen.send_signal(signal.SIGCONT)
        if gw is not None:
            gw.stop()
        sim.stop()
        rproc.stop()
