"""Upstream side of the gateway: clients, breakers and the pool behind a transport seam."""

from gateway.upstream.breaker import Breaker
from gateway.upstream.client import UpstreamClient
from gateway.upstream.pool import TransportFactory, UpstreamPool
from gateway.upstream.transport import (
                                        AiohttpTransport,
                                        MockResponse,
                                        MockTransport,
                                        Transport,
                                        UpstreamConnectionError,
                                        UpstreamRequest,
                                        UpstreamResponse,
)

__all__ = ["AiohttpTransport", "Breaker", "MockResponse", "MockTransport", "Transport", "TransportFactory",
           "UpstreamClient", "UpstreamConnectionError", "UpstreamPool", "UpstreamRequest", "UpstreamResponse"]
