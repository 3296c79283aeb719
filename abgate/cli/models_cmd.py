"""`abgate models list|add-arm|check`: the model version table, adding a candidate to a route, and
the arms whose models retire soon."""

from __future__ import annotations

import getpass
import re
from datetime import date
from typing import Annotated, Any

import msgspec
import typer
from rich.table import Table

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from gateway import config_store as cs
from gateway.config import Arm, ConfigError, ModelInfo, RouterConfig, Upstream, validate
from gateway.config_edits import Change, ConfigEditor, EditError, archive_audit
from training.providers.openai import fine_tuned_inference_price
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
    input_per_mtok: Annotated[float | None, Opt(help="USD per 1M input tokens (default: the provider's "
                                                     "fine-tuned rate, e.g. OpenAI's ft: prices).")] = None,
    output_per_mtok: Annotated[float | None, Opt(help="USD per 1M output tokens.")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
) -> None:
    """Add MODEL to ROUTE as a new arm at weight 0 (a new config version, audited).

    A model version from the registry brings its serving config: an hf-lora adapter adds the
    vLLM upstream it is served on; an OpenAI `ft:` model is priced at OpenAI's fine-tuned rate.
    """
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
    with Registry(state_dir(state)) as reg:
        version = reg.model_version_by_model(model)
    upstreams, models, note = candidate_entries(cur.config, r.arms[0].model, model,
                                                version["serving"] if version else None, input_per_mtok,
                                                output_per_mtok)
    new_route = msgspec.structs.replace(r, arms=(*r.arms, Arm(name=name, model=model, weight=0.0)))
    raw = msgspec.to_builtins(msgspec.structs.replace(
        cur.config, routes={**cur.config.routes, route: new_route}, models=models, upstreams=upstreams))
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
    if note:
        console.print(note, highlight=False, soft_wrap=True)


def candidate_entries(
    config: RouterConfig,
    control_model: str,
    model: str,
    serving: dict[str, object] | None,
    input_per_mtok: float | None,
    output_per_mtok: float | None,
) -> tuple[dict[str, Upstream], dict[str, ModelInfo], str]:
    """The upstreams and models sections with the candidate's entry: its serving upstream and its own prices."""
    upstreams, models = dict(config.upstreams), dict(config.models)
    control = models.get(control_model)
    existing = models.get(model)
    note = ""
    up_name = existing.upstream if existing else None
    if serving and isinstance(serving.get("upstream"), str):
        up_name = str(serving["upstream"])
        base_url = serving.get("upstream_base_url")
        if up_name not in upstreams and isinstance(base_url, str):
            key_env = serving.get("upstream_api_key_env")
            upstreams[up_name] = Upstream(base_url=base_url, api_key_env=key_env if isinstance(key_env, str) else None)
            note = f"added upstream {up_name} -> {base_url}"
            if serving.get("command"):
                note += f"; serve the adapter there with: {serving['command']}"
    if up_name is None and control is not None:
        up_name = control.upstream
    if existing is not None and input_per_mtok is None and output_per_mtok is None and up_name == existing.upstream:
        return upstreams, models, note
    price: tuple[float, float] | None = None
    ip, op = (serving.get("input_per_mtok"), serving.get("output_per_mtok")) if serving else (None, None)
    if isinstance(ip, int | float) and isinstance(op, int | float):
        price = (float(ip), float(op))
    price = price or fine_tuned_inference_price(model)
    if price is None and control is not None:
        price = (control.input_per_mtok, control.output_per_mtok)
        if input_per_mtok is None and output_per_mtok is None:
            note = (note + "; " if note else "") + (f"no price known for {model}: priced like {control_model} "
                                                    "until you pass --input-per-mtok/--output-per-mtok")
    base = existing or ModelInfo()
    models[model] = msgspec.structs.replace(
        base, upstream=up_name,
        input_per_mtok=input_per_mtok if input_per_mtok is not None else (price[0] if price else base.input_per_mtok),
        output_per_mtok=output_per_mtok if output_per_mtok is not None else (
            price[1] if price else base.output_per_mtok))
    return upstreams, models, note


@app.command("check")
def check(
    days: Annotated[int, Opt(min=0, help="Report arms whose model shuts down within this many days.")] = 90,
    route: Annotated[str | None, Opt(help="Only this route.")] = None,
    offline: Annotated[bool, Opt("--offline", help="Config dates only; do not ask the upstreams.")] = False,
    all_arms: Annotated[bool, Opt("--all", help="List every arm with a known date, not only those retiring.")] = False,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Arms whose models retire within DAYS (upstream `GET /v1/models` shutdown_date, else the config).
    Exit 0: none; 3: at least one arm with weight > 0 retires within DAYS (weight-0 arms are listed only)."""
    from datetime import UTC, datetime

    from gateway import lifecycle as lc

    cur = open_store(state, redis).current()
    if cur is None:
        raise fail("no config stored yet: run `abgate config set FILE` first")
    cfg = cur.config
    if route is not None and route not in cfg.routes:
        raise fail(f"unknown route {route!r} (routes: {', '.join(cfg.routes) or 'none'})")
    upstream_dates, unreachable = ({}, []) if offline else _upstream_dates(cfg)
    today = datetime.now(UTC).date()
    shutdowns = [s for s in lc.arm_shutdowns(cfg, upstream_dates) if route is None or s.route == route]
    rows = shutdowns if all_arms else lc.retiring(shutdowns, days, today)
    rows = sorted(rows, key=lambda s: (s.shutdown, s.route, s.arm))
    serving = [s for s in lc.retiring(shutdowns, days, today) if s.weight > 0]
    out: list[dict[str, Any]] = [{"route": s.route, "arm": s.arm, "model": s.model, "weight": s.weight,
            "shutdown_date": s.shutdown.isoformat(), "days_left": s.days_left(today), "source": s.source}
           for s in rows]
    if json:
        print_json({"within_days": days, "today": today.isoformat(), "arms": out, "unreachable_upstreams": unreachable,
                    "serving_traffic": len(serving)})
    else:
        for name in unreachable:
            console.print(f"[yellow]warning:[/] upstream {name!r} did not list its models; config dates only",
                          highlight=False)
        if not out:
            console.print(f"no arm's model shuts down within {days} days", highlight=False)
        else:
            t = Table("route", "arm", "weight", "model", "shutdown", "days left", "source",
                      title=f"Arms whose models shut down within {days} days" if not all_arms else None)
            for r in out:
                style = "bold red" if r["days_left"] <= 30 and r["weight"] > 0 else None
                t.add_row(r["route"], r["arm"], f"{r['weight']:g}", r["model"], r["shutdown_date"],
                          str(r["days_left"]), r["source"], style=style)
            console.print(t)
            if serving:
                console.print(f"{len(serving)} arm(s) carrying traffic retire within {days} days: add candidates on "
                              "the replacement model, evaluate them and promote before the date "
                              "(examples/model-migration)", highlight=False)
    if serving:
        raise typer.Exit(3)


def _upstream_dates(cfg: RouterConfig) -> tuple[dict[str, date], list[str]]:
    import os

    import httpx

    from gateway import lifecycle as lc

    dates: dict[str, date] = {}
    unreachable = []
    for name, up in cfg.upstreams.items():
        if not any(cfg.upstream_for(a.model)[0] == name for r in cfg.routes.values() for a in r.arms):
            continue
        key = os.environ.get(up.api_key_env) if up.api_key_env else None
        try:
            r = httpx.get(up.base_url.rstrip("/") + "/models", timeout=10,
                          headers={"authorization": f"Bearer {key}"} if key else {})
            if r.status_code != 200:
                raise httpx.HTTPError(f"HTTP {r.status_code}")
            dates.update(lc.dates_from_listing(r.content))
        except (httpx.HTTPError, msgspec.DecodeError, msgspec.ValidationError):
            unreachable.append(name)
    return dates, unreachable
