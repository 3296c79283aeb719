"""Compact closed days of the JSONL archive to Parquet; the hot path is unchanged.

`compact(state_dir)` writes, for every day before today (UTC) that is not compacted yet,
`<state>/compact/date=YYYY-MM-DD/events.parquet` with every column a reader uses, and
then a manifest naming the day's JSONL files with their size and mtime. The JSONL files
stay where they are (they remain the source of truth); `archive_sql.load_events` reads a
day's Parquet only while its JSONL files are exactly the ones in the manifest, so an
event appended to a closed day later (a spool replay) is never missed: that day is read
from JSONL again until it is compacted again. A day with unreadable lines is not compacted
(the analysis must keep reporting them with file and line).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from evaluation import archive_sql
from evaluation.compact_layout import MANIFEST, PARQUET, compact_dir, day_files, fingerprint, valid_parquet


@dataclass(frozen=True, slots=True)
class DayResult:
    day: str
    action: str  # "compacted", "up to date", "skipped"
    events: int = 0
    jsonl_bytes: int = 0
    parquet_bytes: int = 0
    reason: str = ""


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def compact(state_dir: Path, *, today: date | None = None, threads: int | None = None) -> list[DayResult]:
    """Compact every closed day (before `today`, UTC) that is not compacted or has changed."""
    today = today or datetime.now(UTC).date()
    results: list[DayResult] = []
    con = archive_sql.connect(threads)
    try:
        for day, files in day_files(state_dir).items():
            try:
                closed = date.fromisoformat(day) < today
            except ValueError:
                results.append(DayResult(day, "skipped", reason="partition name is not a date"))
                continue
            if not closed:
                results.append(DayResult(day, "skipped", reason="day not closed yet (writers may append)"))
                continue
            jsonl_bytes = sum(f.stat().st_size for f in files)
            if valid_parquet(state_dir, day, files) is not None:
                results.append(DayResult(day, "up to date", jsonl_bytes=jsonl_bytes))
                continue
            fp = fingerprint(files)
            src = archive_sql.read_json_sql(state_dir, archive_sql.ALL_COLUMNS, [str(f) for f in files])
            row = con.execute(f"SELECT count(*) FILTER (WHERE kind IS NULL), count(*) FROM {src}").fetchone()
            bad, total = row if row is not None else (0, 0)
            if bad:
                results.append(DayResult(day, "skipped", jsonl_bytes=jsonl_bytes,
                                         reason=f"{bad} unreadable line(s); left as JSONL so they stay reported"))
                continue
            out = compact_dir(state_dir) / f"date={day}"
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / f".{PARQUET}.tmp"
            cols = ", ".join(f'"{k}"' for k in archive_sql.ALL_COLUMNS)
            con.execute(f"COPY (SELECT {cols} FROM {src}) TO '{str(tmp).replace(chr(39), chr(39) * 2)}' "
                        "(FORMAT PARQUET, COMPRESSION ZSTD, ROW_GROUP_SIZE 500000)")
            os.replace(tmp, out / PARQUET)
            if fingerprint(files) != fp:  # appended while we read: not valid, try again next time
                results.append(DayResult(day, "skipped", reason="JSONL changed during compaction"))
                continue
            manifest = {"day": day, "files": fp, "events": int(total),
                        "written_at": datetime.now(UTC).isoformat(timespec="seconds")}
            _write_atomic(out / MANIFEST, json.dumps(manifest, indent=1).encode())
            results.append(DayResult(day, "compacted", int(total), jsonl_bytes, (out / PARQUET).stat().st_size))
    finally:
        con.close()
    return results
