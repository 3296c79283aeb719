"""Upstream clients keyed by their full definition."""

from __future__ import annotations

from collections.abc import Callable

from gateway.config import Upstream
from gateway.upstream.breaker import Breaker
from gateway.upstream.client import UpstreamClient
from gateway.upstream.transport import AiohttpTransport, Transport

TransportFactory = Callable[[str, Upstream], Transport]


def _aiohttp(_: str, spec: Upstream) -> Transport:
    return AiohttpTransport(spec)


class UpstreamPool:
    """A config reload that keeps an upstream keeps its warm connections; replaced clients
    close after in-flight requests finish. `transport` builds each client's transport
    (tests pass one returning a MockTransport)."""

    def __init__(self, breaker_failures: int, breaker_cooldown_s: float, transport: TransportFactory = _aiohttp):
        self._clients: dict[tuple[str, Upstream], UpstreamClient] = {}
        self._breaker = (breaker_failures, breaker_cooldown_s)
        self.transport = transport

    def get(self, name: str, spec: Upstream) -> UpstreamClient:
        key = (name, spec)
        c = self._clients.get(key)
        if c is None:
            c = UpstreamClient(name, spec, Breaker(*self._breaker), self.transport(name, spec))
            self._clients[key] = c
        return c

    def retain_only(self, used: set[tuple[str, Upstream]]) -> list[UpstreamClient]:
        gone = [k for k in self._clients if k not in used]
        return [self._clients.pop(k) for k in gone]

    async def close(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()

    def clients(self) -> list[UpstreamClient]:
        return list(self._clients.values())
