"""`make bench`: measure abgate against the simulator and the bare pass-through in one run.

Configurations (same machine, same run, so their ratios mean something):
  direct        wrk -> simulator
  passthrough   wrk -> bench.passthrough -> simulator          (the floor for this design)
  abgate        wrk -> abgate serve (embedded) -> simulator   (routing, events, feedback, metrics)
  abgate-redis  wrk -> abgate serve --redis -> simulator, + redis-server + abgate archive
  litellm       wrk -> LiteLLM proxy -> simulator             (only when installed)

For each: non-streaming and streaming wrk runs at 1, 8, 32, 128 connections, streaming TTFT
with a sequential async client, CPU per request and peak RSS of the server's process tree,
and (gateways) interaction events in the archive vs responses wrk counted, plus a feedback
run. Then the offline benchmarks. Writes bench/results/<date>.json and .md.

    python -m bench.run [--quick] [--targets direct,passthrough,abgate] [--no-offline]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import httpx
import msgspec
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bench import offline, report, startup, targets, ttft
from bench.archive_count import count_archive
from bench.procfs import usage
from bench.wrk import WrkRun
from tests.support.procs import Proc

RESULTS = Path(__file__).resolve().parent / "results"
ALL_TARGETS = ("direct", "passthrough", "abgate", "abgate-redis", "litellm")
MODES = (("json", "0"), ("stream", "1"))
console = Console(stderr=True)

Starter = Callable[[Path, targets.Pinning, tuple[Proc, str]], AbstractContextManager[targets.Target]]
STARTERS: dict[str, Starter] = {
    "direct": targets.direct,
    "passthrough": targets.passthrough,
    "abgate": targets.abgate_embedded,
    "abgate-redis": targets.abgate_redis,
    "litellm": targets.litellm,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description="abgate benchmark harness (issue 9)")
    p.add_argument("--quick", action="store_true", help="3 s runs, fewer TTFT samples, 1M events offline")
    p.add_argument("--duration", type=float, help="seconds per wrk run (default 5, 3 with --quick)")
    p.add_argument("--connections", default="1,8,32,128", help="comma-separated connection counts")
    p.add_argument("--targets", default=",".join(ALL_TARGETS), help="comma-separated subset of " + ",".join(ALL_TARGETS))
    p.add_argument("--ttft-requests", type=int, help="sequential streaming requests per target (default 300/100)")
    p.add_argument("--no-offline", action="store_true", help="skip the analyze / dataset benchmarks")
    p.add_argument("--no-pin", action="store_true", help="do not pin the server under test to its own CPU")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for <date>.json and <date>.md")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs, archives) for inspection")
    args = p.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 5.0)
    args.ttft_requests = args.ttft_requests or (100 if args.quick else 300)
    args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = sorted(set(args.targets) - set(ALL_TARGETS))
    if unknown:
        p.error(f"unknown target(s) {unknown}; choose from {', '.join(ALL_TARGETS)}")
    if any(c < 1 for c in args.connections):
        p.error("--connections must be positive integers")
    return args


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine(pin: targets.Pinning) -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "pinning": pin.describe(), "loadavg_before": loadavg()}


def run_record(target: targets.Target, mode: str, connections: int, result: Any, cpu_s: float) -> dict[str, Any]:
    lat = result.latency_us
    return {
        "target": target.name, "mode": mode, "connections": connections,
        "requests": result.requests, "rps": result.rps, "duration_s": result.duration_us / 1e6,
        "p50_ms": lat.p50 / 1000, "p90_ms": lat.p90 / 1000, "p99_ms": lat.p99 / 1000, "p999_ms": lat.p999 / 1000,
        "mean_ms": lat.mean / 1000, "max_ms": lat.max / 1000,
        "errors": msgspec.structs.asdict(result.errors),
        "cpu_ms_per_req": cpu_s * 1000 / result.requests if result.requests else None,
        "cpu_cores": cpu_s / (result.duration_us / 1e6) if result.duration_us else None,
    }


class Accounting:
    """What the clients sent and got back, to compare with the events the gateway wrote."""

    def __init__(self) -> None:
        self.responses = 0
        self.in_flight_bound = 0

    def add_wrk(self, result: Any, connections: int) -> None:
        self.responses += result.requests
        # wrk stops mid-flight: up to one request per connection may reach the gateway uncounted.
        self.in_flight_bound += connections


def first_interaction_id(target: targets.Target) -> str:
    body = ttft.chat_body(target.model, 0, stream=False)
    r = httpx.post(target.chat_url, content=body, headers={"content-type": "application/json"}, timeout=30)
    r.raise_for_status()
    return str(r.headers.get("x-abgate-interaction-id") or r.json()["id"])


def metric_totals(text: str) -> dict[str, float]:
    """From one /metrics scrape: requests the gateway completed and events by outcome."""
    out: dict[str, float] = {"requests": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "abgate_requests_total":
                out["requests"] += sample.value
            elif sample.name == "abgate_events_total":
                key = f"events_{sample.labels.get('outcome', '?')}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def scrape_url(base_url: str) -> dict[str, float] | None:
    try:
        return metric_totals(httpx.get(f"{base_url}/metrics", timeout=10).text)
    except httpx.HTTPError:
        return None


def scrape(target: targets.Target) -> dict[str, float] | None:
    return scrape_url(target.base_url)


def measure_target(target: targets.Target, direct_chat_url: str, args: argparse.Namespace, pin: targets.Pinning,
                   progress: Progress, task: Any) -> tuple[dict[str, Any], list[dict[str, Any]], Accounting]:
    acct, runs = Accounting(), []
    info: dict[str, Any] = {"status": "ok", "label": target.label}
    # Warm-up (imports, connection pools, JIT-free but cache-warm): counted for events, not reported.
    warm = WrkRun(target.chat_url, "chat.lua", 8, 1.0, (target.model, "0"), taskset=pin.helpers).run()
    acct.add_wrk(warm, 8)
    for mode, stream in MODES:
        for conns in args.connections:
            progress.update(task, description=f"{target.name}: {mode} @{conns}")
            before = usage(target.pid).cpu_s
            result = WrkRun(target.chat_url, "chat.lua", conns, args.duration, (target.model, stream),
                            taskset=pin.helpers).run()
            cpu = usage(target.pid).cpu_s - before
            acct.add_wrk(result, conns)
            runs.append(run_record(target, mode, conns, result, cpu))
            progress.advance(task)
    progress.update(task, description=f"{target.name}: TTFT")
    if target.name == "direct":
        info["ttft"] = ttft.measure(target.chat_url, target.model, n=args.ttft_requests)
    else:
        paired = ttft.measure_paired((direct_chat_url, targets.BASE_MODEL), (target.chat_url, target.model),
                                     n=args.ttft_requests)
        acct.responses += int(paired.pop("requests")["target"]["n"])
        info["paired"] = paired
        info["ttft"] = paired["stream"]["target"]
    progress.advance(task)
    if target.gateway:
        progress.update(task, description=f"{target.name}: feedback")
        iid = first_interaction_id(target)
        acct.responses += 1
        fb = WrkRun(f"{target.base_url}/v1/feedback", "feedback.lua", 8, args.duration, (iid,),
                    taskset=pin.helpers).run()
        info["feedback"] = {"responses": fb.requests, "rps": fb.rps, "p50_ms": fb.latency_us.p50 / 1000,
                            "p99_ms": fb.latency_us.p99 / 1000, "errors": msgspec.structs.asdict(fb.errors),
                            "in_flight_bound": 8}
        # After all load has finished: every request the gateway completed is counted here.
        info["metrics"] = scrape(target)
        progress.advance(task)
    u = usage(target.pid)
    info["peak_rss_mb"] = u.hwm_kb / 1024
    return info, runs, acct


def events_summary(target: targets.Target, acct: Accounting, info: dict[str, Any]) -> dict[str, Any]:
    assert target.state_dir is not None
    counted = count_archive(target.state_dir)
    metrics = info.get("metrics") or {}
    return {
        "responses": acct.responses, "in_flight_bound": acct.in_flight_bound,
        "gateway_requests": int(metrics["requests"]) if "requests" in metrics else None,
        "events_dropped_metric": int(metrics.get("events_dropped", 0)),
        "interaction_events": counted.kinds.get("interaction", 0),
        "feedback_events": counted.kinds.get("feedback", 0),
        "feedback_responses": (info.get("feedback") or {}).get("responses"),
        **counted.to_dict(),
    }


def steps_for(name: str, args: argparse.Namespace) -> int:
    gateway = name in report.GATEWAYS
    return len(MODES) * len(args.connections) + 1 + (1 if gateway else 0)


def run(args: argparse.Namespace) -> dict[str, Any]:
    pin = targets.Pinning.detect(not args.no_pin)
    pin.pin_self()
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "quick": args.quick, "machine": machine(pin),
        "options": {"duration_s": args.duration, "connections": args.connections,
                    "ttft_requests": args.ttft_requests, "targets": args.targets},
        "targets": {}, "runs": [], "offline": {},
    }
    work = Path(tempfile.mkdtemp(prefix="abgate-bench-"))
    try:
        results["startup"] = startup.run(runs=3 if args.quick else 7)
        _run_in(work, args, pin, results)
        results["machine"]["loadavg_after"] = loadavg()
    finally:
        if args.keep:
            console.print(f"work dir (logs, archives) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return results


def _run_in(work: Path, args: argparse.Namespace, pin: targets.Pinning, results: dict[str, Any]) -> None:
    with ExitStack() as stack:
        sim = stack.enter_context(targets.simulator(work, pin))
        total = sum(steps_for(n, args) for n in args.targets)
        with Progress(TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("starting", total=total)
            for name in args.targets:
                if name == "litellm" and (why := targets.litellm_available()):
                    results["targets"][name] = {"status": "skipped", "label": "LiteLLM proxy", "reason": why}
                    console.print(f"[yellow]skipping litellm:[/] {why}")
                    progress.advance(task, steps_for(name, args))
                    continue
                progress.update(task, description=f"{name}: starting")
                try:
                    with STARTERS[name](work, pin, sim) as target:
                        info, runs, acct = measure_target(target, f"{sim[1]}/v1/chat/completions", args, pin, progress,
                                                          task)
                    if target.gateway:
                        info["events"] = events_summary(target, acct, info)
                    info.update(target.notes)
                    results["runs"].extend(runs)
                except Exception as err:  # one broken configuration must not hide the others' results
                    info = {"status": "failed", "label": name, "reason": f"{type(err).__name__}: {err}"[:4000]}
                    console.print(f"[red]{name} failed:[/] {info['reason']}")
                results["targets"][name] = info
        if not args.no_offline:
            results["offline"] = offline.run_all(work, quick=args.quick, console=console)


def print_summary(results: dict[str, Any]) -> None:
    table = Table(title="abgate bench — non-streaming")
    for col in ("config", "conns", "req/s", "p50 ms", "p99 ms", "added p50", "× pass-through"):
        table.add_column(col, justify="right" if col != "config" else "left")
    for r in report.compare(results):
        if r["mode"] == "json":
            table.add_row(r["target"], str(r["connections"]), f"{r['rps']:.0f}", f"{r['p50_ms']:.2f}",
                          f"{r['p99_ms']:.2f}", report._f(r["added_p50_ms"]), report._f(r["rps_vs_passthrough"]))
    console.print(table)
    checks = Table(title="targets (issue 9)")
    for col in ("where", "target", "measured", "limit", "met"):
        checks.add_column(col)
    for c in report.checks(results):
        checks.add_row(c["target"], c["check"], report._f(c["value"]), f"{c['op']} {c['limit']}",
                       {True: "[green]yes[/]", False: "[red]no[/]", None: "n/a"}[c["ok"]])
    console.print(checks)


def write(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    stem = results["date"][:10] + ("-quick" if results["quick"] else "")
    results["comparisons"] = report.compare(results)
    results["checks"] = report.checks(results)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    json_path.write_bytes(msgspec.json.format(msgspec.json.encode(results), indent=2) + b"\n")
    md_path.write_text(report.markdown(results) + "\n")
    return json_path, md_path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    json_path, md_path = write(results, args.out)
    print_summary(results)
    console.print(f"wrote {json_path} and {md_path}")
    failed = [n for n, t in results["targets"].items() if t.get("status") == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
