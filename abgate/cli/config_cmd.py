"""`abgate config show|validate|history|diff|set|rollback`."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from gateway import config as cfgmod
from gateway import config_store as cs
from gateway.archive import append_events

app = typer.Typer(help="Show, validate, change and roll back the versioned router config.", no_args_is_help=True)


def record(state: Path | None, new: cs.ConfigVersion, previous: int | None) -> None:
    """Audit a config change in the event archive."""
    append_events(state_dir(state), [cs.change_event(new, previous)])


def _current(store: cs.ConfigStore) -> cs.ConfigVersion:
    cur = store.current()
    if cur is None:
        raise fail("no config stored yet: run `abgate config set FILE` or `abgate serve --config FILE`")
    return cur


@app.command()
def show(
    version: Annotated[int | None, typer.Option(help="Show this version instead of the current one.")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Print the current (or a given) config version as YAML."""
    store = open_store(state, redis)
    try:
        v = store.get(version) if version is not None else _current(store)
    except cs.UnknownVersion as err:
        raise fail(str(err)) from None
    if json:
        print_json(v)
        return
    console.print(f"# version {v.version} by {v.author} at {v.created_at}: {v.reason}", highlight=False)
    console.print(cfgmod.to_yaml(v.config), highlight=False, markup=False)


@app.command()
def validate(file: Path) -> None:
    """Check a config file; print the exact field of the first problem."""
    try:
        cfg = cfgmod.parse_yaml(file.read_text())
    except FileNotFoundError:
        raise fail(f"{file}: no such file") from None
    except cfgmod.ConfigError as err:
        raise fail(f"{file}: {err}") from None
    console.print(f"[green]ok[/]: {file} ({len(cfg.routes)} routes, {len(cfg.upstreams)} upstreams)")


@app.command()
def history(state: StateDir = None, redis: RedisUrl = None, json: JsonOut = False) -> None:
    """Every stored version with author, reason and decision id."""
    versions = open_store(state, redis).history()
    if json:
        print_json(versions)
        return
    table = Table("version", "created", "author", "action", "reason", "decision", "routes (phase: weights)")
    for v in versions:
        routes = "; ".join(
            f"{n} p{r.phase}: " + ",".join(f"{a.name}={a.weight:g}" for a in r.arms) for n, r in v.config.routes.items()
        )
        table.add_row(str(v.version), v.created_at, v.author, v.action, v.reason, v.decision_id or "", routes)
    console.print(table)


@app.command()
def diff(
    a: Annotated[int, typer.Argument(help="The older version.")],
    b: Annotated[int | None, typer.Argument(help="The newer version (default: current).")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Unified diff between version A and B (default: the current one)."""
    store = open_store(state, redis)
    try:
        va = store.get(a)
        vb = store.get(b) if b is not None else _current(store)
    except cs.UnknownVersion as err:
        raise fail(str(err)) from None
    console.print(cs.diff(va, vb) or "(no difference)", highlight=False, markup=False)


@app.command("set")
def set_(
    file: Path,
    reason: Annotated[str, typer.Option(help="Why this change is made (kept in history).")] = "config set",
    expected_version: Annotated[
        int | None, typer.Option("--expected-version", help="Fail unless the store is at this version.")
    ] = None,
    author: Annotated[str | None, typer.Option(help="Defaults to the OS user.")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Store FILE as a new config version (compare-and-set)."""
    from gateway.variants import check_resources

    try:
        cfg = cfgmod.parse_yaml(file.read_text())
        check_resources(cfg, state_dir(state))  # few-shot exports exist and are the routes' tenants'
    except FileNotFoundError:
        raise fail(f"{file}: no such file") from None
    except cfgmod.ConfigError as err:
        raise fail(f"{file}: {err}") from None
    store = open_store(state, redis)
    cur = store.current()
    expected = expected_version if expected_version is not None else (cur.version if cur else None)
    try:
        new = store.put(cfg, expected_version=expected, author=author or getpass.getuser(), reason=reason)
    except cs.VersionConflict as err:
        raise fail(str(err)) from None
    record(state, new, cur.version if cur else None)
    console.print(f"stored config version {new.version}")


@app.command("rollback")
def rollback_(
    to_version: Annotated[int, typer.Argument(help="The version whose config becomes current again.")],
    reason: Annotated[str, typer.Option()] = "",
    author: Annotated[str | None, typer.Option()] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Make an earlier version's config current again (as a new version)."""
    store = open_store(state, redis)
    cur = store.current()
    try:
        new = cs.rollback(store, to_version, author=author or getpass.getuser(), reason=reason)
    except (cs.UnknownVersion, cs.VersionConflict) as err:
        raise fail(str(err)) from None
    record(state, new, cur.version if cur else None)
    console.print(f"config version {new.version} now serves version {to_version}'s config")
