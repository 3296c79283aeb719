"""The interaction & feedback log end to end: real gateway, simulator and redis-server processes."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import write_config
from tests.support import http
from tests.support.archive import archived_events as archived
from tests.support.procs import Proc, abgate_cmd, poll_until, start_gateway, start_redis

pytestmark = pytest.mark.integration


def chat(base: str, i: int, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {"model": "support", "user": f"user-{i % 7}", "stream": stream,
                            "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": f"Where is order {i}?"}]}
    r = http.post(f"{base}/v1/chat/completions", json=body, timeout=20)
    assert r.status_code == 200, r.text
    return r


def thumbs(base: str, iid: str, value: int = 1) -> None:
    r = http.post(f"{base}/v1/feedback", json={"interaction_id": iid, "metric": "thumbs", "value": value,
                                                "idempotency_key": "k1"}, timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "recorded", r.text


def traffic(base: str, start: int, n: int, feedback_every: int = 2) -> tuple[list[str], list[str]]:
    """n requests (every third streamed); feedback on every `feedback_every`-th. Returns (ids, fed ids)."""
    ids, fed = [], []
    for i in range(start, start + n):
        r = chat(base, i, stream=(i % 3 == 0))
        iid = r.headers["x-abgate-interaction-id"]
        ids.append(iid)
        if i % feedback_every == 0:
            thumbs(base, iid, 1 if i % 4 == 0 else -1)
            fed.append(iid)
    return ids, fed


def check_log(events: list[dict[str, Any]], ids: list[str], fed: list[str]) -> None:
    inter = [e for e in events if e["kind"] == "interaction"]
    fb = [e for e in events if e["kind"] == "feedback"]
    dup = [k for k, n in Counter(e["event_id"] for e in events).items() if n > 1]
    assert not dup, f"duplicate events: {dup[:5]}"
    assert sorted(e["interaction_id"] for e in inter) == sorted(ids)
    assert sorted(e["interaction_id"] for e in fb) == sorted(fed)
    by_id = {e["interaction_id"]: e for e in inter}
    for e in inter:
        assert e["status"] == "ok" and e["http_status"] == 200 and e["route"] == "support"
        assert e["experiment"] == "support-ft-2" and e["arm"] in ("control", "treatment")
        assert e["unit"] and len(e["unit"]) == 64 and "user-" not in e["unit"]  # salted hash, not the id
        assert e["messages"][0] == {"role": "system", "content": "Be brief."}
        assert e["response"] and e["latency_ms"] > 0
        assert e["prompt_tokens"] and e["completion_tokens"]
    assert any(e["stream"] for e in inter) and not all(e["stream"] for e in inter)
    for f in fb:
        it = by_id[f["interaction_id"]]
        assert (f["arm"], f["phase"], f["config_version"], f["tenant"]) == (
            it["arm"], it["phase"], it["config_version"], it["tenant"])
        assert f["metric"] == "thumbs" and f["value"] in (1, -1)


def stop_gracefully(proc: Proc) -> None:
    """SIGTERM; uvicorn re-raises the signal after a clean shutdown, so -15 is fine too."""
    assert proc.stop(sig=signal.SIGTERM) in (0, -signal.SIGTERM), proc.output()[-3000:]
    assert "Application shutdown complete" in proc.output(), proc.output()[-3000:]


def run_archiver(tmp: Path, url: str, state: Path, *extra: str, name: str = "arch") -> Proc:
    return Proc(abgate_cmd("archive", "--redis", url, "--state-dir", str(state), "--json", *extra),
                log=tmp / f"{name}.log").start()


def drain_archive(tmp: Path, url: str, state: Path, consumer: str = "a1") -> None:
    p = run_archiver(tmp, url, state, "--until-idle", "--consumer", consumer, "--lease-s", "1", name="drain")
    assert p.popen is not None
    assert p.popen.wait(60) == 0, p.output()


def test_embedded_mode_logs_every_request_and_feedback(tmp_path: Path, simulator: str) -> None:
    cfg = write_config(tmp_path / "router.yaml", simulator)
    state = tmp_path / "state"
    gw, base = start_gateway(tmp_path, cfg, state)
    try:
        ids, fed = traffic(base, 0, 24, feedback_every=2)
        # A retried feedback POST is a duplicate and writes nothing.
        r = http.post(f"{base}/v1/feedback", json={"interaction_id": fed[0], "metric": "thumbs", "value": 1,
                                                    "idempotency_key": "k1"})
        assert r.json()["status"] == "duplicate"
    finally:
        stop_gracefully(gw)
    # SIGTERM flushed every queued event: exact counts right after exit, no waiting.
    check_log(archived(state), ids, fed)
    assert len(ids) == 24 and len(fed) == 12
    # `abgate events stats` counts them from the archive with DuckDB.
    out = Proc(abgate_cmd("events", "stats", "--state-dir", str(state), "--json"), log=tmp_path / "stats.log").start()
    assert out.popen is not None and out.popen.wait(60) == 0
    stats = json.loads(out.output())
    assert stats["by_kind"]["interaction"] == 24 and stats["by_kind"]["feedback"] == 12
    assert stats["unreadable_lines"] == 0


def test_redis_outage_mid_run_loses_and_duplicates_nothing(tmp_path: Path, simulator: str) -> None:
    cfg = write_config(tmp_path / "router.yaml", simulator)
    state = tmp_path / "state"
    rproc, port = start_redis(tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    gw = None
    try:
        gw, base = start_gateway(tmp_path, cfg, state, "--redis", url)
        ids, fed = traffic(base, 0, 10)
        rproc.stop()  # Redis down: the gateway keeps serving on its last good config and spools
        more = traffic(base, 10, 10)
        ids, fed = ids + more[0], fed + more[1]
        # the sink writes on its flush interval: the failed write to Redis lands in the spool shortly after
        poll_until(lambda: bool(list((state / "spool").glob("*.jsonl"))), "events spooled while Redis is down",
                   timeout=20, interval=0.05)
        assert http.get(f"{base}/readyz").status_code == 200  # the spool is durable storage
        rproc, _ = start_redis(tmp_path, port=port)
        more = traffic(base, 20, 10)
        ids, fed = ids + more[0], fed + more[1]
        poll_until(lambda: not list((state / "spool").glob("*.jsonl")), "the spool replayed once Redis is back",
                   timeout=20, interval=0.1)
    finally:
        if gw is not None:
            stop_gracefully(gw)
    try:
        drain_archive(tmp_path, url, state)
    finally:
        rproc.stop()
    check_log(archived(state), ids, fed)


def test_archiver_killed_and_restarted_loses_nothing(tmp_path: Path, simulator: str) -> None:
    cfg = write_config(tmp_path / "router.yaml", simulator)
    state, archive_state = tmp_path / "gw-state", tmp_path / "archive-state"
    rproc, port = start_redis(tmp_path)
    url = f"redis://127.0.0.1:{port}/0"
    gw = arch = None
    try:
        gw, base = start_gateway(tmp_path, cfg, state, "--redis", url)
        arch = run_archiver(tmp_path, url, archive_state, "--consumer", "a1", "--lease-s", "1", "--batch", "3")
        ids, fed = traffic(base, 0, 12)
        poll_until(lambda: len(archived(archive_state)) >= 3, "the archiver's first batch")
        arch.kill()  # kill -9 mid-run, possibly between write and ack
        more = traffic(base, 12, 12)
        ids, fed = ids + more[0], fed + more[1]
        arch = run_archiver(tmp_path, url, archive_state, "--consumer", "a1", "--lease-s", "1", name="arch2")
        more = traffic(base, 24, 6)
        ids, fed = ids + more[0], fed + more[1]
    finally:
        if gw is not None:
            stop_gracefully(gw)
        if arch is not None:
            arch.stop(sig=signal.SIGTERM)
    try:
        drain_archive(tmp_path, url, archive_state)
    finally:
        rproc.stop()
    check_log(archived(archive_state), ids, fed)


def test_config_change_through_one_gateway_is_served_by_the_other(tmp_path: Path, simulator: str,
                                                                  redis_server) -> None:
    _, url = redis_server
    cfg = write_config(tmp_path / "router.yaml", simulator)
    g1, base1 = start_gateway(tmp_path, cfg, tmp_path / "s1", "--redis", url)
    g2 = None
    try:
        g2, base2 = start_gateway(tmp_path, cfg, tmp_path / "s2", "--redis", url)
        v = http.get(f"{base1}/admin/config").json()["version"]
        assert http.get(f"{base2}/admin/config").json()["version"] == v
        new_yaml = write_config(tmp_path / "new.yaml", simulator, weights=(0.2, 0.8)).read_text()
        r = http.put(f"{base1}/admin/config", params={"expected_version": v, "reason": "ramp"},
                      content=new_yaml, headers={"content-type": "application/yaml"})
        assert r.status_code == 200, r.text
        new_version = r.json()["version"]
        assert new_version == v + 1
        # the other replica follows (pub/sub, else its poll); how fast is the benchmark's business
        poll_until(lambda: chat(base2, 1).headers["x-abgate-config-version"] == str(new_version),
                   "the other replica to serve the new config", timeout=15, interval=0.02)
        weights = [a["weight"] for a in http.get(f"{base2}/admin/config").json()["config"]["routes"]["support"]["arms"]]
        assert weights == [0.2, 0.8]
    finally:
        g1.stop()
        if g2 is not None:
            g2.stop()


def test_unwritable_archive_keeps_serving_and_reports_not_ready(tmp_path: Path, simulator: str) -> None:
    cfg = write_config(tmp_path / "router.yaml", simulator)
    state = tmp_path / "state"
    gw, base = start_gateway(tmp_path, cfg, state)
    events, moved = state / "events", tmp_path / "events-before"
    try:
        ids, fed = traffic(base, 0, 4)
        poll_until(lambda: {e.get("interaction_id") for e in archived(state)} >= set(ids),
                   "those to land before the disk fails")
        events.rename(moved)
        events.write_text("the archive disk is gone")  # every write now fails (root ignores chmod)
        more = traffic(base, 4, 6)  # requests keep flowing
        ids, fed = ids + more[0], fed + more[1]
        poll_until(lambda: http.get(f"{base}/readyz").status_code == 503, "readyz to report the failing disk")
        events.unlink()
        moved.rename(events)  # the disk is back: queued events are written, ready again
        poll_until(lambda: http.get(f"{base}/readyz").status_code == 200, "ready again")
    finally:
        stop_gracefully(gw)
    check_log(archived(state), ids, fed)
