"""`abgate archive` (Redis-mode consumer) and `abgate events stats` (event counts from the archive)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, print_json, state_dir

events_app = typer.Typer(help="Inspect the event archive.", no_args_is_help=True)


def archive(
    redis: RedisUrl = None,
    state: StateDir = None,
    consumer: Annotated[str | None, typer.Option(help="Consumer name in group abgate-archive "
                                                 "(default: host name; give each archiver its own).")] = None,
    batch: Annotated[int, typer.Option(min=1, max=100_000, help="Entries per read.")] = 1000,
    claim_idle_ms: Annotated[int, typer.Option(min=0, help="Take over a dead consumer's entries "
                                                "pending longer than this.")] = 60_000,
    lease_s: Annotated[float, typer.Option(min=0.5, help="Consumer-name lease; a restart waits at most this.")] = 10.0,
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Exit once nothing is new or pending.")] = False,
    keep_stream: Annotated[bool, typer.Option("--keep-stream", help="Do not XDEL archived entries.")] = False,
    json_out: JsonOut = False,
) -> None:
    """Consume the Redis stream `abgate:events` into the JSONL archive (fsync, then ack)."""
    from gateway.archiver import Archiver, ArchiverError, Stats

    if not redis:
        raise fail("`abgate archive` needs --redis URL (or ABGATE_REDIS_URL); embedded mode writes the "
                   "archive directly", 2)
    sd = state_dir(state)
    stopping = {"flag": False}

    def _stop(signum: int, frame: Any) -> None:
        stopping["flag"] = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    arch = Archiver(redis, sd, consumer=consumer, batch=batch, claim_idle_ms=claim_idle_ms, lease_s=lease_s,
                    delete_acked=not keep_stream)

    def table(s: Stats) -> Table:
        t = Table(title=f"abgate archive -> {sd / 'events'} (consumer {arch.consumer})")
        for col in ("read", "written", "duplicates", "rejected", "recovered"):
            t.add_column(col, justify="right")
        t.add_row(*(str(getattr(s, c)) for c in ("read", "written", "duplicates", "rejected", "recovered")))
        return t

    try:
        if json_out or not console.is_terminal:
            stats = arch.run(stop=lambda: stopping["flag"], until_idle=until_idle)
        else:
            with Live(table(arch.stats), console=console, refresh_per_second=4) as live:
                stats = arch.run(stop=lambda: stopping["flag"], until_idle=until_idle,
                                 on_batch=lambda s: live.update(table(s)))
    except ArchiverError as exc:
        raise fail(str(exc)) from None
    except Exception as exc:  # redis errors at startup (bad URL, auth)
        raise fail(f"archiver stopped: {exc}") from None
    finally:
        arch.close()
    if json_out:
        print_json({"read": stats.read, "written": stats.written, "duplicates": stats.duplicates,
                    "rejected": stats.rejected, "recovered": stats.recovered, "by_kind": stats.by_kind})
    else:
        console.print(table(stats))


def count_events(sd: Path) -> dict[str, Any]:
    """Events per kind (and corrupt lines) in the archive, read by DuckDB as it is."""
    import duckdb

    from evaluation import archive_sql
    from gateway.archive import events_dir

    root = events_dir(sd)
    if not root.is_dir() or not any(root.rglob("*.jsonl")):
        return {"total": 0, "by_kind": {}, "files": 0, "unreadable_lines": 0, "unreadable": [],
                "first_ts": None, "last_ts": None}
    con = duckdb.connect()
    try:
        # Only `kind` and `ts` are read: every kind has them, so one stable schema; lines
        # that are not JSON objects come back as NULL kind and are counted, not hidden.
        rel = archive_sql.read_json_sql(sd, {"kind": "VARCHAR", "ts": "VARCHAR"})  # the one archive reader
        rows = con.execute(f"SELECT kind, count(*), min(ts), max(ts) FROM {rel} GROUP BY kind").fetchall()
        files = con.execute(f"SELECT count(DISTINCT filename) FROM {rel}").fetchone()
        lines = 0
        for p in root.rglob("*.jsonl"):
            with open(p, "rb") as f:
                lines += sum(1 for ln in f if ln.strip())
    finally:
        con.close()
    by_kind = {k: n for k, n, _, _ in rows if k is not None}
    total = sum(by_kind.values())
    ts = [t for _, _, lo, hi in rows for t in (lo, hi) if t]
    # where the unreadable lines are (first few), so they can be inspected, not just counted
    unreadable = []
    if lines > total:
        from evaluation.archive_sql import locate_corrupt

        unreadable = [f"{c.path}:{c.line}: {c.error}" for c in locate_corrupt(sorted(map(str, root.rglob("*.jsonl"))))]
    return {"total": total, "by_kind": dict(sorted(by_kind.items())), "files": files[0] if files else 0,
            "unreadable_lines": lines - total, "unreadable": unreadable, "first_ts": min(ts) if ts else None,
            "last_ts": max(ts) if ts else None}


@events_app.command("stats")
def stats(
    state: StateDir = None,
    watch: Annotated[float, typer.Option(min=0, help="Refresh every N seconds until Ctrl-C (0 = once).")] = 0,
    json_out: JsonOut = False,
) -> None:
    """Count archived events per kind (DuckDB over <state>/events/**/*.jsonl)."""
    sd = state_dir(state)

    def table(c: dict[str, Any]) -> Table:
        t = Table(title=f"events in {sd / 'events'}")
        t.add_column("kind")
        t.add_column("events", justify="right")
        for kind, n in c["by_kind"].items():
            t.add_row(kind, str(n))
        t.add_row("[bold]total[/]", f"[bold]{c['total']}[/]")
        if c["unreadable_lines"]:
            t.add_row("[red]unreadable lines[/]", f"[red]{c['unreadable_lines']}[/]")
        t.caption = f"{c['files']} files; {c['first_ts'] or '-'} .. {c['last_ts'] or '-'}"
        return t

    try:
        counts = count_events(sd)
    except Exception as exc:
        raise fail(f"cannot read the archive: {exc}") from None
    if json_out:
        print_json(counts)
        return
    if watch <= 0:
        console.print(table(counts))
        for where in counts["unreadable"]:
            console.print(f"  {where}", highlight=False, markup=False)
        return
    try:
        with Live(table(counts), console=console, refresh_per_second=2) as live:
            while True:
                time.sleep(watch)
                live.update(table(count_events(sd)))
    except KeyboardInterrupt:
        pass


def _register_compact() -> None:
    from abgate.cli.compact_cmd import compact

    events_app.command("compact")(compact)


_register_compact()
