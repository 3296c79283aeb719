"""Helpers for the gateway integration tests: the scripted upstream and archive lookups."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.archive import archived_events as archive_events
from tests.support.procs import Proc, free_port, poll_until, start_gateway, wait_http


def start_upstream(tmp: Path) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([sys.executable, "-m", "tests.support.gateway_upstream", "--port", str(port)],
                log=tmp / f"upstream-{port}.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthz", proc)
    return proc, base


@dataclass
class Live:
    """A real gateway process in front of the scripted upstream (see `upstream_and_gateway`)."""

    gw: str
    up: str
    state: Path
    proc: Proc
    client: httpx.Client
    cfg: Path
    tmp: Path


@contextmanager
def upstream_and_gateway(tmp: Path, config: Callable[[str], str], env: dict[str, str] | None = None) -> Iterator[Live]:
    """Start the scripted upstream, write the router config `config(upstream_url)`, start a
    gateway on it; stop both afterwards."""
    up_proc, up = start_upstream(tmp)
    cfg = tmp / "router.yaml"
    state = tmp / "state"
    gw_proc = None
    try:
        cfg.write_text(config(up))
        gw_proc, gw = start_gateway(tmp, cfg, state, env=env)
        with httpx.Client(base_url=gw, timeout=10) as client:
            yield Live(gw, up, state, gw_proc, client, cfg, tmp)
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()


def wait_events(state: Path, pred: Any, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Poll the archive until `n` events match `pred` (the sink flushes every 200 ms)."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = [e for e in archive_events(state) if pred(e)]
        return len(found) >= n

    try:
        poll_until(enough, f"{n} matching events", timeout=timeout)
    except AssertionError:
        raise AssertionError(f"expected {n} matching events, found {len(found)}: {found}") from None
    return found


def event_for(state: Path, interaction_id: str) -> dict[str, Any]:
    return wait_events(state, lambda e: e.get("kind") == "interaction" and e.get("interaction_id") == interaction_id)[0]
