"""Local disk spool for Redis mode: encoded event batches that could not reach Redis.

Each batch is one file `<state>/spool/<ms>-<pid>-<seq>.jsonl`, written to a `.tmp`
name, fsynced, then renamed, so a reader only ever sees complete batches. Replay takes
an exclusive `flock` on a file before sending it, so several gateway processes sharing
a state dir (or a restarted one picking up a dead one's spool) never replay a file twice
at the same time; the archiver's dedupe by `event_id` covers a replay that was cut short.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

SUFFIX = ".jsonl"


def spool_dir(state_dir: Path) -> Path:
    return state_dir / "spool"


class Spool:
    def __init__(self, state_dir: Path | None = None, *, directory: Path | None = None):
        if directory is None:
            if state_dir is None:
                raise ValueError("Spool needs a state dir or a directory")
            directory = spool_dir(state_dir)
        self.dir = directory
        self._seq = itertools.count(1)

    def write(self, lines: Sequence[bytes]) -> Path:
        """Durably store one batch of encoded events; raises OSError (e.g. disk full)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns() // 1_000_000:015d}-{os.getpid()}-{next(self._seq):06d}"
        tmp = self.dir / f".{name}.tmp"
        final = self.dir / f"{name}{SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                f.write(b"\n".join(lines) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.rename(tmp, final)
            _fsync_dir(self.dir)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
        return final

    def files(self) -> list[Path]:
        """Complete spool files, oldest first."""
        if not self.dir.is_dir():
            return []
        return sorted(p for p in self.dir.iterdir() if p.suffix == SUFFIX and not p.name.startswith("."))

    def pending(self) -> bool:
        return bool(self.files())

    @contextmanager
    def claim(self, path: Path) -> Iterator[list[bytes] | None]:
        """Lock `path` and yield its lines (None if another process holds it or it is gone).

        The caller deletes the file with `done(path)` inside the block once the lines are
        safely elsewhere; leaving the block without it keeps the file for a later replay.
        """
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            yield None
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield None
                return
            if not path.exists():  # replayed and unlinked by someone between open and lock
                yield None
                return
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
            yield read_lines(data, path)
        finally:
            os.close(fd)

    def done(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        _fsync_dir(self.dir)


def read_lines(data: bytes, path: Path) -> list[bytes]:
    """Split a spool file into lines; a torn last line (cannot happen with rename, but a
    hand-copied file might) is reported and skipped rather than replayed as garbage."""
    lines = [ln for ln in data.split(b"\n") if ln.strip()]
    if data and not data.endswith(b"\n") and lines:
        log.warning("spool_torn_line", file=str(path))
        lines.pop()
    return lines


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
