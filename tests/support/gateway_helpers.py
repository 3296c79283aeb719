"""Helpers for the gateway integration tests: the scripted upstream and archive lookups."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tests.support.archive import archived_events as archive_events
from tests.support.procs import Proc, free_port, wait_http


def start_upstream(tmp: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "tests.support.gateway_upstream", "--port", str(port)],
                log=tmp / f"upstream-{port}.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", proc)
    return proc, base


def wait_events(state: Path, pred: Any, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the archive until `n` events match `pred` (the sink flushes every 200 ms)."""
    deadline = time.monotonic() + timeout
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        found = [e for e in archive_events(state) if pred(e)]
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {n} matching events, found {len(found)}: {found}")


def event_for(state: Path, interaction_id: str) -> dict[str, Any]:
    return wait_events(state, lambda e: e.get("kind") == "interaction" and e.get("interaction_id") == interaction_id)[0]
