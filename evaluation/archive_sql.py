"""Reading the event archive with DuckDB: the one reader (analysis, dataset building,
`abgate events stats` and the benchmarks all go through it).

The archive is JSONL as `gateway.archive.ArchiveWriter` writes it; closed days may also be
compacted to Parquet (`evaluation.compact`), and `load_events` then reads the Parquet file of
every compacted day whose JSONL files are unchanged and the JSONL of every other day.
"Latest feedback wins" is written once, in `latest_feedback_sql`.

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

from evaluation import compact_layout
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

# Columns other readers need besides the analysis' (dataset building reads conversations).
EXTRA_COLUMNS: dict[str, str] = {
    "tenant": "VARCHAR",
    "messages": "JSON",
    "response": "VARCHAR",
    "source": "VARCHAR",
    "extra": "JSON",
}
ALL_COLUMNS: dict[str, str] = {**COLUMNS, **EXTRA_COLUMNS}

# Event time as a timestamp: RFC 3339 strings with or without fractions or offsets sort
# wrongly as text ("...:05Z" > "...:05.900Z"). Unparseable times sort first.
TS_SQL = "coalesce(TRY_CAST(ts AS TIMESTAMPTZ), TIMESTAMPTZ '-infinity')"

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


def _lit(path: str) -> str:
    return "'" + path.replace("'", "''") + "'"


def read_json_sql(state_dir: Path, columns: dict[str, str] | None = None, files: list[str] | None = None) -> str:
    """A `read_json(...)` table expression over the whole JSONL archive (or `files`), with an
    explicit column list (one stable schema, no sampling) and `filename`."""
    cols = ", ".join(f"'{k}': '{v}'" for k, v in (columns or COLUMNS).items())
    src = "[" + ", ".join(_lit(f) for f in files) + "]" if files is not None else _lit(glob_pattern(state_dir))
    return (
        f"read_json({src}, format='newline_delimited', columns={{{cols}}}, "
        "ignore_errors=true, filename=true, maximum_object_size=67108864)"
    )


def load_events(con: duckdb.DuckDBPyConnection, name: str, state_dir: Path, *, experiment: str | None = None,
                kinds: tuple[str, ...] = (), columns: dict[str, str] | None = None) -> dict[str, int]:
    """Create the view `name` over every readable event (of `experiment` and `kinds`, when
    given) and return the unreadable lines per JSONL file.

    JSONL is parsed once: its matching rows are materialized into the table `<name>_jsonl`.
    Compacted Parquet days are read in place (column and filter pushdown, no copy), which
    is what makes an analysis over compacted days fast.
    """
    cols = columns or COLUMNS
    names = ", ".join(f'"{k}"' for k in cols)
    conds = ([f"experiment = {_lit(experiment)}"] if experiment is not None else []) + (
        [f"kind IN ({', '.join(map(_lit, kinds))})"] if kinds else [])
    where = " AND ".join(conds) or "true"
    parquet, jsonl = compact_layout.split_sources(state_dir)
    parts: list[str] = []
    bad: dict[str, int] = {}
    if jsonl:
        con.execute(f"CREATE TEMP TABLE {name}_jsonl AS SELECT {names}, filename "
                    f"FROM {read_json_sql(state_dir, cols, jsonl)} WHERE kind IS NULL OR ({where})")
        bad = {f: int(n) for f, n in con.execute(
            f"SELECT filename, count(*) FROM {name}_jsonl WHERE kind IS NULL GROUP BY 1").fetchall()}
        parts.append(f"SELECT {names} FROM {name}_jsonl WHERE kind IS NOT NULL")
    if parquet:
        parts.append(f"SELECT {names} FROM read_parquet([{', '.join(map(_lit, parquet))}]) WHERE {where}")
    if not parts:
        parts.append("SELECT " + ", ".join(f'NULL::{t} AS "{k}"' for k, t in cols.items()) + " WHERE false")
    con.execute(f"CREATE TEMP VIEW {name} AS " + " UNION ALL ".join(parts))
    return bad


def latest_feedback_sql(source: str, columns: tuple[str, ...] = ("value",), where: str = "") -> str:
    """SELECT interaction_id, metric, <columns> of the latest feedback event per (interaction,
    metric): by parsed timestamp, ties by the larger event_id; exact duplicates collapse."""
    cond = f" AND ({where})" if where else ""
    key = f"({TS_SQL}, coalesce(event_id, ''))"
    if len(columns) == 1:  # one column: no struct to pack (cheaper)
        latest, picked = f"arg_max({columns[0]}, {key}) AS {columns[0]}", columns[0]
    else:
        packed = ", ".join(f"{c} := {c}" for c in columns)
        latest, picked = f"arg_max(struct_pack({packed}), {key}) AS l", ", ".join(f"l.{c} AS {c}" for c in columns)
    return (
        f"SELECT interaction_id, metric, {picked} FROM ("
        f"SELECT interaction_id, metric, {latest} "
        f"FROM {source} WHERE kind = 'feedback' AND metric IS NOT NULL AND interaction_id IS NOT NULL{cond} "
        "GROUP BY interaction_id, metric)"
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
