"""`abgate events compact`: closed days of the archive to Parquet (analysis reads both)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import typer

from abgate.cli.common import JsonOut, StateDir, console, fail, print_json, state_dir


def compact(
    today: Annotated[str | None, typer.Option(help="Compact days before this date (YYYY-MM-DD; default: today, UTC).")]
    = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Write `<state>/compact/date=D/events.parquet` for every closed day; JSONL stays as it is."""
    from evaluation import compact as compaction  # duckdb: only when used

    try:
        day = date.fromisoformat(today) if today else None
    except ValueError:
        raise fail(f"--today must be YYYY-MM-DD, got {today!r}", 2) from None
    results = compaction.compact(state_dir(state), today=day)
    if json:
        print_json([{"day": r.day, "action": r.action, "events": r.events, "jsonl_bytes": r.jsonl_bytes,
                     "parquet_bytes": r.parquet_bytes, "reason": r.reason} for r in results])
        return
    for r in results:
        extra = (f"{r.events:,} events, {r.jsonl_bytes / 1e6:.1f} MB JSONL -> {r.parquet_bytes / 1e6:.1f} MB Parquet"
                 if r.action == "compacted" else r.reason)
        console.print(f"{r.day}  {r.action:<10} {extra}", highlight=False, markup=False)
    if not results:
        console.print("no archive days", highlight=False)
