"""One upstream definition: its URLs, auth header, breaker and transport."""

from __future__ import annotations

import os

from gateway.config import Upstream
from gateway.upstream.breaker import Breaker
from gateway.upstream.transport import Transport, UpstreamResponse

REDACTED_KEY = b"[upstream key redacted]"


class UpstreamClient:
    def __init__(self, name: str, spec: Upstream, breaker: Breaker, transport: Transport):
        self.name = name
        self.spec = spec
        self.base = spec.base_url.rstrip("/")
        self.chat_url = self.base + "/chat/completions"
        self.urls = {"chat": self.chat_url, "responses": self.base + "/responses",
                     "embeddings": self.base + "/embeddings"}
        key = os.environ.get(spec.api_key_env) if spec.api_key_env else None
        self.headers = {"content-type": "application/json"}
        self.get_headers: dict[str, str] = {}
        if key:
            self.headers["authorization"] = self.get_headers["authorization"] = f"Bearer {key}"
        # upstream bodies may echo our key back (OpenAI's 401 does): scrubbed before they
        # reach the client, events or logs
        self.key = key.encode() if key else None
        self.breaker = breaker
        self.transport = transport

    def url(self, path: str) -> str:
        return self.base + path

    async def post(self, url: str, body: bytes, stream: bool) -> UpstreamResponse:
        return await self.transport.send("POST", url, self.headers, body, stream)

    async def get(self, url: str) -> UpstreamResponse:
        return await self.transport.send("GET", url, self.get_headers, None, False)

    async def delete(self, url: str) -> UpstreamResponse:
        return await self.transport.send("DELETE", url, self.get_headers, None, False)

    async def close(self) -> None:
        await self.transport.aclose()

    def scrub(self, data: bytes) -> bytes:
        return data.replace(self.key, REDACTED_KEY) if self.key and self.key in data else data

    def __repr__(self) -> str:  # never show headers: they hold the upstream key
        return f"UpstreamClient({self.name!r}, {self.spec.base_url!r})"
