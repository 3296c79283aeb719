"""`abgate finetune launch|status|events|wait|list|cancel|runs` on any provider (`--provider`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from abgate.cli.common import JsonOut, StateDir, console, fail, print_json, state_dir
from gateway.config_store import FileConfigStore
from training import providers
from training.registry import TERMINAL, Registry
from training.service import LaunchRefused, launch_file
from training.trainer import JobInfo, Trainer, TrainerError, sync_run, trainer_for_job

app = typer.Typer(help="Launch and track fine-tuning jobs; runs are recorded in the registry.", no_args_is_help=True)
Opt = typer.Option
T = TypeVar("T")
Upstream = Annotated[str | None, Opt(help="OpenAI provider: use this router-config upstream's base URL and key "
                                          "(default: OPENAI_BASE_URL / OPENAI_API_KEY).")]
Provider = Annotated[str | None, Opt(
    "--provider", envvar="ABGATE_FINETUNE_PROVIDER",
    help="openai | azure | hf-lora | together, or a name under training.providers in the router config "
         "(default: training.default_provider, else openai; for a known job: the provider it ran on).")]


def _config(state: Path | None) -> Any:
    cur = FileConfigStore(state_dir(state)).current()
    return cur.config if cur else None


def _trainer(state: Path | None, upstream: str | None, provider: str | None = None,
             job_id: str | None = None) -> Trainer:
    try:
        if job_id is not None:
            with Registry(state_dir(state)) as reg:
                return trainer_for_job(reg, job_id, config=_config(state), state_dir=state_dir(state),
                                       provider=provider, upstream=upstream)
        return providers.resolve(provider, config=_config(state), state_dir=state_dir(state), upstream=upstream)
    except TrainerError as err:
        raise fail(str(err)) from None


def _call(state: Path | None, upstream: str | None, op: Callable[[Trainer], T], provider: str | None = None,
          job_id: str | None = None) -> tuple[Trainer, T]:
    """One fine-tuning API call; a provider error becomes a clean CLI failure."""
    trainer = _trainer(state, upstream, provider, job_id)
    try:
        return trainer, op(trainer)
    except TrainerError as err:
        raise fail(str(err)) from None


@app.command()
def launch(
    file: Path,
    model: Annotated[str, Opt(help="Base model.")] = "gpt-4o-mini-2024-07-18",
    validation: Annotated[Path | None, Opt(help="Validation JSONL.")] = None,
    suffix: Annotated[str | None, Opt(help="Suffix of the fine-tuned model name.")] = None,
    epochs: Annotated[int | None, Opt(help="n_epochs (default auto).")] = None,
    batch_size: Annotated[int | None, Opt(help="batch_size (default auto).")] = None,
    lr_mult: Annotated[float | None, Opt(help="learning_rate_multiplier (default auto).")] = None,
    seed: Annotated[int | None, Opt(help="Training seed.")] = None,
    min_examples: Annotated[int, Opt(help="Refuse smaller datasets (OpenAI 10; seed 002: 500).")] = 10,
    dataset: Annotated[str | None, Opt(help="Registry dataset the file came from.")] = None,
    tenant: Annotated[str, Opt()] = "default",
    allow_mixed_system_prompts: Annotated[bool, Opt()] = False,
    wait_: Annotated[bool, Opt("--wait", help="Wait for a terminal state; exit 0 only on success.")] = False,
    poll: Annotated[float, Opt(help="Seconds between polls with --wait.")] = 5.0,
    upstream: Upstream = None,
    provider: Provider = None,
    state: StateDir = None,
    json: JsonOut = False,
) -> None:
    """Validate FILE, check the provider's own limits, upload it (and --validation), create the job, record the run.

    With `--provider hf-lora --model DIR` the job is a local TRL + PEFT LoRA process on your
    machine; on success the serving config (vLLM with the LoRA adapter) is printed and stored.
    """
    trainer = _trainer(state, upstream, provider)
    with Registry(state_dir(state)) as reg:
        try:
            launched = launch_file(
                trainer, reg, file, model=model, validation=validation, min_examples=min_examples, tenant=tenant,
                dataset_id=dataset, allow_mixed_system_prompts=allow_mixed_system_prompts, config=_config(state),
                suffix=suffix, n_epochs=epochs, batch_size=batch_size, learning_rate_multiplier=lr_mult, seed=seed)
        except LaunchRefused as err:
            if err.report is not None:
                for p in err.report.errors[:50]:
                    console.print(f"[red]error[/] {escape(f'{err.report.path}:{p}')}", highlight=False, soft_wrap=True)
            raise fail(f"refused: {err}") from None
        except TrainerError as err:
            raise fail(f"refused: {err}" if isinstance(err, providers.ProviderRefused) else str(err)) from None
        run = reg.run(launched.run_id)
    est = launched.estimate
    if json and not wait_:
        print_json({"job_id": launched.job.id, "run": run})
        return
    if not json:  # with --json --wait, stdout must stay one JSON document
        console.print(f"job [cyan]{launched.job.id}[/] on {run['provider']} ({launched.job.status}) run "
                      f"{launched.run_id}: {est.examples} examples x {est.epochs} epochs = {est.billed_tokens:,} "
                      "billed tokens, estimated "
                      + ("cost unknown" if est.cost_usd is None else f"${est.cost_usd:.4f}")
                      + (f", estimated completion {run['estimated_finish']}" if run["estimated_finish"] else ""),
                      highlight=False)
    if wait_:
        _wait(trainer, state, launched.job.id, poll, json)


def _fmt_ts(ts: int | None) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _sync(state: Path | None, job: JobInfo, trainer: Trainer) -> dict[str, Any] | None:
    with Registry(state_dir(state)) as reg:
        if reg.run_by_job(job.id) is None:
            return None
        return sync_run(reg, job, _config(state), trainer)


@app.command()
def status(job_id: str, upstream: Upstream = None, provider: Provider = None, state: StateDir = None,
           json: JsonOut = False) -> None:
    """The job's status, mapped into its registry run."""
    trainer, job = _call(state, upstream, lambda t: t.retrieve(job_id), provider, job_id)
    run = _sync(state, job, trainer)
    if json:
        print_json({"job": job, "run": run})
        return
    t = Table("field", "value", title=f"fine-tuning job {job_id}")
    for k, v in (("status", job.status), ("provider", trainer.name), ("base model", job.model),
                 ("fine-tuned model", job.fine_tuned_model), ("progress", job.progress),
                 ("trained tokens", job.trained_tokens), ("GPU seconds", job.gpu_seconds), ("error", job.error),
                 ("hyperparameters", job.hyperparameters), ("run", run["id"] if run else "not in registry"),
                 ("started", run and run["started_at"]), ("finished", run and run["finished_at"]),
                 ("estimated completion", run and run["estimated_finish"]),
                 ("estimated cost", run and run["estimated_cost_usd"]), ("actual cost", run and run["actual_cost_usd"])):
        t.add_row(k, "" if v is None else str(v))
    console.print(t)


@app.command()
def events(job_id: str, limit: Annotated[int, Opt()] = 50, upstream: Upstream = None, provider: Provider = None,
           state: StateDir = None, json: JsonOut = False) -> None:
    """The job's events, oldest first."""
    _, evs = _call(state, upstream, lambda t: t.events(job_id, limit), provider, job_id)
    if json:
        print_json(evs)
        return
    t = Table("time", "level", "message")
    for e in evs:
        t.add_row(_fmt_ts(e.created_at), e.level, e.message)
    console.print(t)


def _wait(trainer: Trainer, state: Path | None, job_id: str, poll: float, json: bool) -> None:
    seen: set[str] = set()
    job: JobInfo | None = None
    try:
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                      transient=json) as progress:
            task = progress.add_task(f"{job_id}: starting")
            while True:
                try:
                    job = trainer.retrieve(job_id)
                    evs = trainer.events(job_id, 50)
                except TrainerError as err:
                    raise fail(f"{err} (resume with `abgate finetune wait {job_id}`)") from None
                for e in evs:
                    if e.id not in seen:
                        seen.add(e.id)
                        if not json:
                            progress.console.print(f"[dim]{_fmt_ts(e.created_at)}[/] {e.message}", highlight=False)
                _sync(state, job, trainer)
                progress.update(task, description=f"{job_id}: {job.status}"
                                + (f" ({job.progress})" if job.progress else ""))
                if job.status in TERMINAL:
                    break
                time.sleep(poll)
    except KeyboardInterrupt:
        console.print(f"\ninterrupted; the job keeps running. Resume with `abgate finetune wait {job_id}`")
        raise typer.Exit(130) from None
    run = _sync(state, job, trainer)
    if json:
        print_json({"job": job, "run": run, "serving": run["serving"] if run else None})
    elif job.status == "succeeded":
        console.print(f"[green]succeeded[/]: {job.fine_tuned_model} ({job.trained_tokens} trained tokens"
                      + (f", {job.gpu_seconds:.1f} GPU/CPU seconds" if job.gpu_seconds is not None else "") + ")",
                      highlight=False)
        if run and run["serving"]:
            _print_serving(run["serving"])
    else:
        console.print(f"[red]{job.status}[/]" + (f": {job.error}" if job.error else ""), highlight=False)
    if job.status != "succeeded":
        raise typer.Exit(1)


def _print_serving(serving: dict[str, Any]) -> None:
    console.print("serving:", highlight=False)
    if serving.get("upstream_base_url"):
        console.print(f"  upstreams: {{{serving['upstream']}: {{base_url: {serving['upstream_base_url']}}}}}",
                      highlight=False, soft_wrap=True)
    console.print(f"  models: {{{serving['model']}: {{upstream: {serving.get('upstream') or '<control upstream>'}}}}}",
                  highlight=False, soft_wrap=True)
    for key, label in (("command", "serve"), ("load_call", "or load into a running server")):
        if serving.get(key):
            console.print(f"  {label}: {escape(str(serving[key]))}", highlight=False, soft_wrap=True)
    console.print(f"  add it: abgate models add-arm ROUTE {serving['model']}", highlight=False, soft_wrap=True)


@app.command()
def wait(job_id: str, poll: Annotated[float, Opt(help="Seconds between polls.")] = 5.0, upstream: Upstream = None,
         provider: Provider = None, state: StateDir = None, json: JsonOut = False) -> None:
    """Follow the job with live events until it ends; exit 0 only when it succeeded. Safe to re-run."""
    _wait(_trainer(state, upstream, provider, job_id), state, job_id, poll, json)


@app.command("list")
def list_(limit: Annotated[int, Opt()] = 20, upstream: Upstream = None, provider: Provider = None,
          state: StateDir = None, json: JsonOut = False) -> None:
    """Jobs at the provider, with their registry runs."""
    _, jobs = _call(state, upstream, lambda t: t.list(limit), provider)
    with Registry(state_dir(state)) as reg:
        runs = {j.id: reg.run_by_job(j.id) for j in jobs}
    if json:
        print_json([{"job": j, "run": runs[j.id]} for j in jobs])
        return
    t = Table("job", "status", "base model", "fine-tuned model", "trained tokens", "created", "run")
    for j in jobs:
        r = runs[j.id]
        t.add_row(j.id, j.status, j.model, j.fine_tuned_model or "", str(j.trained_tokens or ""),
                  _fmt_ts(j.created_at), r["id"] if r else "")
    console.print(t)


@app.command()
def cancel(job_id: str, upstream: Upstream = None, provider: Provider = None, state: StateDir = None,
           json: JsonOut = False) -> None:
    """Cancel the job; the registry run becomes cancelled."""
    trainer, job = _call(state, upstream, lambda t: t.cancel(job_id), provider, job_id)
    run = _sync(state, job, trainer)
    if json:
        print_json({"job": job, "run": run})
        return
    console.print(f"{job_id}: {job.status}", highlight=False)


@app.command()
def runs(tenant: Annotated[str | None, Opt()] = None, state: StateDir = None, json: JsonOut = False) -> None:
    """The registry's training runs log (seed 004)."""
    with Registry(state_dir(state)) as reg:
        rows = reg.runs(tenant)
    if json:
        print_json(rows)
        return
    t = Table("run", "tenant", "dataset", "provider", "job", "status", "base", "result model", "trained tokens",
              "est. $", "actual $", "started", "finished", "est. completion", "error")
    for r in rows:
        t.add_row(r["id"], r["tenant_id"], r["dataset_name"] or r["dataset_id"] or "", r["provider"],
                  r["provider_job_id"] or "", r["status"], r["base_model"], r["result_model"] or "",
                  str(r["trained_tokens"] or "") + (f" ({r['gpu_seconds']:.0f} s)" if r["gpu_seconds"] else ""),
                  "" if r["estimated_cost_usd"] is None else f"{r['estimated_cost_usd']:.4f}",
                  "" if r["actual_cost_usd"] is None else f"{r['actual_cost_usd']:.4f}", r["started_at"] or "",
                  r["finished_at"] or "", "" if r["finished_at"] else (r["estimated_finish"] or ""), r["error"] or "")
    console.print(t)
