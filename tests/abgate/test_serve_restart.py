"""Restart under load: feedback for ids issued before a gateway restart keeps flowing while the
gateway is stopped (SIGTERM) and started again on the same state dir, and none is lost."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_config
from tests.support.archive import archived_events
from tests.support.procs import start_gateway

pytestmark = pytest.mark.integration

N_IDS = 60
WORKERS = 3
# connection refused/reset while the gateway restarts, or 503 while it drains: try again
RETRYABLE = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class Target:
    """The gateway the clients talk to; swapped to the new process after the restart."""

    def __init__(self, base: str) -> None:
        self._lock = threading.Lock()
        self._base = base

    @property
    def base(self) -> str:
        with self._lock:
            return self._base

    @base.setter
    def base(self, value: str) -> None:
        with self._lock:
            self._base = value


def test_feedback_across_a_restart_under_load_loses_nothing(tmp_path: Path, simulator: str) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "router.yaml", simulator)
    proc, base = start_gateway(tmp_path, cfg, state)
    procs = [proc]
    try:
        with httpx.Client(timeout=10) as c:
            ids = []
            for i in range(N_IDS):
                r = c.post(f"{base}/v1/chat/completions",
                           json={"model": "support", "user": f"u{i}", "messages": [{"role": "user", "content": "hi"}]})
                assert r.status_code == 200, r.text
                ids.append(r.json()["id"])

        target = Target(base)
        accepted_by: dict[str, str] = {}
        errors: list[str] = []
        lock = threading.Lock()

        def worker(mine: list[str]) -> None:
            with httpx.Client(timeout=10) as c:
                for iid in mine:
                    deadline = time.monotonic() + 30
                    while True:
                        at = target.base
                        try:
                            r = c.post(f"{at}/v1/feedback", json={"interaction_id": iid, "metric": "thumbs",
                                                                  "value": 1, "idempotency_key": f"fb-{iid}"})
                        except RETRYABLE:
                            r = None
                        if r is not None and r.status_code == 200:
                            with lock:
                                accepted_by[iid] = at
                            break
                        if r is not None and r.status_code != 503:
                            with lock:
                                errors.append(f"{r.status_code} {r.text}")
                            return
                        if time.monotonic() > deadline:
                            with lock:
                                errors.append(f"gave up on {iid}")
                            return
                        time.sleep(0.05)
                    time.sleep(0.03)  # steady load rather than a burst that ends before the restart

        threads = [threading.Thread(target=worker, args=(ids[k::WORKERS],)) for k in range(WORKERS)]
        for t in threads:
            t.start()
        while len(accepted_by) < N_IDS // 4 and not errors and any(t.is_alive() for t in threads):
            time.sleep(0.01)
        proc.stop(sig=signal.SIGTERM)  # feedback still in flight
        proc2, base2 = start_gateway(tmp_path, cfg, state)
        procs.append(proc2)
        target.base = base2
        for t in threads:
            t.join(60)
        assert not errors, errors[:3]
        assert sorted(accepted_by) == sorted(ids)
        served = Counter(accepted_by.values())
        assert served[base] > 0 and served[base2] > 0, served  # the restart happened mid-load
        proc2.stop(sig=signal.SIGTERM)
    finally:
        for p in procs:
            p.stop()

    fb = [e for e in archived_events(state) if e["kind"] == "feedback"]
    # a retried request may be recorded twice across the restart, always under one event id
    by_event = {e["event_id"]: e for e in fb}
    assert sorted(e["interaction_id"] for e in by_event.values()) == sorted(ids)
    assert all(e["value"] == 1 for e in by_event.values())
