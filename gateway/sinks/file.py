"""Embedded backend: batches are appended to the JSONL archive (`ArchiveWriter`, one fsync
per batch and date partition)."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path
from typing import Any

from gateway.archive import ArchiveWriter
from gateway.sinks.base import EventSink, Queued


class FileSink(EventSink):
    backend = "file"

    def __init__(self, state_dir: Path | str, *, writer_name: str | None = None, **kw: Any):
        super().__init__(state_dir, **kw)
        self._writer = ArchiveWriter(self.state_dir, writer=writer_name or f"{socket.gethostname()}-{os.getpid()}")

    async def _store(self, batch: list[Queued]) -> list[Queued]:
        # One write per date partition: a failure part-way requeues only what was not written.
        by_date: dict[str, list[Queued]] = {}
        for item in batch:
            by_date.setdefault(item[1], []).append(item)
        done: set[int] = set()
        for date, group in by_date.items():
            data = b"\n".join([line for _, _, line in group]) + b"\n"
            try:
                await asyncio.to_thread(self._writer.append, date, data, True)
            except OSError as exc:
                self._mark_storage(False, exc)
                return [e for e in batch if id(e) not in done]
            done.update(id(e) for e in group)
            self._count_each(group, "written")
            self.written += len(group)
        self._mark_storage(True)
        return []
