"""`abgate eval run|compare|gate`: offline evaluation on a held-out set."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import openai
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from abgate.cli.common import EXIT_ERROR, EXIT_USAGE, JsonOut, StateDir, console, fail, print_json, state_dir, table
from evaluation import criteria as critmod
from evaluation import decisions
from evaluation.gate import Decision
from evaluation.offline import compare as cmp
from evaluation.offline import dataset as ds
from evaluation.offline import gate as offline_gate
from evaluation.offline import pipeline, runs, scorers
from evaluation.offline.cost import describe, run_cost
from evaluation.offline.runner import RunSettings, Target

app = typer.Typer(help="Offline evaluation: run a held-out set, compare runs, offline gate.", no_args_is_help=True)
Opt = typer.Option
_STYLE = {"GO": "bold green", "NO-GO": "bold red", "HOLD": "bold yellow"}


def _g(x: float | None, spec: str = ".4g") -> str:
    return "—" if x is None or x != x else format(x, spec)


def _split(values: list[str] | None) -> list[str]:
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _v1(url: str) -> str:
    url = url.rstrip("/")
    return url if url.endswith("/v1") else url + "/v1"


def _finite(obj: Any) -> Any:
    """NaN / inf -> None so --json output is valid JSON."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


@app.command("run")
def run(
    dataset: Annotated[Path, Opt(help="Held-out OpenAI chat JSONL; the last assistant message is the reference.")],
    model: Annotated[str | None, Opt(help="Model id (direct mode; a label in gateway mode).")] = None,
    base_url: Annotated[str | None, Opt(help="OpenAI-compatible base URL (default $OPENAI_BASE_URL or OpenAI).")] = None,
    api_key_env: Annotated[str, Opt(help="Env var holding the upstream API key (direct mode).")] = "OPENAI_API_KEY",
    via_gateway: Annotated[str | None, Opt(help="Gateway URL: send through abgate with a pinned arm.")] = None,
    route: Annotated[str | None, Opt(help="Gateway route (what clients send as model).")] = None,
    arm: Annotated[str | None, Opt(help="Gateway arm to pin (x-abgate-arm).")] = None,
    admin_token_env: Annotated[str, Opt(help="Env var with the gateway admin token (pinning needs it).")] = "ABGATE_ADMIN_TOKEN",
    concurrency: Annotated[int, Opt(min=1, max=256, help="Requests in flight.")] = 4,
    rps: Annotated[float | None, Opt(min=0.01, help="Max requests started per second.")] = None,
    retries: Annotated[int, Opt(min=0, max=20, help="Retries on 429/5xx/connection errors, with backoff.")] = 3,
    timeout: Annotated[float, Opt(min=0.1, help="Per-request timeout in seconds.")] = 60.0,
    temperature: Annotated[float | None, Opt(help="Sampling temperature sent with every request.")] = 0.0,
    max_tokens: Annotated[int | None, Opt(min=1, help="max_tokens sent with every request.")] = None,
    scorer: Annotated[list[str] | None, Opt("--scorers", help="Comma-separated scorers (repeatable): "
                                            f"{', '.join(scorers.DEFAULT_SCORERS)}, llm_judge, or module:function. "
                                            "Default: all but llm_judge.")] = None,
    fields: Annotated[str, Opt(help="JSON fields for field_accuracy.")] = ",".join(scorers.DEFAULT_FIELDS),
    embeddings_model: Annotated[str | None, Opt(help="Similarity by embeddings from this model (else TF-IDF).")] = None,
    embeddings_base_url: Annotated[str | None, Opt(help="Embeddings endpoint base URL (default: --base-url).")] = None,
    judge_route: Annotated[str | None, Opt(help="llm_judge: gateway route of the judge model.")] = None,
    judge_gateway: Annotated[str | None, Opt(help="llm_judge: gateway URL (default --via-gateway).")] = None,
    category_key: Annotated[str | None, Opt(help="Where each example's category is: a dotted key in the line, "
                                                 "or reference.<field> in the reference JSON "
                                                 "(default: category, then metadata.category).")] = None,
    limit: Annotated[int | None, Opt(min=1, help="Only the first N examples.")] = None,
    name: Annotated[str | None, Opt(help="Run id (default <model>-<time>-<rand>).")] = None,
    criteria: Annotated[Path | None, Opt(help="Offline criteria: also print what a candidate must reach to GO "
                                              "against this run as the baseline.")] = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Run every held-out example through a model, score it, save the run under <state>/evals/
    (with its token cost)."""
    sdir = state_dir(state)
    crit = _offline_criteria(criteria) if criteria is not None else None
    try:
        data = ds.load(dataset, category_key=category_key, limit=limit)
    except ds.DatasetError as e:
        raise fail(str(e)) from None
    extra: dict[str, Any] = {}
    if temperature is not None:
        extra["temperature"] = temperature
    if max_tokens is not None:
        extra["max_tokens"] = max_tokens
    if via_gateway:
        if base_url:
            raise fail("pass either --via-gateway or --base-url, not both", EXIT_USAGE)
        if not route or not arm:
            raise fail("--via-gateway needs --route and --arm (the arm to pin)", EXIT_USAGE)
        target = Target(base_url=_v1(via_gateway), model=route, arm=arm, via_gateway=True, timeout_s=timeout,
                        api_key=os.environ.get(admin_token_env) or "unused", extra_body=extra)
    else:
        if not model:
            raise fail("--model is required (or use --via-gateway URL --route R --arm A)", EXIT_USAGE)
        if route or arm:
            raise fail("--route/--arm only apply with --via-gateway", EXIT_USAGE)
        url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        target = Target(base_url=url, model=model, api_key=os.environ.get(api_key_env) or "unused",
                        timeout_s=timeout, extra_body=extra)
    names = _split(scorer) or list(scorers.DEFAULT_SCORERS)
    # The openai SDK annotates `http_client` as an httpx2 client but accepts an httpx one at run time
    # (openai._httpx2.is_legacy_httpx_sync_client), hence the two `type: ignore[arg-type]` below.
    emb_client = None
    if embeddings_model:
        emb_url = embeddings_base_url or (target.base_url if not via_gateway else base_url) \
            or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        emb_client = openai.OpenAI(base_url=emb_url, api_key=os.environ.get(api_key_env) or "unused",
                                   http_client=httpx.Client(timeout=timeout),  # type: ignore[arg-type]
                                   max_retries=retries)
    judge_client = None
    if "llm_judge" in names:
        jurl = judge_gateway or via_gateway
        if not jurl or not judge_route:
            raise fail("llm_judge needs --judge-route and a gateway (--judge-gateway or --via-gateway)", EXIT_USAGE)
        judge_client = openai.OpenAI(base_url=_v1(jurl), api_key=os.environ.get(admin_token_env) or "unused",
                                     http_client=httpx.Client(timeout=timeout),  # type: ignore[arg-type]
                                     max_retries=retries)
    try:
        scs = scorers.build(names, scorers.ScorerOptions(
            fields=tuple(_split([fields])), embeddings_client=emb_client, embeddings_model=embeddings_model,
            judge_client=judge_client, judge_route=judge_route, concurrency=concurrency))
        run_id = runs.new_run_id(model or f"{route}-{arm}", name)
    except (scorers.ScorerError, runs.RunError) as e:
        raise fail(str(e), EXIT_USAGE) from None

    n = len(data.examples)
    label = f"{target.model}" + (f" [{target.arm}]" if target.arm else "")
    with Progress(TextColumn("{task.description}", markup=False, style="bold"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[failed]} failed"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=console, disable=json, transient=False) as progress:
        task = progress.add_task(f"eval {label}", total=n, failed=0)
        failed = 0

        def on_result(r: runs.ExampleResult) -> None:
            nonlocal failed
            failed += not r.ok
            progress.update(task, advance=1, failed=failed)

        try:
            result = pipeline.execute(sdir, data, target, RunSettings(concurrency, rps, retries), scs, run_id=run_id,
                                      on_result=on_result)
        except runs.RunError as e:
            raise fail(str(e)) from None
        except scorers.ScorerError as e:
            raise fail(f"scoring failed: {e}") from None
        except openai.OpenAIError as e:
            raise fail(f"scoring failed: {type(e).__name__}: {e}") from None
    s = result.summary
    cost = run_cost(result.results, model or s.model, _router_config(sdir))
    needed = offline_gate.targets(crit, s) if crit is not None else []
    if json:
        print_json({**msgspec.to_builtins(s), "path": str(result.path), "cost": cost.to_dict(),
                    "targets": needed})
    else:
        _print_summary(s, result.path)
        console.print(Text(describe(cost)))
        for line in needed:
            console.print(Text("to GO: " + line))
    if s.n_ok == 0:
        raise fail(f"every example failed, e.g. {s.failures[0] if s.failures else '?'}")


def _offline_criteria(path: Path) -> critmod.Criteria:
    try:
        crit, _ = critmod.load(path)
    except critmod.CriteriaError as e:
        raise fail(f"{path}: {e}", EXIT_USAGE) from None
    if crit.stage != "offline":
        raise fail(f"{path}: stage is {crit.stage!r}; offline criteria are needed here", EXIT_USAGE)
    return crit


def _router_config(sdir: Path) -> Any:
    from gateway.config_store import FileConfigStore

    try:
        cur = FileConfigStore(sdir).current()
    except Exception:  # noqa: BLE001 - prices are optional; an unreadable store means list prices
        return None
    return cur.config if cur else None


def _print_summary(s: runs.RunSummary, path: Path) -> None:
    t = Table("metric", "n", "mean", "95% CI", "method",
              title=Text(f"Eval run {s.run_id} — {s.model} ({s.n_examples} examples)"))
    for m in s.metrics.values():
        t.add_row(m.name, str(m.n), _g(m.mean), f"[{_g(m.low)}, {_g(m.high)}]", m.method)
    console.print(t)
    lat = s.latency
    console.print(f"latency p50 {_g(lat.get('p50'), '.1f')} ms [{_g(lat.get('p50_low'), '.1f')}, "
                  f"{_g(lat.get('p50_high'), '.1f')}], p95 {_g(lat.get('p95'), '.1f')} ms "
                  f"[{_g(lat.get('p95_low'), '.1f')}, {_g(lat.get('p95_high'), '.1f')}]", highlight=False)
    for w in s.warnings:
        console.print(Text.assemble(("warning: ", "yellow"), w))
    for f in s.failures[:5]:
        console.print(Text(f"  failed: {f}"))
    console.print(Text(f"saved: {path}/results.jsonl, summary.json"))


@app.command("compare")
def compare(
    base_run: Annotated[str, typer.Argument(help="Baseline run id (under <state>/evals) or run directory.")],
    candidate_run: Annotated[str, typer.Argument(help="Candidate run id or run directory.")],
    alpha: Annotated[float, Opt(min=0.0001, max=0.5, help="Two-sided; 0.05 gives 95% intervals.")] = 0.05,
    metric: Annotated[list[str] | None, Opt(help="Only these metrics (comma-separated, repeatable).")] = None,
    all_categories: Annotated[bool, Opt(help="Show every category row, not only regressions.")] = False,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Base vs candidate per metric (CI, paired test), latency p50/p95, regressions per category."""
    sdir = state_dir(state)
    try:
        base, cand = runs.load(sdir, base_run), runs.load(sdir, candidate_run)
        report = cmp.compare(base, cand, alpha, _split(metric) or None)
    except runs.RunError as e:
        raise fail(str(e)) from None
    except ValueError as e:
        raise fail(str(e), EXIT_USAGE) from None
    if json:
        print_json(_finite(msgspec.to_builtins(report)))
        return
    pct = f"{100 * (1 - alpha):g}%"
    t = Table("metric", "n", f"base ({pct} CI)", f"candidate ({pct} CI)", f"diff ({pct} CI)",
              f"relative ({pct} CI)", "p", "test", "outcome",
              title=Text(f"{report.base_run} ({report.base_model}) vs {report.candidate_run} ({report.candidate_model})"))
    for m in report.metrics:
        style = {"better": "green", "worse": "red"}.get(m.outcome, "")
        t.add_row(m.metric, str(m.n_pairs), f"{_g(m.base.mean)} [{_g(m.base.low)}, {_g(m.base.high)}]",
                  f"{_g(m.candidate.mean)} [{_g(m.candidate.low)}, {_g(m.candidate.high)}]",
                  f"{_g(m.absolute.estimate, '+.4g')} [{_g(m.absolute.low, '+.4g')}, {_g(m.absolute.high, '+.4g')}]",
                  f"{_g(m.relative.estimate, '+.1%')} [{_g(m.relative.low, '+.1%')}, {_g(m.relative.high, '+.1%')}]",
                  _g(m.p_value, ".3g"), m.test + (f" b={m.discordant[0]} c={m.discordant[1]}" if m.discordant else ""),
                  f"[{style}]{m.outcome}[/]" if style else m.outcome)
    console.print(t)
    lat = report.latency
    lt = Table("latency (ms)", "base", "candidate", f"diff ({pct} CI)", title="Latency")
    for q, b, c, d in (("p50", lat.base_p50, lat.candidate_p50, lat.p50_diff),
                       ("p95", lat.base_p95, lat.candidate_p95, lat.p95_diff)):
        lt.add_row(q, _g(b, ".1f"), _g(c, ".1f"), f"{_g(d.estimate, '+.1f')} [{_g(d.low, '+.1f')}, {_g(d.high, '+.1f')}]")
    console.print(lt)
    # "regressed" only when the paired test says so: a worse point estimate with a large p
    # (e.g. latency +0.3 ms, p = 0.998) is noise, listed only with --all-categories
    rows = [r for r in report.categories if all_categories or r.significant]
    ct = Table("category", "metric", "n", "base", "candidate", "diff", "p", "regressed",
               title="Per category" + ("" if all_categories else ": where the candidate is significantly worse"))
    for r in rows:
        flag = ("[bold red]yes[/]" if r.significant
                else "no (worse, not significant)" if r.regressed else "no")
        ct.add_row(r.category, r.metric, str(r.n), _g(r.base_mean), _g(r.candidate_mean), _g(r.diff, "+.4g"),
                   _g(r.p_value, ".3g"), flag)
    if rows:
        console.print(ct)
    else:
        console.print("no category where the candidate is significantly worse on any metric", highlight=False)
    noise = sum(1 for r in report.categories if r.regressed and not r.significant)
    if noise and not all_categories:
        console.print(f"{noise} category/metric row(s) worse by point estimate but not significantly "
                      f"(p >= {alpha:g}); --all-categories lists them", highlight=False)
    for w in report.warnings:
        console.print(Text.assemble(("warning: ", "yellow"), w))


def print_decision(d: Decision, record: Path) -> None:
    console.print(f"[{_STYLE[d.verdict]}]{d.verdict}[/]  decision {d.decision_id}  (offline)", highlight=False)
    for r in d.reasons:
        console.print(f"  - {r}", highlight=False, markup=False, emoji=False)
    if d.arms:
        mode = d.extra.get("criteria_mode", "ci")
        console.print(f"criteria mode: {mode} ("
                      + ("point estimates decide; each row's note gives the whole-CI reading"
                         if mode == "point" else "the whole CI must clear each threshold; each row's note gives "
                         "the point-estimate reading") + ")", highlight=False, markup=False)
        t = table("role", "run", "model", "examples", "ok", title="Runs")
        for role, a in zip(("baseline", "candidate"), d.arms):
            t.add_row(role, Text(a.name), Text(a.model or "—"), str(a.units), str(a.interactions))
        console.print(t)
    if d.metrics:
        t = Table("metric", "role", "baseline", "candidate", "effect", "95% CI", "p", "threshold", "verdict",
                  title="Criteria")
        for m in d.metrics:
            t.add_row(m.metric, f"{m.role} ({m.direction}, {m.effect})", _g(m.control_value), _g(m.treatment_value),
                      _g(m.estimate), f"[{_g(m.low)}, {_g(m.high)}]", _g(m.p_value, ".3g"), f"{m.threshold:+.4g}",
                      m.verdict + (f" ({m.note})" if m.note else ""))
        console.print(t)
    regs = d.extra.get("category_regressions") or []
    if regs:
        t = Table("category", "metric", "n", "baseline", "candidate", "diff", "p", "significant",
                  title="Categories where the candidate is worse (point estimate)")
        for r in regs:
            t.add_row(str(r["category"]), r["metric"], str(r["n"]), _g(r["base"]), _g(r["candidate"]),
                      _g(r["diff"], "+.4g"), _g(r["p_value"], ".3g"), "yes" if r["significant"] else "no")
        console.print(t)
    for w in d.warnings:
        console.print(Text.assemble(("warning: ", "yellow"), w))
    console.print(Text(f"record: {record} (+ .md)"))


@app.command("gate")
def gate(
    criteria: Annotated[Path | None, Opt(help="Offline criteria YAML (default: seed 001's, see "
                                              "evaluation/offline/criteria_seed001.yaml).")] = None,
    baseline: Annotated[str | None, Opt(help="Baseline run (overrides the criteria's `baseline`).")] = None,
    candidate: Annotated[str | None, Opt(help="Candidate run (overrides the criteria's `candidate`).")] = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Offline GO (exit 0) / NO-GO (exit 3) / HOLD (exit 4) with a decision record."""
    sdir = state_dir(state)
    path = criteria or offline_gate.SEED001_CRITERIA
    try:
        crit, sha = critmod.load(path)
    except critmod.CriteriaError as e:
        raise fail(f"{path}: {e}", EXIT_USAGE) from None
    if crit.stage != "offline":
        raise fail(f"{path}: stage is {crit.stage!r}; `abgate eval gate` takes offline criteria "
                   "(use `abgate gate` for online)", EXIT_USAGE)
    overrides = {k: v for k, v in (("baseline", baseline), ("candidate", candidate)) if v}
    if criteria is None and len(overrides) < 2:
        raise fail("without --criteria pass both --baseline and --candidate", EXIT_USAGE)
    if overrides:
        crit = msgspec.structs.replace(crit, **overrides)
    with console.status("evaluating criteria ...", spinner="dots"):
        d = offline_gate.decide(crit, sdir, criteria_path=str(path.resolve()), criteria_sha256=sha,
                                decided_by=getpass.getuser())
    if overrides:
        d.extra = {**d.extra, "overrides": overrides}
    try:
        record = decisions.write_record(sdir, d)
    except OSError as e:
        raise fail(f"cannot write the decision record: {e}", EXIT_ERROR) from None
    if json:
        print_json({**decisions.to_dict(d), "record_path": str(record)})
    else:
        print_decision(d, record)
    raise typer.Exit(d.exit_code)


@app.command("full-workflow")
def full_workflow(
    train: Annotated[Path | None, Opt(help="Training JSONL (validated, then uploaded).")] = None,
    validation: Annotated[Path | None, Opt(help="Validation JSONL (uploaded with the training file).")] = None,
    test: Annotated[Path | None, Opt(help="Held-out test JSONL for the comparative evaluation.")] = None,
    training_file_id: Annotated[str | None, Opt(help="Skip the upload: create the job from this already-uploaded "
                                                     "file id (seed 001's `create-job <training-file-id>`).")] = None,
    validation_file_id: Annotated[str | None, Opt(help="...and this validation file id.")] = None,
    model: Annotated[str, Opt(help="Base model (also the baseline evaluated on --test).")] = "gpt-4o-mini-2024-07-18",
    epochs: Annotated[int | None, Opt(help="n_epochs (default auto).")] = None,
    batch_size: Annotated[int | None, Opt(help="batch_size (default auto).")] = None,
    lr_mult: Annotated[float | None, Opt(help="learning_rate_multiplier (default auto).")] = None,
    suffix: Annotated[str | None, Opt(help="Suffix of the fine-tuned model name.")] = None,
    min_examples: Annotated[int, Opt(help="Refuse a smaller training file.")] = 10,
    tenant: Annotated[str, Opt()] = "default",
    criteria: Annotated[Path | None, Opt(help="Offline criteria YAML (default: seed 001's).")] = None,
    baseline_run: Annotated[str | None, Opt("--baseline", help="Reuse this baseline eval run instead of "
                                                               "evaluating --model again.")] = None,
    name: Annotated[str, Opt(help="Prefix of the eval run ids: <name>-baseline, <name>-finetuned.")] = "workflow",
    base_url: Annotated[str | None, Opt(help="OpenAI-compatible base URL for the evaluation "
                                             "(default $OPENAI_BASE_URL or OpenAI).")] = None,
    api_key_env: Annotated[str, Opt(help="Env var holding the API key for the evaluation.")] = "OPENAI_API_KEY",
    concurrency: Annotated[int, Opt(min=1, max=256)] = 8,
    poll: Annotated[float, Opt(help="Seconds between job polls.")] = 5.0,
    until: Annotated[str, Opt(help="Stop after this step: upload | job | train | eval | gate.")] = "gate",
    upstream: Annotated[str | None, Opt(help="Router-config upstream for the fine-tuning API "
                                             "(default: OPENAI_BASE_URL / OPENAI_API_KEY).")] = None,
    state: StateDir = None,
) -> None:
    """Seed 001's full workflow in one command: upload -> create job -> wait -> evaluate the base and the
    fine-tuned model on --test -> compare -> offline gate. Exit: the gate's (0 GO, 3 NO-GO, 4 HOLD), 1 on error."""
    from abgate.cli import workflow as wf
    from training.registry import Registry
    from training.service import LaunchRefused, check_files
    from training.trainer import TrainerError, make_trainer

    if until not in wf.STEPS:
        raise fail(f"--until must be one of {', '.join(wf.STEPS)}, got {until!r}", EXIT_USAGE)
    stop = wf.STEPS.index(until)
    if training_file_id is None and train is None:
        raise fail("pass --train FILE (validated and uploaded) or --training-file-id ID (already uploaded)",
                   EXIT_USAGE)
    if stop >= wf.STEPS.index("eval") and test is None:
        raise fail("--test FILE is needed to evaluate and gate (or stop earlier with --until train)", EXIT_USAGE)
    if training_file_id is not None and until == "upload":
        raise fail("--until upload with --training-file-id: nothing to upload", EXIT_USAGE)
    sdir = state_dir(state)
    crit = _offline_criteria(criteria or offline_gate.SEED001_CRITERIA) if stop >= wf.STEPS.index("gate") else None
    data = None
    if test is not None and stop >= wf.STEPS.index("eval"):
        try:
            data = ds.load(test)
        except ds.DatasetError as e:
            raise fail(str(e)) from None
    config = _router_config(sdir)
    try:
        trainer = make_trainer(upstream=upstream, config=config)
    except TrainerError as err:
        raise fail(str(err)) from None
    with Registry(sdir) as reg:
        try:
            if training_file_id is None:
                assert train is not None
                checked = check_files(train, model=model, validation=validation, min_examples=min_examples,
                                      config=config)
                training_file_id = trainer.upload(train)
                validation_file_id = trainer.upload(validation) if validation is not None else validation_file_id
                console.print(f"1/6 uploaded {train} -> {training_file_id}"
                              + (f", {validation} -> {validation_file_id}" if validation is not None else "")
                              + f" ({checked.report.examples} examples, validated)", highlight=False)
            else:
                console.print(f"1/6 upload skipped: training file {training_file_id}"
                              + (f", validation file {validation_file_id}" if validation_file_id else ""),
                              highlight=False)
            if until == "upload":
                return
            created = wf.create_from_file_ids(trainer, reg, training_file=training_file_id,
                                              validation_file=validation_file_id, model=model, tenant=tenant,
                                              config=config, suffix=suffix, n_epochs=epochs,
                                              batch_size=batch_size, learning_rate_multiplier=lr_mult)
            console.print(f"2/6 job {created.job.id} ({created.job.status}), run {created.run_id}", highlight=False)
            if until == "job":
                return
            last: list[str] = []

            def show(job: Any) -> None:
                if not last or last[-1] != job.status:
                    last.append(job.status)
                    console.print(f"    {job.id}: {job.status}", highlight=False)

            job = wf.wait_job(trainer, reg, created.job.id, poll=poll, config=config, on_status=show)
        except LaunchRefused as err:
            if err.report is not None:
                for p in err.report.errors[:20]:
                    console.print(Text(f"error {err.report.path}:{p}", style="red"))
            raise fail(f"refused before upload: {err}") from None
        except TrainerError as err:
            raise fail(str(err)) from None
    if job.status != "succeeded" or not job.fine_tuned_model:
        raise fail(f"3/6 job {job.id} ended {job.status}" + (f": {job.error}" if job.error else ""))
    ft_model = job.fine_tuned_model
    console.print(f"3/6 trained: {ft_model} ({job.trained_tokens} trained tokens)", highlight=False)
    if until == "train":
        return
    assert data is not None
    url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    key = os.environ.get(api_key_env) or "unused"
    scs = scorers.build(list(scorers.DEFAULT_SCORERS), scorers.ScorerOptions(fields=tuple(scorers.DEFAULT_FIELDS)))
    run_ids: dict[str, str] = {}
    for role, mdl in (("baseline", model), ("finetuned", ft_model)):
        if role == "baseline" and baseline_run:
            run_ids[role] = baseline_run
            continue
        rid = runs.new_run_id(mdl, f"{name}-{role}")
        try:
            res = pipeline.execute(sdir, data, Target(base_url=url, model=mdl, api_key=key),
                                   RunSettings(concurrency), scs, run_id=rid)
        except (runs.RunError, scorers.ScorerError, openai.OpenAIError) as e:
            raise fail(f"evaluation of {mdl} failed: {e}") from None
        run_ids[role] = rid
        cost = run_cost(res.results, mdl, config)
        acc = res.summary.metrics.get("all_fields_correct")
        console.print(f"4/6 evaluated {role} {mdl}: run {rid}"
                      + (f", all_fields_correct {acc.mean:.3f}" if acc and acc.mean is not None else "")
                      + f"; {describe(cost)}", highlight=False)
        if role == "baseline" and crit is not None:
            for line in offline_gate.targets(crit, res.summary):
                console.print(Text("    to GO: " + line))
    if until == "eval":
        return
    base, cand = runs.load(sdir, run_ids["baseline"]), runs.load(sdir, run_ids["finetuned"])
    report = cmp.compare(base, cand)
    console.print("5/6 compare: " + "; ".join(
        f"{m.metric} {_g(m.base.mean)} -> {_g(m.candidate.mean)} ({m.outcome})" for m in report.metrics),
        highlight=False)
    assert crit is not None
    crit = msgspec.structs.replace(crit, baseline=run_ids["baseline"], candidate=run_ids["finetuned"])
    cpath = criteria or offline_gate.SEED001_CRITERIA
    d = offline_gate.decide(crit, sdir, criteria_path=str(cpath.resolve()), criteria_sha256=critmod.load(cpath)[1],
                            decided_by=getpass.getuser())
    d.extra = {**d.extra, "workflow": {"job": job.id, "fine_tuned_model": ft_model,
                                       "training_file": training_file_id, "validation_file": validation_file_id}}
    record = decisions.write_record(sdir, d)
    console.print("6/6 gate:", highlight=False)
    print_decision(d, record)
    raise typer.Exit(d.exit_code)
