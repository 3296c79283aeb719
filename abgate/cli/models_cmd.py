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
