"""`abgate config show|validate|history|diff|set|weights|rollback`.

Every change goes through `gateway.config_edits` (validation, CAS, audit event)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from gateway import config as cfgmod
from gateway import config_edits as edits
from gateway import config_store as cs

app = typer.Typer(help="Show, validate, change and roll back the versioned router config.", no_args_is_help=True)


def editor(state: Path | None, redis: str | None) -> edits.ConfigEditor:
    """The config editor for CLI commands: audit events go to the archive under the state dir."""
    from gateway.variants import check_resources  # few-shot exports exist and are the routes' tenants'

    sdir = state_dir(state)
    return edits.ConfigEditor(open_store(state, redis), audit=edits.archive_audit(sdir),
                              check=lambda cfg: check_resources(cfg, sdir))


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
    """Every stored version: who changed what (traffic moves first), why, citing which decision."""
    versions = open_store(state, redis).history()
    if json:
        print_json(versions)
        return
    from rich.table import Table  # only this command draws a table: keep `config validate` quick

    table = Table("version", "created", "author", "action", "decision", "traffic change", "reason",
                  "routes (phase: weights; * = managed)")
    prev: cs.ConfigVersion | None = None
    for v in versions:
        routes = "; ".join(
            f"{n}{'*' if n in v.managed else ''} p{r.phase}: " + ",".join(f"{a.name}={a.weight:g}" for a in r.arms)
            for n, r in v.config.routes.items())
        moved = "; ".join(edits.traffic_changes(prev, v)) if prev is not None else "(initial)"
        table.add_row(str(v.version), v.created_at, v.author, v.action, v.decision_id or "", moved or "—", v.reason,
                      routes)
        prev = v
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
    reset_traffic: Annotated[bool, typer.Option(
        "--reset-traffic", help="Take weights and coverage of managed routes from FILE too.")] = False,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Store FILE's spec as a new config version (compare-and-set). Routes whose traffic
    promote/rollback/rollout manage keep their weights unless --reset-traffic."""
    try:
        data = file.read_bytes()
        cfg = cfgmod.parse_yaml(data.decode("utf-8"))
    except FileNotFoundError:
        raise fail(f"{file}: no such file") from None
    except UnicodeDecodeError as err:
        raise fail(f"{file}: not valid UTF-8 (byte {err.start})") from None
    except cfgmod.ConfigError as err:
        raise fail(f"{file}: {err}") from None
    ed = editor(state, redis)
    cur = ed.store.current()
    expected = expected_version if expected_version is not None else (cur.version if cur else None)
    try:
        out = ed.apply_authored(cfg, change=edits.Change(author or getpass.getuser(), reason), expected_version=expected,
                                reset_traffic=reset_traffic, file_sha=edits.file_sha256(data))
    except (cs.VersionConflict, edits.EditError) as err:
        raise fail(str(err)) from None
    for note in out.notes:
        console.print(f"  - {note}", highlight=False, markup=False)
    if out.written is None:
        console.print(f"nothing to change: version {out.current.version} already serves {file}", highlight=False)
    else:
        console.print(f"stored config version {out.current.version}")


def _weights(pairs: list[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for p in pairs:
        name, sep, value = p.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            out[name] = float(value)
        except ValueError:
            raise fail(f"weights are ARM=WEIGHT pairs, e.g. control=0.2 treatment=0.8; got {p!r}", 2) from None
    return out


@app.command("weights")
def weights_(
    route: Annotated[str, typer.Argument(help="Route name.")],
    weights: Annotated[list[str], typer.Argument(help="ARM=WEIGHT pairs summing to 1; arms not named get 0.")],
    reason: Annotated[str, typer.Option(help="Why (kept in history).")] = "",
    decision: Annotated[str | None, typer.Option("--decision", help="Decision id behind it, if any.")] = None,
    author: Annotated[str | None, typer.Option(help="Defaults to the OS user.")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Set ROUTE's arm weights by hand (an explicit operator change of the managed traffic state)."""
    ws = _weights(weights)
    try:
        new = editor(state, redis).set_weights(
            route, ws, change=edits.Change(author or getpass.getuser(), reason or f"set weights of {route}: "
                                           + ", ".join(f"{k}={v:g}" for k, v in ws.items()), decision))
    except (cs.VersionConflict, edits.EditError) as err:
        raise fail(str(err)) from None
    r = new.config.routes[route]
    console.print(f"config version {new.version}: {route} phase {r.phase}: {edits.weights_text(r)}", highlight=False)


@app.command("rollback")
def rollback_(
    to_version: Annotated[int, typer.Argument(help="The version whose config becomes current again.")],
    reason: Annotated[str, typer.Option()] = "",
    author: Annotated[str | None, typer.Option()] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Make an earlier version's config current again (as a new version)."""
    try:
        new = editor(state, redis).rollback_to(to_version, change=edits.Change(author or getpass.getuser(), reason))
    except (cs.VersionConflict, edits.EditError) as err:
        raise fail(str(err)) from None
    console.print(f"config version {new.version} now serves version {to_version}'s config")
