"""Upstream faults and upstream-key hygiene on a real `abgate serve` against a real (threaded,
raw-socket) misbehaving upstream: connection reset before and mid-stream, a circuit breaker that
stops hammering a dead upstream (hits are counted on the upstream side), fallback arms, and an
upstream that echoes the gateway's own API key in its error bodies (OpenAI's 401 does)."""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator
from socketserver import BaseRequestHandler, ThreadingTCPServer
from typing import Any

import httpx
import pytest

from tests.support.gateway_helpers import event_for, wait_events
from tests.support.procs import start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("reliability_faults")]

UPSTREAM_KEY = "sk-planted-rel-faults-3c9e1d"
MSGS = [{"role": "user", "content": "hi"}]


def _chunk(model: str, content: str) -> bytes:
    doc = {"id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}
    event = b"data: " + json.dumps(doc).encode() + b"\n\n"
    return f"{len(event):x}\r\n".encode() + event + b"\r\n"


class _Handler(BaseRequestHandler):
    """One request per connection; what it does depends on the model asked for."""

    server: _Upstream

    def handle(self) -> None:
        sock: socket.socket = self.request
        data = b""
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                return
            data += part
        head, body = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
        need = int(headers.get("content-length", "0"))
        while len(body) < need:
            part = sock.recv(65536)
            if not part:
                return
            body += part
        model = json.loads(body).get("model", "")
        with self.server.lock:
            self.server.hits[model] += 1
        key = headers.get("authorization", "").removeprefix("Bearer ")
        if model.startswith("reset"):
            self._reset(sock)
        elif model == "midstream":
            sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n"
                         b"connection: close\r\n\r\n" + _chunk(model, "part-1 ") + _chunk(model, "part-2 "))
            self._reset(sock)  # no terminating chunk: a reset in the middle of the stream
        elif model.startswith("leak"):
            status = 401 if model == "leak401" else 500
            # what OpenAI answers a bad key with, minus the masking OpenAI does
            err = {"error": {"message": f"Incorrect API key provided: {key}. Key {key} is not valid.",
                             "type": "invalid_request_error", "code": "invalid_api_key", "param": None}}
            self._json(sock, status, err)
        else:
            self._json(sock, 200, {"id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
                                   "choices": [{"index": 0, "message": {"role": "assistant", "content": f"echo:{model}"},
                                                "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    @staticmethod
    def _json(sock: socket.socket, status: int, doc: dict[str, Any]) -> None:
        payload = json.dumps(doc).encode()
        sock.sendall(f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
                     f"connection: close\r\n\r\n".encode() + payload)

    @staticmethod
    def _reset(sock: socket.socket) -> None:
        # SO_LINGER 0: close() sends RST instead of FIN, like a crashed or killed upstream
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


class _Upstream(ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


def _config(up: str) -> str:
    return f"""
routes:
  dead:
    experiment: dead-exp
    arms: [{{name: only, model: reset-a, weight: 1.0}}]
  deadfb:
    experiment: deadfb-exp
    fallback: control
    arms:
      - {{name: control, model: healthy, weight: 0.0}}
      - {{name: broken, model: reset-b, weight: 1.0}}
  midstream:
    experiment: mid-exp
    arms: [{{name: only, model: midstream, weight: 1.0}}]
  leak401:
    experiment: leak401-exp
    arms: [{{name: only, model: leak401, weight: 1.0}}]
  leak500:
    experiment: leak500-exp
    arms: [{{name: only, model: leak500, weight: 1.0}}]
upstreams:
  good: {{base_url: "{up}/v1", timeout_s: 5, api_key_env: REL_UPSTREAM_KEY}}
  flaky_a: {{base_url: "{up}/v1", timeout_s: 5, api_key_env: REL_UPSTREAM_KEY}}
  flaky_b: {{base_url: "{up}/v1", timeout_s: 5, api_key_env: REL_UPSTREAM_KEY}}
default_upstream: good
models:
  reset-a: {{upstream: flaky_a}}
  reset-b: {{upstream: flaky_b}}
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("relfaults")
    upstream = _Upstream()
    thread = threading.Thread(target=upstream.serve_forever, daemon=True)
    thread.start()
    cfg = tmp / "router.yaml"
    cfg.write_text(_config(upstream.base))
    state = tmp / "state"
    proc = None
    try:
        proc, base = start_gateway(tmp, cfg, state, "--log-level", "debug", env={"REL_UPSTREAM_KEY": UPSTREAM_KEY})
        with httpx.Client(base_url=base, timeout=10) as client:
            yield {"client": client, "state": state, "proc": proc, "up": upstream}
    finally:
        if proc is not None:
            proc.stop()
        upstream.shutdown()
        upstream.server_close()


def _chat(c: httpx.Client, route: str, user: str = "u1") -> httpx.Response:
    return c.post("/v1/chat/completions", json={"model": route, "messages": MSGS, "user": user})


def test_dead_upstream_is_not_hammered(env: dict[str, Any]) -> None:
    c, up = env["client"], env["up"]
    rs = [_chat(c, "dead", user=f"d{i}") for i in range(15)]
    assert all(r.status_code == 502 for r in rs), [r.status_code for r in rs]
    codes = [r.json()["error"]["code"] for r in rs]
    # five resets open the circuit; the other ten are answered without touching the upstream
    assert codes[:5] == ["connection"] * 5 and codes[5:] == ["circuit_open"] * 10, codes
    assert up.hits["reset-a"] == 5
    ev = event_for(env["state"], rs[-1].headers["x-abgate-interaction-id"])
    assert ev["status"] == "upstream_error" and ev["http_status"] == 502 and "circuit open" in ev["error"]
    first = event_for(env["state"], rs[0].headers["x-abgate-interaction-id"])
    assert first["status"] == "upstream_error" and "cannot reach upstream 'flaky_a'" in first["error"]


def test_fallback_answers_while_the_circuit_is_open(env: dict[str, Any]) -> None:
    c, up = env["client"], env["up"]
    rs = [_chat(c, "deadfb", user=f"f{i}") for i in range(12)]
    assert [r.status_code for r in rs] == [200] * 12
    assert all(r.json()["choices"][0]["message"]["content"] == "echo:healthy" for r in rs)
    assert up.hits["reset-b"] == 5  # the broken arm's upstream stopped being tried
    ev = event_for(env["state"], rs[-1].headers["x-abgate-interaction-id"])
    assert ev["arm"] == "broken" and ev["fallback_from"] == "broken" and ev["model"] == "healthy"
    assert ev["status"] == "ok"


def test_reset_mid_stream_ends_the_stream_with_an_error_event(env: dict[str, Any]) -> None:
    c = env["client"]
    with c.stream("POST", "/v1/chat/completions",
                  json={"model": "midstream", "messages": MSGS, "stream": True, "user": "m1"}) as r:
        assert r.status_code == 200
        iid = r.headers["x-abgate-interaction-id"]
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    # the two chunks that arrived are relayed, then a clean OpenAI-shaped error closes the stream
    assert "".join(e["choices"][0]["delta"]["content"] for e in events[:-1]) == "part-1 part-2 "
    assert events[-1]["error"]["type"] and "connection lost mid-stream" in events[-1]["error"]["message"]
    ev = event_for(env["state"], iid)
    assert ev["status"] == "upstream_error" and ev["http_status"] == 502
    assert "connection lost" in ev["error"]
    assert _chat(c, "deadfb").status_code == 200  # and the gateway keeps serving


@pytest.mark.parametrize("route", ["leak401", "leak500"])
def test_upstream_echoing_our_key_does_not_leak_it(env: dict[str, Any], route: str) -> None:
    c, state = env["client"], env["state"]
    r = _chat(c, route, user="leaky")
    assert r.status_code in (401, 502), r.text
    assert UPSTREAM_KEY not in r.text and UPSTREAM_KEY not in str(r.headers)
    assert "Incorrect API key provided" in r.json()["error"]["message"]  # the error itself is kept
    iid = r.headers["x-abgate-interaction-id"]
    ev = event_for(state, iid)
    assert ev["status"] == "upstream_error" and "Incorrect API key" in ev["error"]
    wait_events(state, lambda e: e.get("interaction_id") == iid)
    for path in state.rglob("*"):
        if path.is_file():
            assert UPSTREAM_KEY.encode() not in path.read_bytes(), path
    assert UPSTREAM_KEY not in c.get("/metrics").text
    assert UPSTREAM_KEY not in env["proc"].output()  # debug logs included
