"""SIGTERM under load on a real `abgate serve` in front of a real (slow) simulator: every request
the gateway accepted completes (streams included, to `[DONE]`), nothing is cut mid-response, and
every answered interaction is in the archive after the process exits."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_config
from tests.support import http
from tests.support.archive import archived_events
from tests.support.procs import poll_until, start_gateway, start_simulator

pytestmark = pytest.mark.integration

SLOW = 12  # long requests in flight at the signal (half of them streams)
LOOPERS = 3  # clients sending short requests in a loop across the signal
# raised before any response byte: the gateway had stopped accepting, so nothing was cut
NOT_STARTED = (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class Outcome:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: dict[str, str] = {}  # interaction id -> "stream" | "json"
        self.cut: list[str] = []
        self.bad: list[str] = []
        self.first_chunks = 0

    def add(self, field: str, value: str, iid: str | None = None) -> None:
        with self.lock:
            if field == "done":
                self.done[iid or ""] = value
            else:
                getattr(self, field).append(value)


def _one(c: httpx.Client, base: str, user: str, stream: bool, out: Outcome) -> bool:
    """One request; False when the gateway no longer accepts (the run is over for this client)."""
    body = {"model": "support", "user": user, "stream": stream,
            "messages": [{"role": "user", "content": "Where is my order #1234?"}]}
    try:
        cm = c.stream("POST", f"{base}/v1/chat/completions", json=body)
        r = cm.__enter__()
    except NOT_STARTED:
        return False
    try:
        if r.status_code != 200:
            r.read()
            out.add("bad", f"{r.status_code} {r.text[:200]}")
            return True
        iid = r.headers["x-abgate-interaction-id"]
        if stream:
            lines = []
            for line in r.iter_lines():
                if line.startswith("data: ") and not lines:
                    with out.lock:
                        out.first_chunks += 1
                lines.append(line)
            if "data: [DONE]" not in lines:
                out.add("cut", f"stream without [DONE]: {lines[-3:]}")
                return True
        else:
            doc = json.loads(r.read())
            if not doc["choices"][0]["message"]["content"]:
                out.add("bad", "empty answer")
        out.add("done", "stream" if stream else "json", iid)
    except httpx.HTTPError as err:  # after the response started: a cut
        out.add("cut", f"{type(err).__name__}: {err}")
    finally:
        cm.__exit__(None, None, None)
    return True


def test_sigterm_under_load_cuts_nothing_and_flushes_every_event(tmp_path: Path) -> None:
    sim_proc, sim = start_simulator(tmp_path, "--latency-ms", "1500", "--seed", "4")
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "router.yaml", sim)
    gw_proc = None
    out = Outcome()
    stop_loopers = threading.Event()
    try:
        gw_proc, base = start_gateway(tmp_path, cfg, state)

        def slow(i: int) -> None:
            with httpx.Client(timeout=30) as c:
                _one(c, base, f"slow{i}", i % 2 == 0, out)

        def looper(k: int) -> None:
            with httpx.Client(timeout=30) as c:
                n = 0
                while not stop_loopers.is_set() and _one(c, base, f"loop{k}-{n}", n % 3 == 0, out):
                    n += 1

        threads = [threading.Thread(target=slow, args=(i,)) for i in range(SLOW)]
        for t in threads:
            t.start()
        # every slow request is at the upstream (so the gateway accepted it) before the loopers start
        poll_until(lambda: http.get(f"{sim}/_stats").json()["chat_requests"] >= SLOW, "the slow requests upstream",
                   interval=0.02)
        loopers = [threading.Thread(target=looper, args=(k,)) for k in range(LOOPERS)]
        for t in loopers:
            t.start()
        threads += loopers
        poll_until(lambda: out.first_chunks >= SLOW // 2, "the slow streams under way", interval=0.02)
        code = gw_proc.stop(sig=signal.SIGTERM, timeout=40)
        assert code in (0, -signal.SIGTERM), code  # uvicorn re-raises SIGTERM after a clean drain
        stop_loopers.set()
        for t in threads:
            t.join(40)
        assert not any(t.is_alive() for t in threads)
        log = gw_proc.output()
        gw_proc = None
    finally:
        stop_loopers.set()
        if gw_proc is not None:
            gw_proc.stop()
        sim_proc.stop()

    assert out.cut == [], out.cut[:3]
    assert out.bad == [], out.bad[:3]
    kinds = list(out.done.values())
    # all slow requests (in flight when the signal came) finished, streams among them
    assert len(out.done) >= SLOW and kinds.count("stream") >= SLOW // 2, (len(out.done), kinds.count("stream"))
    assert "Application shutdown complete" in log and "Traceback" not in log
    archived = {e["interaction_id"]: e for e in archived_events(state) if e["kind"] == "interaction"}
    missing = set(out.done) - set(archived)
    assert not missing, f"{len(missing)} answered interactions not archived"
    assert all(archived[i]["status"] == "ok" and archived[i]["http_status"] == 200 for i in out.done)
