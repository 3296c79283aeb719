"""Event sinks: one interface (`EventSink`), one class per backend.

- `FileSink` (embedded): the JSONL archive under the state dir.
- `RedisSink` (Redis mode): the `abgate:events` stream, with a local disk spool.

`open_sink(state_dir, redis_url)` picks the backend the deployment uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.sinks.base import EventSink, SinkMetrics
from gateway.sinks.file import FileSink
from gateway.sinks.redis import STREAM, STREAM_FIELD, RedisSink

__all__ = ["STREAM", "STREAM_FIELD", "EventSink", "FileSink", "RedisSink", "SinkMetrics", "open_sink"]


def open_sink(state_dir: Path | str, redis_url: str | None = None, **kw: Any) -> EventSink:
    if redis_url:
        return RedisSink(state_dir, redis_url, **kw)
    return FileSink(state_dir, **kw)
