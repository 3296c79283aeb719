"""`abgate variants add|build-fewshot|show`: arms as variants, few-shot variants from curated datasets."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir

app = typer.Typer(help="Arms as variants: few-shot variants from curated datasets, variant ids.",
                  no_args_is_help=True)
Opt = typer.Option
BATCH = 256


def _pairs(examples: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    """(example id, user text, approved answer, category) of each usable curated example."""
    from gateway.fewshot import user_text

    out, seen = [], set()
    for e in examples:
        msgs = e["messages"]
        answer = e.get("gold")
        if not answer and msgs and msgs[-1].get("role") == "assistant" and isinstance(msgs[-1].get("content"), str):
            answer = msgs[-1]["content"]
        user = user_text([m for m in msgs if m.get("role") != "assistant"] if msgs else [])
        if not answer or not user or e["content_sha"] in seen:
            continue
        seen.add(e["content_sha"])
        out.append((e["id"], user, answer, e.get("category")))
    return out


def _embedder(upstream: str | None, base_url: str | None, api_key_env: str, state: Path | None,
              redis: str | None) -> Any:
    import openai

    if upstream is not None:
        cur = open_store(state, redis).current()
        up = cur.config.upstreams.get(upstream) if cur else None
        if up is None:
            raise fail(f"unknown upstream {upstream!r} in the stored config")
        base_url, key = up.base_url, (os.environ.get(up.api_key_env) if up.api_key_env else None)
    else:
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        key = os.environ.get(api_key_env)
    return openai.OpenAI(base_url=base_url, api_key=key or "unused", max_retries=3)


@app.command("build-fewshot")
def build_fewshot(
    dataset: Annotated[str, typer.Argument(help="Curated dataset (version) id from `abgate dataset build`.")],
    tenant: Annotated[str, Opt(help="Your tenant: the dataset must be this tenant's.")] = "default",
    split: Annotated[str, Opt(help="Which split to retrieve from (never the held-out one you evaluate on).")] = "train",
    embedding_model: Annotated[str, Opt(help="Embedding model (the gateway embeds requests with the same).")
                               ] = "text-embedding-3-small",
    upstream: Annotated[str | None, Opt(help="Embed through this upstream of the stored config.")] = None,
    base_url: Annotated[str | None, Opt(help="Else this base URL (default $OPENAI_BASE_URL or OpenAI).")] = None,
    api_key_env: Annotated[str, Opt(help="Env var with the API key for --base-url.")] = "OPENAI_API_KEY",
    min_quality: Annotated[float | None, Opt(help="Only examples with quality >= this (1-10).")] = None,
    out: Annotated[Path | None, Opt(help="Export file (default <state>/fewshot/<dataset>.json).")] = None,
    route: Annotated[str | None, Opt(help="Also add the variant to this route as a new arm at weight 0.")] = None,
    arm: Annotated[str | None, Opt(help="Name of the new arm (default fewshot-<model>).")] = None,
    model: Annotated[str | None, Opt(help="Model of the new arm (required with --route).")] = None,
    k: Annotated[int, Opt(min=1, max=32, help="Examples retrieved per request.")] = 3,
    system_prompt: Annotated[str | None, Opt(help="System prompt of the new arm (replaces the client's).")] = None,
    temperature: Annotated[float | None, Opt(help="Temperature of the new arm.")] = None,
    timeout_ms: Annotated[float, Opt(help="Hot-path budget of the request's embedding, ms.")] = 300.0,
    reason: Annotated[str | None, Opt()] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Export a curated dataset as a few-shot index (examples + embeddings) and optionally add the
    dynamic few-shot variant to a route as a new arm at weight 0 - one command."""
    import numpy as np

    from gateway import events as ev
    from gateway import fewshot
    from training.registry import Registry

    sdir = state_dir(state)
    with Registry(sdir) as reg:
        try:
            ds = reg.dataset(dataset)
        except KeyError:
            raise fail(f"no dataset {dataset!r} (see `abgate dataset list`)") from None
        if ds["tenant_id"] != tenant:
            raise fail(f"dataset {dataset!r} is not a dataset of tenant {tenant!r}: few-shot examples never "
                       "cross tenants")
        rows = reg.examples(dataset_id=dataset, tenant=tenant, split=split, status=("accepted", "pending"),
                            min_quality10=min_quality)
    pairs = _pairs(rows)
    if not pairs:
        raise fail(f"dataset {dataset!r} has no usable {split!r} examples (a user message and an approved answer)")
    if route is not None and model is None:
        raise fail("--route needs --model (the model the few-shot arm sends to)", 2)
    client = _embedder(upstream, base_url, api_key_env, state, redis)
    vectors: list[list[float]] = []
    try:
        for i in range(0, len(pairs), BATCH):
            resp = client.embeddings.create(model=embedding_model, input=[p[1] for p in pairs[i:i + BATCH]])
            vectors.extend(d.embedding for d in sorted(resp.data, key=lambda d: d.index))
    except Exception as err:  # openai.OpenAIError and connection errors, reported plainly
        raise fail(f"embedding the examples failed: {type(err).__name__}: {err}") from None
    dims = {len(v) for v in vectors}
    if len(dims) != 1:
        raise fail(f"the embedding upstream returned vectors of different sizes: {sorted(dims)}")
    export = fewshot.FewShotExport(
        format=fewshot.FORMAT, dataset=dataset, tenant=tenant, embedding_model=embedding_model, dim=dims.pop(),
        created_at=ev.now_rfc3339(), dataset_name=ds["name"],
        examples=tuple(fewshot.ExportedExample(id=eid, user=u, assistant=a, category=c,
                                               embedding=fewshot.encode_vector(np.asarray(vec)))
                       for (eid, u, a, c), vec in zip(pairs, vectors)))
    path = out or fewshot.export_path(sdir, dataset)
    fewshot.write_export(path, export)
    result: dict[str, Any] = {"dataset": dataset, "tenant": tenant, "examples": len(pairs), "dim": export.dim,
                              "embedding_model": embedding_model, "path": str(path)}
    if route is not None and model is not None:
        from gateway import config as cfgmod

        variant = cfgmod.Variant(
            system_prompt=system_prompt, params=cfgmod.VariantParams(temperature=temperature),
            fewshot=cfgmod.DynamicFewShot(dataset=dataset, k=k, path=None if out is None else str(path),
                                          embedding_upstream=upstream, timeout_ms=timeout_ms))
        result.update(_add_arm(state, redis, route, arm or f"fewshot-{model}".replace(":", "-")[:120], model,
                               variant, reason or f"add few-shot variant of {dataset} on {model} to {route}"))
    if json:
        print_json(result)
        return
    console.print(f"few-shot export of {dataset}: {len(pairs)} examples, {export.dim}-dim {embedding_model} "
                  f"embeddings -> {path}", highlight=False)
    if "config_version" in result:
        console.print(f"config version {result['config_version']}: route {route} arm [cyan]{result['arm']}[/] -> "
                      f"{model} + {k} retrieved examples at weight 0 (variant {result['variant']})", highlight=False)
    else:
        console.print("add it to an arm:\n"
                      f"  variant: {{fewshot: {{dataset: {dataset}, k: {k}}}}}", highlight=False)


def _add_arm(state: Path | None, redis: str | None, route: str, arm: str | None, model: str, variant: Any,
             reason: str | None) -> dict[str, Any]:
    """Append ARM (MODEL + VARIANT) to ROUTE at weight 0: one new config version, audited."""
    import msgspec

    from gateway import config as cfgmod
    from gateway import config_edits as edits
    from gateway import config_store as cs
    from gateway.variants import check_resources, variant_id

    store = open_store(state, redis)
    cur = store.current()
    if cur is None:
        raise fail("no config stored yet: run `abgate config set FILE` first")
    r = cur.config.routes.get(route)
    if r is None:
        raise fail(f"unknown route {route!r} (routes: {', '.join(cur.config.routes) or 'none'})")
    name = arm or f"variant-{model}".replace(":", "-")[:120]
    if any(a.name == name for a in r.arms):
        raise fail(f"route {route!r} already has an arm named {name!r} (choose one with --arm)")
    models = dict(cur.config.models)
    control = models.get(r.arms[0].model)
    if model not in models and control is not None:
        models[model] = cfgmod.ModelInfo(upstream=control.upstream, input_per_mtok=control.input_per_mtok,
                                         output_per_mtok=control.output_per_mtok)
    new_route = msgspec.structs.replace(
        r, arms=(*r.arms, cfgmod.Arm(name=name, model=model, weight=0.0, variant=variant)))
    try:
        cfg = cfgmod.validate(msgspec.to_builtins(msgspec.structs.replace(
            cur.config, routes={**cur.config.routes, route: new_route}, models=models)))
        check_resources(cfg, state_dir(state))
    except cfgmod.ConfigError as err:
        raise fail(f"the new config would be invalid: {err}") from None
    try:
        new = edits.ConfigEditor(store, audit=edits.archive_audit(state_dir(state))).commit(
            cfg, expected_version=cur.version, action="add_arm",
            change=edits.Change(getpass.getuser(), reason or f"add variant arm {name} ({model}) to {route} at weight 0"))
    except (cs.VersionConflict, edits.EditError) as err:
        raise fail(str(err)) from None
    return {"route": route, "arm": name, "model": model, "config_version": new.version,
            "phase": new.config.routes[route].phase, "variant": variant_id(model, cfg.routes[route].arms[-1].variant)}


@app.command("add")
def add(
    route: Annotated[str, typer.Argument(help="Route to add the variant arm to (at weight 0).")],
    model: Annotated[str, Opt("--model", help="Model the arm sends to.")],
    arm: Annotated[str | None, Opt("--arm", help="Arm name (default variant-<model>).")] = None,
    system_prompt: Annotated[str | None, Opt(help="System prompt the arm sends.")] = None,
    system_prompt_file: Annotated[Path | None, Opt(help="... or read it from this file.")] = None,
    system_mode: Annotated[str, Opt(help="replace the client's system messages, or prepend to them.")] = "replace",
    temperature: Annotated[float | None, Opt()] = None,
    top_p: Annotated[float | None, Opt()] = None,
    max_tokens: Annotated[int | None, Opt()] = None,
    reasoning_effort: Annotated[str | None, Opt()] = None,
    fewshot: Annotated[str | None, Opt("--fewshot", help="Dataset id of a few-shot export (build-fewshot).")] = None,
    k: Annotated[int, Opt(min=1, max=32, help="Examples retrieved per request (with --fewshot).")] = 3,
    embedding_upstream: Annotated[str | None, Opt(help="Upstream for the request embeddings (with --fewshot).")
                                  ] = None,
    reason: Annotated[str | None, Opt()] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Add a variant (MODEL + system prompt, parameters, few-shot examples) to ROUTE as a new arm at weight 0."""
    from gateway import config as cfgmod

    if system_prompt is not None and system_prompt_file is not None:
        raise fail("pass --system-prompt or --system-prompt-file, not both", 2)
    if system_prompt_file is not None:
        try:
            system_prompt = system_prompt_file.read_text(encoding="utf-8").strip()
        except OSError as err:
            raise fail(f"cannot read {system_prompt_file}: {err}") from None
    if system_mode not in ("replace", "prepend"):
        raise fail(f"--system-mode must be replace or prepend, got {system_mode!r}", 2)
    variant = cfgmod.Variant(
        system_prompt=system_prompt, system_mode=system_mode,  # type: ignore[arg-type]
        params=cfgmod.VariantParams(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                    reasoning_effort=reasoning_effort),
        fewshot=cfgmod.DynamicFewShot(dataset=fewshot, k=k, embedding_upstream=embedding_upstream)
        if fewshot else None)
    result = _add_arm(state, redis, route, arm, model, variant, reason)
    if json:
        print_json(result)
        return
    console.print(f"config version {result['config_version']}: route {route} arm [cyan]{result['arm']}[/] -> "
                  f"{model} at weight 0 (variant {result['variant']})", highlight=False)


@app.command("show")
def show(
    route: Annotated[str | None, typer.Argument(help="Only this route.")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Each arm's variant id (as events carry it) and its overrides."""
    import msgspec
    from rich.table import Table

    from gateway.variants import variant_id

    cur = open_store(state, redis).current()
    if cur is None:
        raise fail("no config stored yet: run `abgate config set FILE` first")
    rows = []
    for rname, r in cur.config.routes.items():
        if route is not None and rname != route:
            continue
        for a in r.arms:
            rows.append({"route": rname, "arm": a.name, "model": a.model, "weight": a.weight,
                         "variant": variant_id(a.model, a.variant),
                         "overrides": msgspec.to_builtins(a.variant) if a.variant is not None else {}})
    if route is not None and not rows:
        raise fail(f"unknown route {route!r}")
    if json:
        print_json(rows)
        return
    t = Table("route", "arm", "model", "weight", "variant", "overrides")
    for row in rows:
        o = row["overrides"]
        t.add_row(row["route"], row["arm"], row["model"], f"{row['weight']:g}", row["variant"],
                  ", ".join(sorted(o)) or "—")
    console.print(t)
