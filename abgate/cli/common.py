"""Options shared by every command, and the objects they open."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console
from rich.table import Table

from gateway.config_store import ConfigStore, FileConfigStore
from gateway.state import resolve_state_dir

StateDir = Annotated[
    Path | None,
    typer.Option("--state-dir", envvar="ABGATE_HOME", help="State directory (default ./.abgate)."),
]
RedisUrl = Annotated[
    str | None,
    typer.Option("--redis", envvar="ABGATE_REDIS_URL", help="Redis URL; absent = embedded mode."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

# Messages piped to a file or a log collector are not wrapped at 80 columns (a grep for a message
# must find it whatever path precedes it); on a terminal rich wraps them as usual. Tables keep
# their width either way.
console = Console(soft_wrap=not sys.stdout.isatty())
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())
# Console() freezes $COLUMNS at import; without a frozen width rich reads it (or the terminal) live,
# so a table is as wide as the terminal the command runs in, not the one the module was imported in.
console._width = err_console._width = None

# Exit codes (DESIGN.md "CLI").
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
EXIT_NOGO, EXIT_HOLD = 3, 4


def state_dir(path: Path | None) -> Path:
    return resolve_state_dir(path)


def open_store(state: Path | None, redis_url: str | None = None) -> ConfigStore:
    """The config store for this deployment: Redis when a URL is given, else the file store."""
    if redis_url:
        from gateway.redis_store import RedisConfigStore

        return RedisConfigStore.from_url(redis_url)
    return FileConfigStore(state_dir(state))


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(msgspec.to_builtins(obj), indent=2, default=str) + "\n")


def fail(message: str, code: int = EXIT_ERROR) -> typer.Exit:
    """Print an error and return the Exit to raise: `raise fail("...")`."""
    err_console.print(f"[bold red]error:[/] {message}", soft_wrap=True, highlight=False)
    return typer.Exit(code)


ID_COLUMNS = frozenset({"id", "run", "job", "model", "result model", "model id", "dataset", "decision", "base model"})


def table(*headers: str, title: str | None = None, ids: frozenset[str] | set[str] = ID_COLUMNS) -> Table:
    """A rich Table whose id-like columns are never cut: they stay on one line when the terminal
    allows, and fold onto the next line instead of ending in an ellipsis when it does not."""
    t = Table(title=title)
    for h in headers:
        if h.lower() in ids or h.lower().endswith((" id", " model")):
            t.add_column(h, no_wrap=True, overflow="fold")
        else:
            t.add_column(h)
    return t
