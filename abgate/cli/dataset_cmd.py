"""`abgate dataset build|list|examples|review|mark-validated|delete|validate|stats|export|triggers`."""

from __future__ import annotations

import getpass
import json as jsonlib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.prompt import Prompt
from rich.table import Table

from abgate.cli.common import JsonOut, StateDir, console, fail, print_json, state_dir, table
from gateway.config_store import FileConfigStore
from gateway.events import now_rfc3339
from training import build as bd
from training import tokens as tk
from training import triggers as trg
from training.registry import Registry
from training.service import export_lines
from training.sources import ArchiveFilter, Candidate, Skipped, from_archive, from_file
from training.validate import structured_fields, validate_file, with_registry

app = typer.Typer(help="Build, review, validate, inspect and export fine-tuning datasets.", no_args_is_help=True)

Opt = typer.Option


def _config(state: Path | None) -> Any:
    cur = FileConfigStore(state_dir(state)).current()
    return cur.config if cur else None


def _parse_split(text: str) -> dict[str, float]:
    try:
        a, b, c = (float(x) for x in text.split(","))
    except ValueError:
        raise fail(f"--split must be three numbers train,validation,heldout (got {text!r})") from None
    return {"train": a, "validation": b, "heldout": c}


@app.command()
def build(
    name: Annotated[str, Opt(help="Dataset name.")] = "dataset",
    description: Annotated[str, Opt(help="What the dataset is for (shown by `dataset list`).")] = "",
    from_files: Annotated[list[Path] | None, Opt("--from-file", help="JSONL/CSV input (repeatable); default: archive.")] = None,
    since: Annotated[str | None, Opt(help="Archive: first day YYYY-MM-DD.")] = None,
    until: Annotated[str | None, Opt(help="Archive: last day YYYY-MM-DD.")] = None,
    route: Annotated[str | None, Opt(help="Archive: only this route.")] = None,
    arm: Annotated[str | None, Opt(help="Archive: only this arm.")] = None,
    model: Annotated[str | None, Opt(help="Archive: only this model.")] = None,
    tenant: Annotated[str | None, Opt(help="Only this tenant.")] = None,
    min_signal: Annotated[str | None, Opt(help="edited|thumbs_up|no_followup|thumbs_down|followup "
                                                "(default thumbs_up for the archive, no_followup for files).")] = None,
    min_quality: Annotated[float | None, Opt(help="Minimum quality, 1-10 scale.")] = None,
    min_quality_score: Annotated[float | None, Opt(help="Minimum quality, 0-1 scale.")] = None,
    rubric_min: Annotated[float | None, Opt(help="Overall and every rubric score >= this (1-5).")] = None,
    approved_only: Annotated[bool, Opt(help="Only approved examples.")] = False,
    min_confidence: Annotated[float | None, Opt(help="Minimum confidence (0-1).")] = None,
    min_chars: Annotated[int | None, Opt(help="User message and answer longer than this.")] = None,
    max_examples: Annotated[int | None, Opt("--max", help="Keep at most N (best first).")] = None,
    include_used: Annotated[bool, Opt(help="Also take interactions used in earlier datasets (same id or same "
                                            "content, rejected ones included).")] = False,
    keep_followup_edits: Annotated[bool, Opt(help="Keep edited answers that had a follow-up (default: drop "
                                                  "every answer with a follow-up, as seed 003's SQL).")] = False,
    near_dup: Annotated[float, Opt(help="Near-duplicate Jaccard threshold (0 disables).")] = 0.8,
    split: Annotated[str, Opt(help="train,validation,heldout fractions.")] = "0.8,0.1,0.1",
    seed: Annotated[str, Opt(help="Split seed.")] = "abgate",
    out: Annotated[Path | None, Opt(help="Also write <out>/{train,validation,heldout}.jsonl.")] = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Curate a dataset from the event archive or from JSONL/CSV files into the registry."""
    sd = state_dir(state)
    candidates: list[Candidate] = []
    skipped: list[Skipped] = []
    if from_files:
        for f in from_files:
            if not f.exists():
                raise fail(f"{f}: no such file")
            try:
                c, s = from_file(f, default_tenant=tenant or "default")
            except ValueError as err:  # a file that cannot be read at all (e.g. not UTF-8)
                raise fail(str(err)) from None
            candidates += c
            skipped += s
        source = "files:" + ",".join(str(f) for f in from_files)
    else:
        with console.status("reading the archive"):
            candidates, skipped = from_archive(sd, ArchiveFilter(since, until, route, tenant, arm, model))
        source = "archive"
    opts = bd.BuildOptions(
        min_signal=min_signal or ("no_followup" if from_files else "thumbs_up"), min_quality10=min_quality,
        min_quality=min_quality_score, rubric_min=rubric_min, approved_only=approved_only,
        min_confidence=min_confidence, min_chars=min_chars, max_examples=max_examples, tenant=tenant,
        skip_used=not include_used, dedup_threshold=near_dup or None, fractions=_parse_split(split), seed=seed,
        drop_followups=not keep_followup_edits)
    with Registry(sd) as reg:
        try:
            # earlier datasets' interactions, reviewed-and-rejected ones too, are not proposed again
            used = reg.used_source_ids(tenant) | reg.rejected_source_ids(tenant)
            result = bd.build(candidates, opts, used, reg.used_content_keys(tenant))
        except ValueError as err:
            raise fail(str(err)) from None
        result.report["skipped_input"] = [s.__dict__ for s in skipped]
        ds_id = None
        if result.examples:
            ds_id = reg.create_dataset(tenant=tenant or _one_tenant(result.examples), name=name, source=source,
                                       description=description,
                                       examples=result.examples, params=result.report["options"],
                                       report=result.report, system_prompt_sha=bd.prompt_sha(result.examples))
    if out is not None and result.examples:
        out.mkdir(parents=True, exist_ok=True)
        for part in ("train", "validation", "heldout"):
            rows = [e for e in result.examples if e["split"] == part]
            (out / f"{part}.jsonl").write_text("".join(bd.to_openai_line(e["messages"], e.get("tools")) + "\n" for e in rows),
                                               encoding="utf-8")
    rep = result.report
    if json:
        print_json({"dataset_id": ds_id, **rep})
        if not ds_id:
            raise typer.Exit(1)
        return
    console.print(f"[bold]{rep['candidates']}[/] candidates from {source}; "
                  f"[bold]{rep['examples']}[/] examples kept" + (f" -> dataset [cyan]{ds_id}[/]" if ds_id else ""))
    for skip in skipped[:20]:
        console.print(f"[yellow]skipped[/] {skip.where}: {skip.reason}", highlight=False)
    if len(skipped) > 20:
        console.print(f"[yellow]... {len(skipped) - 20} more skipped input lines[/]")
    t = Table("filtered out because", "count", title="Filters")
    for k, v in rep["filtered_out"].items():
        t.add_row(k, str(v))
    t.add_row("exact duplicate", str(rep["duplicates"]["exact"]))
    t.add_row("near duplicate", str(rep["duplicates"]["near"]))
    t.add_row("over --max", str(rep["over_max"]))
    console.print(t)
    cats = Table("category", "examples", "share", title="Category balance")
    for k, v in rep["categories"].items():
        cats.add_row(k, str(v["count"]), f"{v['share']:.0%}")
    console.print(cats)
    console.print("splits: " + ", ".join(f"{k}={v}" for k, v in rep["splits"].items())
                  + " | signals: " + ", ".join(f"{k}={v}" for k, v in rep["signals"].items()))
    r = Table("data requirement (seed 002)", "status", "detail", title="Data requirements")
    for item in rep["data_requirements"]:
        r.add_row(item["name"], item["status"], item["detail"])
    console.print(r)
    if not ds_id:
        raise fail("no example passed the filters; nothing stored")


def _one_tenant(examples: list[dict[str, Any]]) -> str:
    tenants = {e["tenant_id"] for e in examples}
    return tenants.pop() if len(tenants) == 1 else "mixed"


@app.command("list")
def list_(tenant: Annotated[str | None, Opt()] = None, state: StateDir = None, json: JsonOut = False) -> None:
    """Datasets in the registry."""
    with Registry(state_dir(state)) as reg:
        rows = reg.datasets(tenant)
    if json:
        print_json(rows)
        return
    t = table("id", "tenant", "name", "examples", "description", "source", "created")
    for d in rows:
        t.add_row(d["id"], d["tenant_id"], d["name"], str(d["example_count"]), d["description"], d["source"][:40],
                  d["created_at"])
    console.print(t)


def _dataset_or_fail(reg: Registry, dataset_id: str) -> dict[str, Any]:
    try:
        return reg.dataset(dataset_id)
    except KeyError as err:
        raise fail(str(err.args[0])) from None


@app.command()
def examples(
    dataset_id: str,
    status: Annotated[str | None, Opt(help="Only pending | accepted | rejected.")] = None,
    validated_only: Annotated[bool, Opt(help="Only validated examples.")] = False,
    limit: Annotated[int | None, Opt(min=1, help="At most N rows.")] = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """A dataset's examples, best quality score first: seed 004's review query
    (user message, assistant response, quality_score, validated)."""
    with Registry(state_dir(state)) as reg:
        _dataset_or_fail(reg, dataset_id)
        rows = reg.examples(dataset_id=dataset_id, status=(status,) if status else None, validated_only=validated_only)
    rows.sort(key=lambda e: (e["quality"] is None, -(e["quality"] or 0.0)))  # ORDER BY quality_score DESC
    rows = rows[:limit] if limit else rows
    out = [{"id": e["id"], "source_id": e["source_id"], "user_message": _last(e["messages"], "user"),
            "assistant_response": _last(e["messages"], "assistant"), "quality_score": e["quality"],
            "quality": e["quality10"], "confidence": e["confidence"], "category": e["category"],
            "status": e["status"], "validated": e["validated"], "validated_by": e["validated_by"],
            "validated_at": e["validated_at"], "split": e["split"]} for e in rows]
    if json:
        print_json(out)
        return
    t = table("id", "user message", "assistant response", "quality_score", "validated", "status", "category",
              title=f"{dataset_id}: {len(out)} example(s), best first")
    for e in out:
        t.add_row(e["id"], escape(_short(e["user_message"])), escape(_short(e["assistant_response"])),
                  "—" if e["quality_score"] is None else f"{e['quality_score']:.2f}",
                  "yes" if e["validated"] else "no", e["status"], str(e["category"]))
    console.print(t)


def _last(messages: list[dict[str, Any]], role: str) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == role), "")


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


@app.command("mark-validated")
def mark_validated(
    dataset_id: str,
    min_quality_score: Annotated[float, Opt(min=0.0, max=1.0, help="Validate every example at or above this "
                                                                   "quality score (0-1 scale).")],
    reviewer: Annotated[str | None, Opt(help="Recorded as validated_by (default: OS user).")] = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Seed 004's `UPDATE ... SET validated = true WHERE quality_score >= X` (rejected examples stay rejected)."""
    who = reviewer or getpass.getuser()
    with Registry(state_dir(state)) as reg:
        _dataset_or_fail(reg, dataset_id)
        n = reg.validate_at_or_above(dataset_id, min_quality_score, reviewer=who)
        total = len(reg.examples(dataset_id=dataset_id, validated_only=True))
    if json:
        print_json({"dataset_id": dataset_id, "newly_validated": n, "validated": total})
        return
    console.print(f"validated {n} example(s) with quality_score >= {min_quality_score:g} as {who}; "
                  f"{total} validated in {dataset_id}", highlight=False)


@app.command()
def delete(
    dataset_id: str,
    yes: Annotated[bool, Opt("--yes", help="Do not ask for confirmation.")] = False,
    state: StateDir = None,
) -> None:
    """Delete a dataset and its examples; its interactions can be curated again."""
    with Registry(state_dir(state)) as reg:
        d = _dataset_or_fail(reg, dataset_id)
        if not yes and not typer.confirm(f"delete dataset {dataset_id} ({d['name']}, {d['example_count']} examples)?"):
            raise fail("not deleted")
        n = reg.delete_dataset(dataset_id)
    console.print(f"deleted dataset {dataset_id} and {n} example(s)", highlight=False)


@app.command()
def review(
    dataset_id: str,
    decisions: Annotated[Path | None, Opt(help="JSONL of {example_id|source_id, action, gold?, category?, "
                                                "quality?, quality_score?}; non-interactive.")] = None,
    reviewer: Annotated[str | None, Opt(help="Recorded as validated_by (default: OS user).")] = None,
    all_: Annotated[bool, Opt("--all", help="Also revisit already reviewed examples.")] = False,
    state: StateDir = None,
) -> None:
    """Accept / edit / reject examples, set category and quality (1-10)."""
    who = reviewer or getpass.getuser()
    with Registry(state_dir(state)) as reg:
        try:
            reg.dataset(dataset_id)
        except KeyError as err:
            raise fail(str(err.args[0])) from None
        exs = reg.examples(dataset_id=dataset_id)
        if decisions is not None:
            _apply_decisions(reg, exs, decisions, who)
            return
        todo = [e for e in exs if all_ or e["status"] == "pending"]
        console.print(escape(f"{len(todo)} example(s) to review; keys: [a]ccept [e]dit [r]eject [s]kip [q]uit"),
                      highlight=False)
        done = 0
        for i, e in enumerate(todo, 1):
            console.rule(f"{i}/{len(todo)} {e['id']} ({e['signal']}, {e['category']})")
            for m in e["messages"]:
                console.print(f"[bold]{m.get('role')}:[/] " + str(m.get("content")).replace("[", r"\["))
            action = Prompt.ask("action", choices=["a", "e", "r", "s", "q"], default="a")
            if action == "q":
                break
            if action == "s":
                continue
            gold = Prompt.ask("corrected answer") if action == "e" else None
            category = Prompt.ask("category", default=e["category"] or "uncategorized")
            q10 = _ask_quality(str(int(e["quality10"])) if e["quality10"] else "7")
            reg.review_example(e["id"], action={"a": "accept", "e": "edit", "r": "reject"}[action], reviewer=who,
                               gold=gold, category=category, quality10=q10)
            done += 1
        console.print(f"reviewed {done} example(s) as {who}")


def _ask_quality(default: str) -> float:
    """Ask until the answer is a number from 1 to 10 (a typo must not store no score)."""
    while True:
        answer = Prompt.ask("quality 1-10", default=default)
        try:
            q10 = float(answer)
        except ValueError:
            q10 = -1.0
        if 1 <= q10 <= 10:
            return q10
        console.print(f"[red]quality must be a number from 1 to 10, got {answer!r}[/]", highlight=False)


_DECISION_KEYS = {"example_id", "source_id", "action", "gold", "category", "quality", "quality_score", "reviewer"}


def _decision(d: Any, by_id: dict[str, Any], by_source: dict[str, Any], who: str) -> dict[str, Any]:
    """One checked decision line -> review_example kwargs; ValueError names the problem."""
    if not isinstance(d, dict):
        raise ValueError("not a JSON object")
    unknown = sorted(set(d) - _DECISION_KEYS)
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_DECISION_KEYS))})")
    example_id, source_id = d.get("example_id"), d.get("source_id")
    ex = ((by_id.get(example_id) if isinstance(example_id, str) else None)
          or (by_source.get(source_id) if isinstance(source_id, str) else None))
    if ex is None:
        raise ValueError("no such example_id/source_id in this dataset")
    action = d.get("action", "accept")
    if action not in ("accept", "edit", "reject"):
        raise ValueError(f"action must be accept, edit or reject, got {action!r}")
    gold = d.get("gold")
    if gold is not None and not isinstance(gold, str):
        raise ValueError("gold must be a string")
    if action == "edit" and not (gold or "").strip():
        raise ValueError("an edit needs the corrected answer in `gold`")
    for key in ("category", "reviewer"):
        if d.get(key) is not None and not (isinstance(d[key], str) and d[key].strip()):
            raise ValueError(f"{key} must be a non-empty string")
    q10 = _score(d.get("quality"), "quality", 1, 10)
    q01 = _score(d.get("quality_score"), "quality_score", 0, 1)
    return {"example_id": ex["id"], "action": action, "reviewer": d.get("reviewer") or who, "gold": gold,
            "category": d.get("category"), "quality10": q10, "quality": q01}


def _score(v: Any, name: str, lo: float, hi: float) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not lo <= v <= hi:
        raise ValueError(f"{name} must be a number from {lo:g} to {hi:g}, got {v!r}")
    return float(v)


def _apply_decisions(reg: Registry, exs: list[dict[str, Any]], path: Path, who: str) -> None:
    """Check every line first and apply nothing unless all are valid, so a fixed file can be re-run."""
    by_id = {e["id"]: e for e in exs}
    by_source = {e["source_id"]: e for e in exs if e["source_id"]}
    errors: list[str] = []
    todo: list[dict[str, Any]] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise fail(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise fail(f"{path}: not UTF-8 ({err.reason} at byte {err.start})") from None
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            todo.append(_decision(jsonlib.loads(line), by_id, by_source, who))
        except jsonlib.JSONDecodeError as err:
            errors.append(f"{path}:{no}: invalid JSON: {err.msg}")
        except ValueError as err:
            errors.append(f"{path}:{no}: {err}")
    if errors:
        for e in errors:
            console.print(f"[red]{escape(e)}[/]", highlight=False, soft_wrap=True)
        raise fail(f"{len(errors)} decision line(s) refused; nothing applied")
    applied = Counter[str]()
    for kw in todo:
        reg.review_example(kw.pop("example_id"), **kw)
        applied[kw["action"]] += 1
    console.print("applied: " + (", ".join(f"{k}={v}" for k, v in sorted(applied.items())) or "nothing"))


@app.command()
def validate(
    file: Path,
    model: Annotated[str, Opt(help="Base model (token limit and encoding).")] = "gpt-4o-mini-2024-07-18",
    min_examples: Annotated[int, Opt(help="Minimum examples (OpenAI: 10; seed 002: 500).")] = 10,
    allow_mixed_system_prompts: Annotated[bool, Opt(help="Only warn on several system prompts.")] = False,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Check FILE against OpenAI's chat fine-tuning rules; every problem with its line number."""
    rep = validate_file(file, model=model, min_examples=min_examples,
                        allow_mixed_system_prompts=allow_mixed_system_prompts, config=_config(state))
    sd = state_dir(state)
    if rep.rows:
        from training.registry import content_sha, registry_path

        known: dict[str, Any] = {}
        if registry_path(sd).exists():
            with Registry(sd) as reg:
                known = reg.examples_by_content(content_sha(r["messages"]) for r in rep.rows)
        with_registry(rep, known, now=now_rfc3339(), where=str(sd))
    if json:
        print_json(rep.to_dict())
    else:
        for p in rep.errors:
            console.print(f"[red]error[/] {escape(f'{file}:{p}')}", highlight=False, soft_wrap=True)
        for p in rep.warnings:
            console.print(f"[yellow]warning[/] {escape(f'{file}:{p}')}", highlight=False, soft_wrap=True)
        t = Table("pre-training checklist", "status", "detail")
        colors = {"pass": "green", "warn": "yellow", "fail": "red", "unknown": "dim"}
        for c in rep.checklist:
            t.add_row(c.name, f"[{colors[c.status]}]{c.status}[/]", c.detail)
        console.print(t)
        console.print(f"{rep.examples} examples, {len(rep.errors)} error(s), {len(rep.warnings)} warning(s)")
    if not rep.ok:
        raise typer.Exit(1)


@app.command()
def stats(
    file: Path,
    model: Annotated[str, Opt(help="Base model for encoding, limit and price.")] = "gpt-4o-mini-2024-07-18",
    epochs: Annotated[int | None, Opt(help="Epochs (default: OpenAI's auto rule).")] = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Examples, exact token counts, distributions, billed tokens, auto epochs and cost."""
    rep = validate_file(file, model=model, min_examples=0, allow_mixed_system_prompts=True)
    if not rep.rows:
        raise fail(f"{file}: no readable examples" + (f" ({rep.errors[0]})" if rep.errors else ""))
    counts = rep.token_counts
    est = tk.estimate(counts, model, epochs=epochs, config=_config(state))
    dist: dict[str, Counter[str]] = {"category": Counter(), "intent_type": Counter(), "budget_tier": Counter()}
    for r in rep.rows:
        f = structured_fields(r["messages"])
        for key in dist:
            if f.get(key) is not None:
                dist[key][str(f[key])] += 1
    tokens = {"min": min(counts), "mean": round(sum(counts) / len(counts), 2), "p95": tk.percentile(counts, 0.95),
              "max": max(counts), "total": sum(counts)}
    distributions = {k: dict(v.most_common()) for k, v in dist.items() if v}
    out = {
        "examples": len(counts),
        "tokens": tokens,
        "token_limit": tk.token_limit(model), "over_limit": est.truncated,
        "epochs": est.epochs, "epochs_auto": epochs is None, "billed_tokens": est.billed_tokens,
        "price_per_mtok": est.price_per_mtok, "estimated_cost_usd": est.cost_usd, "model": model,
        "distributions": distributions,
    }
    if json:
        print_json(out)
        return
    t = Table("statistic", "value", title=f"{file} ({model})")
    for k in ("min", "mean", "p95", "max", "total"):
        t.add_row(f"tokens per example: {k}" if k != "total" else "tokens: total", f"{tokens[k]:g}")
    t.add_row("examples", str(out["examples"]))
    t.add_row("over the token limit", str(est.truncated))
    t.add_row("epochs" + (" (auto)" if epochs is None else ""), str(est.epochs))
    t.add_row("billed training tokens", f"{est.billed_tokens:,}")
    t.add_row("price per 1M training tokens", "unknown" if est.price_per_mtok is None else f"${est.price_per_mtok:.2f}")
    t.add_row("estimated cost", "unknown" if est.cost_usd is None else f"${est.cost_usd:.4f}")
    console.print(t)
    for k, v in distributions.items():
        d = Table(k, "examples", "share")
        for name, n in v.items():
            d.add_row(name, str(n), f"{n / len(counts):.0%}")
        console.print(d)


@app.command()
def export(
    dataset_id: Annotated[str | None, typer.Argument(help="Dataset id (default: every dataset).")] = None,
    out: Annotated[Path | None, Opt(help="Output file (default stdout).")] = None,
    split: Annotated[str | None, Opt(help="train | validation | heldout.")] = None,
    min_quality: Annotated[float | None, Opt(help="Minimum quality 1-10.")] = None,
    validated_only: Annotated[bool, Opt(help="Only reviewed/validated examples (the default).")] = True,
    include_unreviewed: Annotated[bool, Opt(help="Also export examples nobody has reviewed yet.")] = False,
    tenant: Annotated[str | None, Opt()] = None,
    state: StateDir = None,
) -> None:
    """Write OpenAI chat fine-tuning JSONL (UTF-8, one object a line); validated examples only unless
    --include-unreviewed. Exits 1 with a reason when nothing matches."""
    only_validated = validated_only and not include_unreviewed
    with Registry(state_dir(state)) as reg:
        if dataset_id:
            d = _dataset_or_fail(reg, dataset_id)
            if tenant and d["tenant_id"] != tenant:
                raise fail(f"dataset {dataset_id} belongs to tenant {d['tenant_id']!r}, not {tenant!r}; "
                           "nothing exported")
        lines = export_lines(reg, dataset_id=dataset_id, tenant=tenant, split=split, min_quality10=min_quality,
                             validated_only=only_validated)
        if not lines:
            pending = len(reg.examples(dataset_id=dataset_id, tenant=tenant, split=split, status=("pending",)))
            why = (f"; {pending} unreviewed example(s) left out (review them, `dataset mark-validated`, or pass "
                   "--include-unreviewed)") if pending and only_validated else ""
            where = f"dataset {dataset_id}" if dataset_id else f"tenant {tenant!r}" if tenant else "the registry"
            raise fail(f"no example to export from {where}" + (f" (split {split})" if split else "")
                       + (f" with quality >= {min_quality:g}" if min_quality is not None else "") + why)
    text = "".join(line + "\n" for line in lines)
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        console.print(f"wrote {len(lines)} examples to {out}", highlight=False)


@app.command()
def triggers(
    tenant: Annotated[str | None, Opt()] = None,
    route: Annotated[str | None, Opt()] = None,
    min_new: Annotated[int, Opt(help="New quality examples that call for retraining.")] = 50,
    window_days: Annotated[int, Opt(help="Compare the last N days with the N before.")] = 7,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Retrain triggers: new quality examples and interactions, rising error rates per category, system prompt
    change (also before the new prompt is the majority), new question categories."""
    sd = state_dir(state)
    with Registry(sd) as reg:
        result = trg.evaluate(sd, reg, tenant=tenant, route=route, min_new_examples=min_new, window_days=window_days)
    if json:
        print_json(trg.as_dicts(result))
        return
    t = Table("trigger", "retrain?", "detail")
    for r in result:
        t.add_row(r.name, "[bold red]yes[/]" if r.fired else "no", r.detail)
    console.print(t)
