"""The rescue spool: where a stopping sink puts events its primary storage refuses.

A SIGTERM while the state disk is full must not discard the queue. The rescue spool is a
directory on another file system: `ABGATE_RESCUE_DIR` when set, else
`/dev/shm/abgate-rescue-<hash of the state dir>` (tmpfs: survives a process restart, not a
reboot), else the system temp dir. Files there are complete fsynced batches (the same
format as the Redis-mode spool); the next sink start for that state dir moves them into
the archive (or the stream) and deletes them. `abgate serve` exits with status 75
(EX_TEMPFAIL) and says so when its workers rescued or lost events at stop.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import msgspec

from gateway.spool import Spool

ENV_VAR = "ABGATE_RESCUE_DIR"
UNCLEAN_EXIT = 75  # EX_TEMPFAIL
_MARKER = "lost-"


def rescue_dir(state_dir: Path) -> Path:
    explicit = os.environ.get(ENV_VAR)
    if explicit:
        return Path(explicit)
    tag = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:12]
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())
    return base / f"abgate-rescue-{tag}"


def _spool(directory: Path) -> Spool:
    return Spool(directory=directory)


def _private_dir(directory: Path) -> None:
    """The rescue spool holds conversations: a directory only this user can read, and not a
    symlink someone planted under a shared /dev/shm or /tmp."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.lstat(directory)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        raise OSError(f"rescue dir {directory} is not a directory owned by this user")
    if st.st_mode & 0o077:
        os.chmod(directory, 0o700)


def write(directory: Path, lines: list[bytes]) -> Path:
    """Durably store `lines` in the rescue spool; raises OSError when that disk fails too."""
    _private_dir(directory)
    return _spool(directory).write(lines)


def files(directory: Path) -> list[Path]:
    return _spool(directory).files()


@contextmanager
def claim(path: Path) -> Iterator[list[bytes] | None]:
    with _spool(path.parent).claim(path) as lines:
        yield lines


def done(path: Path) -> None:
    _spool(path.parent).done(path)


def report_unclean(directory: Path, *, lost: int) -> None:
    """Leave a marker saying events were lost (best effort: that disk may be full too)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{_MARKER}{os.getpid()}-{time.time_ns()}.json").write_bytes(
            msgspec.json.encode({"pid": os.getpid(), "lost": lost, "ts": time.time()}))
    except OSError:
        pass


@dataclass(frozen=True, slots=True)
class StopReport:
    rescued_files: tuple[Path, ...]
    rescued_events: int
    lost_events: int

    @property
    def clean(self) -> bool:
        return not self.rescued_files and self.lost_events == 0


def stop_report(directory: Path, since: float) -> StopReport:
    """What the workers of a run that started at `since` (time.time()) left behind."""
    if not directory.is_dir():
        return StopReport((), 0, 0)
    rescued = tuple(p for p in files(directory) if p.stat().st_mtime >= since)
    n = 0
    for p in rescued:
        with open(p, "rb") as f:
            n += sum(1 for line in f if line.strip())
    lost = 0
    for p in directory.glob(f"{_MARKER}*.json"):
        if p.stat().st_mtime >= since:
            try:
                lost += int(msgspec.json.decode(p.read_bytes()).get("lost", 0))
            except (OSError, msgspec.DecodeError, AttributeError, ValueError):
                lost += 1
    return StopReport(rescued, n, lost)
