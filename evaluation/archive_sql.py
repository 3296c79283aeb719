"""Reading the JSONL event archive with DuckDB.

The archive is read with an explicit column list (one stable schema, no sampling) and
`ignore_errors`, which turns an unparseable line into an all-NULL row instead of failing
the whole scan. Every real event has a `kind`, so `kind IS NULL` counts those lines
exactly; the files they are in are then scanned in Python for line numbers, so a
report can say where the damage is. Corrupt lines make the analysis untrustworthy.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import msgspec

from gateway.archive import events_dir, glob_pattern

COLUMNS: dict[str, str] = {
    "event_id": "VARCHAR",
    "kind": "VARCHAR",
    "ts": "VARCHAR",
    "route": "VARCHAR",
    "experiment": "VARCHAR",
    "arm": "VARCHAR",
    "phase": "BIGINT",
    "config_version": "BIGINT",
    "interaction_id": "VARCHAR",
    "unit": "VARCHAR",
    "traffic": "VARCHAR",
    "model": "VARCHAR",
    "status": "VARCHAR",
    "latency_ms": "DOUBLE",
    "ttft_ms": "DOUBLE",
    "prompt_tokens": "DOUBLE",
    "completion_tokens": "DOUBLE",
    "cost_usd": "DOUBLE",
    "metric": "VARCHAR",
    "value": "JSON",
}

MAX_REPORTED_LINES = 20


@dataclass(frozen=True, slots=True)
class CorruptLine:
    path: str
    line: int
    error: str


@dataclass(frozen=True, slots=True)
class ArchiveHealth:
    files: int
    corrupt_lines: int
    examples: tuple[CorruptLine, ...] = field(default=())  # first few, with line numbers

    @property
    def ok(self) -> bool:
        return self.corrupt_lines == 0


def archive_files(state_dir: Path) -> list[str]:
    return sorted(glob.glob(glob_pattern(state_dir), recursive=True))


def read_json_sql(state_dir: Path) -> str:
    """A `read_json(...)` table expression over the whole archive."""
    cols = ", ".join(f"'{k}': '{v}'" for k, v in COLUMNS.items())
    pattern = glob_pattern(state_dir).replace("'", "''")
    return (
        f"read_json('{pattern}', format='newline_delimited', columns={{{cols}}}, "
        "ignore_errors=true, filename=true, maximum_object_size=67108864)"
    )


def connect(threads: int | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    if threads:
        con.execute(f"SET threads={int(threads)}")
    con.execute("SET preserve_insertion_order=false")  # lets scans and aggregates run in parallel
    return con


def locate_corrupt(paths: list[str], limit: int = MAX_REPORTED_LINES) -> list[CorruptLine]:
    """Line numbers of lines that are not one JSON object with a `kind` (first `limit`)."""
    out: list[CorruptLine] = []
    decoder = msgspec.json.Decoder()
    for path in paths:
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, start=1):
                if not raw.strip():
                    continue
                try:
                    obj = decoder.decode(raw)
                    if not isinstance(obj, dict) or "kind" not in obj:
                        raise ValueError("not an event object (no `kind`)")
                except (msgspec.DecodeError, ValueError) as e:
                    out.append(CorruptLine(path, lineno, str(e)[:200]))
                    if len(out) >= limit:
                        return out
    return out


def health_from_counts(state_dir: Path, bad_by_file: dict[str, int]) -> ArchiveHealth:
    files = archive_files(state_dir) if events_dir(state_dir).exists() else []
    total = sum(bad_by_file.values())
    examples = tuple(locate_corrupt(sorted(p for p, n in bad_by_file.items() if n))) if total else ()
    return ArchiveHealth(files=len(files), corrupt_lines=total, examples=examples)
