"""Where compacted days live and which days are read from Parquet (see `evaluation.compact`).

Kept apart from `compact` so the archive reader (`archive_sql`) can ask which sources to read
without importing the compactor, which itself reads through `archive_sql`.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

from gateway.archive import events_dir, glob_pattern

MANIFEST = "manifest.json"
PARQUET = "events.parquet"


def compact_dir(state_dir: Path) -> Path:
    return state_dir / "compact"


def day_files(state_dir: Path) -> dict[str, list[Path]]:
    """JSONL files per `date=YYYY-MM-DD` partition."""
    out: dict[str, list[Path]] = {}
    root = events_dir(state_dir)
    if not root.is_dir():
        return out
    for part in sorted(root.glob("date=*")):
        if part.is_dir():
            files = sorted(part.rglob("*.jsonl"))
            if files:
                out[part.name.removeprefix("date=")] = files
    return out


def fingerprint(files: list[Path]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for f in files:
        st = f.stat()
        out[str(f)] = [st.st_size, st.st_mtime_ns]
    return out


def valid_parquet(state_dir: Path, day: str, files: list[Path]) -> Path | None:
    d = compact_dir(state_dir) / f"date={day}"
    try:
        manifest = json.loads((d / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    pq = d / PARQUET
    if manifest.get("files") != fingerprint(files) or not pq.exists():
        return None
    return pq


def split_sources(state_dir: Path) -> tuple[list[str], list[str]]:
    """(Parquet files of valid compacted days, every other JSONL file of the archive: the
    days not compacted and any file outside a `date=` partition)."""
    every = sorted(glob.glob(glob_pattern(state_dir), recursive=True))
    if not compact_dir(state_dir).is_dir():
        return [], every
    parquet: list[str] = []
    covered: set[str] = set()
    for day, files in day_files(state_dir).items():
        pq = valid_parquet(state_dir, day, files)
        if pq is not None:
            parquet.append(str(pq))
            covered.update(str(f) for f in files)
    return parquet, [f for f in every if f not in covered]
