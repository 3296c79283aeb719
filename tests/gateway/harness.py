"""An in-process gateway whose upstreams are MockTransports (the transport seam), driven
through httpx's ASGI transport: no sockets, no subprocesses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from gateway import events as ev
from gateway.app import create_app, fast_path
from gateway.config import Upstream
from gateway.runtime import Runtime
from gateway.settings import Settings
from gateway.upstream import MockResponse, MockTransport, Transport, UpstreamRequest
from gateway.upstream.transport import UpstreamResponse

CONFIG = """
routes:
  support:
    experiment: support-exp
    arms:
      - {name: control, model: base-model, weight: 0.5}
      - {name: treatment, model: ft-model, weight: 0.5}
  fb:
    experiment: fb-exp
    fallback: control
    arms:
      - {name: control, model: base-model, weight: 0.0}
      - {name: broken, model: broken-model, weight: 1.0}
upstreams:
  up: {base_url: "http://up.test/v1", timeout_s: 5, api_key_env: HARNESS_UPSTREAM_KEY}
  other: {base_url: "http://other.test/v1", timeout_s: 5}
default_upstream: up
models:
  broken-model: {upstream: other}
"""


def json_response(doc: object, status: int = 200, headers: tuple[tuple[str, str], ...] = ()) -> MockResponse:
    return MockResponse(status=status, body=json.dumps(doc).encode(),
                        headers=(("content-type", "application/json"), *headers))


def sse_response(events: list[object], headers: tuple[tuple[str, str], ...] = ()) -> MockResponse:
    chunks: list[bytes | BaseException] = []
    for e in events:
        if isinstance(e, BaseException):
            chunks.append(e)
        elif isinstance(e, bytes):
            chunks.append(e)
        else:
            chunks.append(b"data: " + json.dumps(e).encode() + b"\n\n")
    return MockResponse(status=200, chunks=chunks, headers=(("content-type", "text/event-stream"), *headers))


class Gateway:
    def __init__(self, rt: Runtime, client: httpx.AsyncClient, transports: dict[str, MockTransport]):
        self.rt, self.client, self.transports = rt, client, transports
        self.emitted: list[ev.Event] = []
        emit = rt.sink.emit

        def spy(event: ev.Event) -> bool:
            self.emitted.append(event)
            return emit(event)

        rt.sink.emit = spy

    def interactions(self) -> list[dict[str, Any]]:
        """Every Interaction event emitted so far, as archived (JSON dicts)."""
        return [json.loads(ev.encode(e)) for e in self.emitted if isinstance(e, ev.Interaction)]

    def event_for(self, interaction_id: str) -> dict[str, Any]:
        found = [e for e in self.interactions() if e["interaction_id"] == interaction_id]
        assert len(found) == 1, found
        return found[0]


class _Upstream(MockTransport):
    """The test's handler answers the proxied calls; the model-lifecycle listing the runtime
    fetches in the background (`GET /models`) gets an empty list and is not recorded."""

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None,
                   stream: bool) -> UpstreamResponse:
        if method == "GET" and url.endswith("/models"):
            return json_response({"object": "list", "data": []})
        return await super().send(method, url, headers, body, stream)


@asynccontextmanager
async def gateway(tmp: Path, handler: Callable[[str, UpstreamRequest], MockResponse], config: str = CONFIG
                  ) -> AsyncIterator[Gateway]:
    """`handler(upstream name, request)` answers every upstream call."""
    cfg = tmp / "router.yaml"
    cfg.write_text(config)
    (tmp / "state").mkdir(exist_ok=True)
    settings = Settings(state_dir=tmp / "state", config_path=cfg, reload_interval_s=60)
    rt = Runtime(settings)
    transports: dict[str, MockTransport] = {}

    def factory(name: str, spec: Upstream) -> Transport:
        t = transports[name] = _Upstream(lambda req: handler(name, req))
        return t

    rt.pool.transport = factory
    app = create_app(settings)
    app.state.runtime = rt
    await rt.start()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fast_path(app)),
                                     base_url="http://gw.test") as client:
            yield Gateway(rt, client, transports)
    finally:
        await rt.stop()
