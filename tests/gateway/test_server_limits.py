"""Connection-level limits of a real `abgate serve` (uvicorn + abgate.http_protocol), on real
sockets: slowloris connections are closed after the head timeout while /healthz keeps
answering, the connection cap closes the longest-waiting slow connection first, and a
header bomb is answered 431 after the cap without the server buffering it."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import http
from tests.support.procs import Proc, start_gateway

pytestmark = pytest.mark.integration

CONFIG = """
routes:
  support:
    experiment: limits-exp
    arms: [{name: control, model: m, weight: 1.0}]
upstreams:
  up: {base_url: "http://127.0.0.1:9/v1", timeout_s: 2}
default_upstream: up
"""
SLOW_HEAD = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: "


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("limits")
    cfg = tmp / "router.yaml"
    cfg.write_text(CONFIG)
    proc: Proc | None = None
    try:
        proc, base = start_gateway(tmp, cfg, tmp / "state", "--header-timeout", "1", "--max-connections", "64",
                                   "--max-header-bytes", "16384", "--http-body-timeout", "1")
        yield {"proc": proc, "base": base, "port": int(base.rsplit(":", 1)[1])}
    finally:
        if proc is not None:
            proc.stop()


def _open_slow(port: int, n: int) -> list[socket.socket]:
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(SLOW_HEAD)  # and never finish the headers
        socks.append(s)
    return socks


def _wait_closed(socks: list[socket.socket], timeout: float) -> tuple[int, list[bytes]]:
    """Read each socket until the server closes it; returns (closed count, first replies)."""
    open_ = {s.fileno(): s for s in socks}
    replies: dict[int, bytes] = {}
    deadline = time.monotonic() + timeout
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_.values()), [], [], 0.2)
        for s in ready:
            try:
                data = s.recv(65536)
            except (ConnectionResetError, OSError):
                data = b""
            if data:
                replies[s.fileno()] = replies.get(s.fileno(), b"") + data
            else:
                open_.pop(s.fileno())
    return len(socks) - len(open_), list(replies.values())


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_slowloris_connections_are_timed_out_and_healthz_keeps_answering(gateway: dict[str, Any]) -> None:
    socks = _open_slow(gateway["port"], 40)
    try:
        with httpx.Client(base_url=gateway["base"], timeout=5) as c:
            for _ in range(5):  # while the slow connections hang on
                assert c.get("/healthz").status_code == 200
        closed, replies = _wait_closed(socks, timeout=30)
        assert closed == 40, f"{40 - closed} slow connections still open"
        assert replies and all(r.startswith(b"HTTP/1.1 408") for r in replies)
        body = json.loads(replies[0].split(b"\r\n\r\n", 1)[1])
        assert body["error"]["code"] == "header_timeout"
    finally:
        for s in socks:
            s.close()


def test_connection_flood_past_the_cap_closes_the_slow_ones_first(gateway: dict[str, Any]) -> None:
    socks = _open_slow(gateway["port"], 150)  # more than --max-connections 64
    try:
        # the oldest slow connections are closed at once to make room, not after the timeout
        closed_early, _ = _wait_closed(socks[:80], timeout=10)
        assert closed_early >= 80 - 64
        for _ in range(10):  # each probe is a new connection: it always gets in
            with httpx.Client(base_url=gateway["base"], timeout=5) as c:
                assert c.get("/healthz").status_code == 200
    finally:
        for s in socks:
            s.close()


def test_header_bomb_is_refused_while_reading(gateway: dict[str, Any]) -> None:
    pid = gateway["proc"].popen.pid
    before = _rss_kib(pid)
    results = []
    socks = []
    for _ in range(8):
        s = socket.create_connection(("127.0.0.1", gateway["port"]), timeout=10)
        socks.append(s)
    chunk = b"X-Bomb: " + b"a" * 65536 + b"\r\n"
    try:
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sent = 0
            try:
                while sent < 32 * 1024 * 1024:  # try to send 32 MiB of headers
                    s.sendall(chunk)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass
            results.append(sent)
        replies = []
        for s in socks:
            data = b""
            try:
                while True:
                    part = s.recv(65536)
                    if not part:
                        break
                    data += part
            except (ConnectionResetError, OSError):
                pass
            replies.append(data)
    finally:
        for s in socks:
            s.close()
    # the server stopped reading long before 32 MiB (the kernel buffers a few MiB at most)
    assert all(sent < 32 * 1024 * 1024 for sent in results), results
    answered = [r for r in replies if r]
    assert answered and all(r.startswith(b"HTTP/1.1 431") for r in answered)
    assert json.loads(answered[0].split(b"\r\n\r\n", 1)[1])["error"]["code"] == "headers_too_large"
    assert _rss_kib(pid) - before < 64 * 1024  # < 64 MiB growth for 8 x 32 MiB attempts
    assert http.get(f"{gateway['base']}/healthz", timeout=5).status_code == 200


def test_a_body_that_never_finishes_is_timed_out(gateway: dict[str, Any]) -> None:
    """R-U-Dead-Yet: headers complete, then the body trickles and stops (feedback reads its
    body through Litestar, which has no timeout of its own)."""
    socks = []
    for _ in range(10):
        s = socket.create_connection(("127.0.0.1", gateway["port"]), timeout=5)
        s.sendall(b"POST /v1/feedback HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"interaction_id\": ")
        socks.append(s)
    try:
        closed, replies = _wait_closed(socks, timeout=30)
        assert closed == 10
        assert all(r.startswith(b"HTTP/1.1 408") for r in replies), replies[:2]
        assert json.loads(replies[0].split(b"\r\n\r\n", 1)[1])["error"]["code"] == "body_timeout"
    finally:
        for s in socks:
            s.close()


def test_normal_requests_with_keep_alive_still_work(gateway: dict[str, Any]) -> None:
    with httpx.Client(base_url=gateway["base"], timeout=5) as c:
        for _ in range(20):
            r = c.get("/healthz", headers={"x-pad": "p" * 8000})
            assert r.status_code == 200
        r = c.post("/v1/feedback", content=b'{"interaction_id": "x", "metric": "thumbs", "value": 1}',
                   headers={"content-type": "application/json"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_interaction_id"


def test_slow_connections_past_the_file_descriptor_limit_do_not_lock_out_probes(tmp_path: Path) -> None:
    """The report's attack: more slow connections than the process may open files. The cap
    (sized to the fd limit) keeps accepting by closing the slowest, so probes get in."""
    import shutil
    import sys

    from tests.support.procs import free_port, wait_http

    if shutil.which("prlimit") is None:
        pytest.skip("prlimit (util-linux) is not installed")
    cfg = tmp_path / "router.yaml"
    cfg.write_text(CONFIG)
    port = free_port()
    proc = Proc(["prlimit", "--nofile=512:512", sys.executable, "-m", "abgate", "serve", "--config", str(cfg),
                 "--port", str(port), "--state-dir", str(tmp_path / "state"), "--header-timeout", "60"],
                log=tmp_path / "gw.log").start()
    socks: list[socket.socket] = []
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        socks = _open_slow(port, 700)  # > 512 file descriptors, and nothing times out meanwhile
        for _ in range(5):
            assert http.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
        closed, _ = _wait_closed(socks[:300], timeout=10)
        assert closed >= 300 - 256  # the oldest were closed to make room
    finally:
        for s in socks:
            s.close()
        proc.stop()
