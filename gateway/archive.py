"""The embedded event archive: `<state>/events/date=YYYY-MM-DD/<writer>-<n>.jsonl`.

Files are append-only JSONL, one per writer process at a time, rotated by size, so
DuckDB can `read_json('<state>/events/**/*.jsonl')` them as they are.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

from gateway import events as ev

DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024


def events_dir(state_dir: Path) -> Path:
    return state_dir / "events"


def glob_pattern(state_dir: Path) -> str:
    return str(events_dir(state_dir) / "**" / "*.jsonl")


class ArchiveWriter:
    """Appends encoded event lines to the date partition; not thread-safe (one per writer task)."""

    def __init__(self, state_dir: Path, writer: str | None = None, rotate_bytes: int = DEFAULT_ROTATE_BYTES):
        self.root = events_dir(state_dir)
        self.writer = writer or f"{socket.gethostname()}-{os.getpid()}"
        self.rotate_bytes = rotate_bytes
        self._seq = 0
        self._path: Path | None = None
        self._date: str | None = None

    def _target(self, date: str) -> Path:
        if self._path is None or self._date != date or (
            self._path.exists() and self._path.stat().st_size >= self.rotate_bytes
        ):
            part = self.root / f"date={date}"
            part.mkdir(parents=True, exist_ok=True)
            while True:
                self._seq += 1
                path = part / f"{self.writer}-{self._seq:05d}.jsonl"
                if not path.exists() or path.stat().st_size < self.rotate_bytes:
                    break
            self._path, self._date = path, date
        return self._path

    def append(self, date: str, data: bytes, fsync: bool = True) -> None:
        """Append ready-made newline-terminated JSONL `data` to `date`'s partition (all or
        nothing). Nearly all of it is syscalls with the GIL released, so the sink's worker
        thread does not compete with the event loop."""
        _append(self._target(date), data, fsync)

    def write_lines(self, lines: Iterable[tuple[str, bytes]], fsync: bool = True) -> int:
        """Write (date, encoded-json) pairs; returns the number written. Raises OSError on failure."""
        by_date: dict[str, list[bytes]] = {}
        for date, line in lines:
            by_date.setdefault(date, []).append(line)
        n = 0
        for date, chunk in by_date.items():
            path = self._target(date)
            data = b"\n".join(chunk) + b"\n"
            _append(path, data, fsync)
            n += len(chunk)
        return n

    def write(self, events: Iterable[ev.Event], fsync: bool = True) -> int:
        return self.write_lines(((e.ts[:10], ev.encode(e)) for e in events), fsync=fsync)


def _append(path: Path, data: bytes, fsync: bool) -> None:
    """Append all of `data` or nothing: on failure (disk full part-way) the torn tail is cut,
    so a retry neither duplicates lines nor leaves half a line for readers."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        except OSError:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise
    finally:
        os.close(fd)


def append_events(state_dir: Path, events: Iterable[ev.Event]) -> int:
    """One-shot synchronous append, for CLI-side audit/decision/config events."""
    return ArchiveWriter(state_dir, writer=f"cli-{socket.gethostname()}-{os.getpid()}").write(events)
