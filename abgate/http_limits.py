"""Connection-level limits for the HTTP server (uvicorn + httptools), against slow and
oversized clients that never reach the app:

- **request head timeout** (`header_timeout_s`, default 10 s): a connection that has not
  sent a complete request line and header block within this time of connecting (or of its
  previous response) gets 408 and is closed. Slowloris connections never finish headers.
- **request head size** (`max_head_bytes`, default 80 KiB = 64 KiB of headers plus the
  request line): counted on the raw bytes *while reading*, so a 32 MiB header block is
  answered 431 after the first 80 KiB and never buffered.
- **body timeout** (`body_timeout_s`, default 60 s): a request whose body has not fully
  arrived this long after its headers is closed.
- **connection cap** (`max_connections` per worker, default 4096): when a new connection
  would exceed it, the connection that has waited longest for a request head (idle
  keep-alive or still sending headers) is closed to make room; only when every
  connection is busy with a request is the new one refused with 503. So a flood of slow
  connections cannot lock out health probes or real clients.

Settings reach the worker processes in the `ABGATE_HTTP_LIMITS` environment variable
(set by `abgate serve`). The protocol itself is `abgate.http_protocol`.
"""

from __future__ import annotations

import os
import resource
from dataclasses import asdict, dataclass

import msgspec

ENV_VAR = "ABGATE_HTTP_LIMITS"


@dataclass(frozen=True, slots=True)
class HttpLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    max_head_bytes: int = 80 * 1024
    max_connections: int = 4096

    def to_env(self) -> str:
        return msgspec.json.encode(asdict(self)).decode()

    @classmethod
    def from_env(cls) -> HttpLimits:
        raw = os.environ.get(ENV_VAR)
        return cls(**msgspec.json.decode(raw)) if raw else cls()


def raise_fd_limit(want: int) -> int:
    """Raise the soft open-file limit towards `want` (up to the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
