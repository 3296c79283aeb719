"""`abgate models list|add-arm`: the model version table and adding a candidate to a route."""

from __future__ import annotations

import getpass
import re
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from gateway import config_store as cs
from gateway.config import Arm, ConfigError, ModelInfo, validate
from gateway.config_edits import Change, ConfigEditor, EditError, archive_audit
from training.registry import Registry

app = typer.Typer(help="Model versions from fine-tuning, and adding them to routes.", no_args_is_help=True)
Opt = typer.Option


@app.command("list")
def list_(tenant: Annotated[str | None, Opt()] = None, state: StateDir = None, json: JsonOut = False) -> None:
    """Version table: version, date, examples, base model, dataset, notes, model id."""
    with Registry(state_dir(state)) as reg:
        rows = reg.model_versions(tenant)
    if json:
        print_json(rows)
        return
    t = Table("version", "date", "examples", "base model", "dataset", "notes", "model id", "tenant")
    for r in rows:
        t.add_row(r["version"], r["date"], str(r["examples"] or ""), r["base_model"], r["dataset_id"] or "",
                  r["notes"], r["model_id"], r["tenant_id"])
    console.print(t)


def default_arm_name(model: str, taken: set[str]) -> str:
    tail = model.split(":")[-1] if model.startswith("ft:") else model
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", f"ft-{tail}" if model.startswith("ft:") else tail)[:100] or "candidate"
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name


@app.command("add-arm")
def add_arm(
    route: str,
    model: str,
    arm_name: Annotated[str | None, Opt("--arm-name", help="Default: derived from the model id.")] = None,
    reason: Annotated[str | None, Opt()] = None,
    author: Annotated[str | None, Opt()] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Add MODEL to ROUTE as a new arm at weight 0 (a new config version, audited)."""
    store = open_store(state, redis)
    cur = store.current()
    if cur is None:
        raise fail("no config stored yet: run `abgate config set FILE` first")
    r = cur.config.routes.get(route)
    if r is None:
        raise fail(f"unknown route {route!r} (routes: {', '.join(cur.config.routes) or 'none'})")
    if any(a.model == model for a in r.arms):
        raise fail(f"route {route!r} already has an arm serving {model!r}")
    taken = {a.name for a in r.arms}
    name = arm_name or default_arm_name(model, taken)
    if name in taken:
        raise fail(f"route {route!r} already has an arm named {name!r}")
    models = dict(cur.config.models)
    control = models.get(r.arms[0].model)
    if model not in models and control is not None:
        # same upstream and prices as control until someone sets the candidate's own prices
        models[model] = ModelInfo(upstream=control.upstream, input_per_mtok=control.input_per_mtok,
                                  output_per_mtok=control.output_per_mtok)
    new_route = msgspec.structs.replace(r, arms=(*r.arms, Arm(name=name, model=model, weight=0.0)))
    raw = msgspec.to_builtins(msgspec.structs.replace(
        cur.config, routes={**cur.config.routes, route: new_route}, models=models))
    try:
        cfg = validate(raw)
    except ConfigError as err:
        raise fail(f"the new config would be invalid: {err}") from None
    try:
        new = ConfigEditor(store, audit=archive_audit(state_dir(state))).commit(
            cfg, expected_version=cur.version, action="add_arm",
            change=Change(author or getpass.getuser(), reason or f"add {model} to {route} as arm {name} at weight 0"))
    except (cs.VersionConflict, EditError) as err:
        raise fail(str(err)) from None
    console.print(f"config version {new.version}: route {route} arm [cyan]{name}[/] -> {model} at weight 0 "
                  f"(phase {new.config.routes[route].phase})", highlight=False)
