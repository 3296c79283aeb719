"""Turn one bench run's raw measurements into comparisons, target checks and a Markdown report.

Pure functions over plain dicts (the JSON that `bench.run` writes), so they are unit-tested and
the Markdown can be regenerated from any results file: `python -m bench.report results/X.json`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec

from bench.stats import ratio

BASELINE = "direct"
FLOOR = "passthrough"
GATEWAYS = ("abgate", "abgate-redis")

# Issue 9 targets (per worker process, ratios from one run).
ADDED_P50_MS = 1.0
ADDED_P99_MS = 3.0
TTFT_OVERHEAD_MS = 2.0
MIN_RPS_AT_32 = 2000.0
MIN_SHARE_OF_FLOOR = 0.80
ANALYZE_10M_S = 30.0
DATASET_100K_S = 60.0
CLI_STARTUP_S = 0.3  # issue 15: `abgate --help` and `abgate config validate`


def _runs_by_key(runs: Iterable[dict[str, Any]]) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(r["target"], r["mode"], r["connections"]): r for r in runs}


def compare(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each run with its added latency vs the direct run and its throughput vs direct / pass-through."""
    index = _runs_by_key(results["runs"])
    out = []
    for run in results["runs"]:
        key = (run["mode"], run["connections"])
        base = index.get((BASELINE, *key))
        floor = index.get((FLOOR, *key))
        row = dict(run)
        row["added_p50_ms"] = run["p50_ms"] - base["p50_ms"] if base else None
        row["added_p99_ms"] = run["p99_ms"] - base["p99_ms"] if base else None
        row["rps_vs_direct"] = ratio(run["rps"], base["rps"] if base else None)
        row["rps_vs_passthrough"] = ratio(run["rps"], floor["rps"] if floor else None)
        # Capacity ratio from CPU per request: what throughput would be if both were CPU-bound on
        # their core. Other processes on a busy machine barely move it, unlike req/s.
        row["capacity_vs_passthrough"] = ratio(floor.get("cpu_ms_per_req") if floor else None,
                                               run.get("cpu_ms_per_req"))
        out.append(row)
    return out


def ttft_overhead(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    targets = results["targets"]
    base = (targets.get(BASELINE) or {}).get("ttft")
    out: dict[str, dict[str, float]] = {}
    if not base:
        return out
    for name, t in targets.items():
        if name != BASELINE and t.get("ttft"):
            out[name] = {q: t["ttft"][f"{q}_ms"] - base[f"{q}_ms"] for q in ("p50", "p90", "p99")}
    return out


def events_lost(events: dict[str, Any]) -> int:
    """Responses the clients received that have no interaction event (never negative).

    Requests cut off by wrk at the end of a run may still be logged without a counted
    response, hence the upper bound check separately in `events_ok`.
    """
    return max(0, int(events["responses"]) - int(events["interaction_events"]))


def events_ok(events: dict[str, Any]) -> bool:
    """Client view: every response has an event, at most one more per connection cut by wrk.
    Server view (exact, when scraped): one event per request the gateway's metrics counted."""
    written = events["interaction_events"]
    server = events.get("gateway_requests")
    return (events_lost(events) == 0 and written <= events["responses"] + events["in_flight_bound"]
            and (server is None or written == server) and events.get("events_dropped_metric", 0) == 0
            and events.get("duplicate_event_ids", 0) == 0 and events.get("unreadable_lines", 0) == 0)


def _check(target: str, name: str, value: float | None, limit: float, *, at_most: bool) -> dict[str, Any]:
    # None: not measured in this run (a baseline configuration was skipped) -> n/a, not a failure
    ok = None if value is None else (value <= limit if at_most else value >= limit)
    return {"target": target, "check": name, "value": value, "limit": limit,
            "op": "<=" if at_most else ">=", "ok": ok}


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = _runs_by_key(compare(results))
    ttft = ttft_overhead(results)
    out = []
    for gw in GATEWAYS:
        t = results["targets"].get(gw)
        if not t or t.get("status") != "ok":
            continue
        c1 = rows.get((gw, "json", 1), {})
        c32 = rows.get((gw, "json", 32), {})
        paired = t.get("paired")
        if paired:  # interleaved with direct request by request: robust to machine noise
            added, stream_added = paired["json"]["added"], paired["stream"]["added"]
            p50, p99, ttft50 = added["p50_ms"], added["p99_ms"], stream_added["p50_ms"]
        else:
            p50, p99, ttft50 = c1.get("added_p50_ms"), c1.get("added_p99_ms"), (ttft.get(gw) or {}).get("p50")
        out.append(_check(gw, "added latency p50 @1 (ms)", p50, ADDED_P50_MS, at_most=True))
        out.append(_check(gw, "added latency p99 @1 (ms)", p99, ADDED_P99_MS, at_most=True))
        out.append(_check(gw, "streaming TTFT overhead p50 (ms)", ttft50, TTFT_OVERHEAD_MS, at_most=True))
        out.append(_check(gw, "throughput @32 (req/s)", c32.get("rps"), MIN_RPS_AT_32, at_most=False))
        out.append(_check(gw, "throughput @32 vs pass-through", c32.get("rps_vs_passthrough"), MIN_SHARE_OF_FLOOR,
                          at_most=False))
        out.append(_check(gw, "CPU-bound capacity @32 vs pass-through", c32.get("capacity_vs_passthrough"),
                          MIN_SHARE_OF_FLOOR, at_most=False))
        if t.get("events"):
            out.append({"target": gw, "check": "events lost", "value": events_lost(t["events"]), "limit": 0,
                        "op": "==", "ok": events_ok(t["events"])})
    for row in (results.get("startup") or {}).get("commands", []):
        out.append(_check("cli", f"start-up `{row['command']}` min (s)", row["min_s"], CLI_STARTUP_S, at_most=True))
    offline = results.get("offline") or {}
    if (a := offline.get("analyze_10m")) and a.get("seconds") is not None:
        out.append(_check("offline", "analyze 10M events (s)", a["seconds"], ANALYZE_10M_S, at_most=True))
    if (d := offline.get("dataset_100k")) and d.get("seconds") is not None:
        out.append(_check("offline", "dataset build + near-dedup 100k (s)", d["seconds"], DATASET_100K_S,
                          at_most=True))
    return out


def _f(value: float | None, fmt: str = "{:.2f}") -> str:
    return "–" if value is None else fmt.format(value)


def markdown(results: dict[str, Any]) -> str:
    m = results.get("machine", {})
    lines = [
        f"# abgate benchmark — {results['date']}",
        "",
        f"{m.get('cpus', '?')} CPUs ({m.get('cpu_model', '?')}), Python {m.get('python', '?')}; "
        f"wrk {results['options']['duration_s']} s per run, 1 wrk thread; pinning: {m.get('pinning', 'none')}. "
        "Absolute numbers move between machines: read the ratios, measured in this one run.",
        "",
    ]
    load = m.get("loadavg_before")
    if load is not None and load > 0.5:
        lines += [f"**Warning:** the machine was busy with other work (1-min load average {load:.2f} before the run, "
                  f"{m.get('loadavg_after') or 0:.2f} after); percentiles, p99 above all, are noisy. The "
                  "concurrency-1 targets use the interleaved measurement, which noise hits on both sides alike.", ""]
    lines += [
        "Configurations: " + "; ".join(f"**{name}** — {t['label']}" + ("" if t.get("status") == "ok" else
                                        f" (*{t.get('status')}: {t.get('reason', '')}*)")
                                        for name, t in results["targets"].items()),
        "",
    ]
    rows = compare(results)
    for mode, title in (("json", "Non-streaming"), ("stream", "Streaming (latency = whole stream)")):
        lines += [f"## {title}", "",
                  "| config | conns | req/s | p50 ms | p99 ms | added p50 ms | added p99 ms | × direct | × pass-through "
                  "| CPU ms/req | capacity × pass-through (CPU) | errors |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            if r["mode"] != mode:
                continue
            errors = sum(r["errors"].values())
            lines.append(
                f"| {r['target']} | {r['connections']} | {r['rps']:.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
                f"{_f(r['added_p50_ms'])} | {_f(r['added_p99_ms'])} | {_f(r['rps_vs_direct'])} | "
                f"{_f(r['rps_vs_passthrough'])} | {_f(r.get('cpu_ms_per_req'), '{:.3f}')} | "
                f"{_f(r['capacity_vs_passthrough'])} | {errors} |")
        lines.append("")
    paired_rows = [(n, t["paired"]) for n, t in results["targets"].items() if t.get("paired")]
    if paired_rows:
        lines += ["## Concurrency 1, interleaved with direct (request by request, same client)", "",
                  "| config | latency p50 ms | p99 ms | added p50 ms | added p99 ms | TTFT p50 ms | TTFT p99 ms "
                  "| TTFT overhead p50 ms | TTFT overhead p99 ms |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, pr in paired_rows:
            j, st = pr["json"], pr["stream"]
            lines.append(f"| {name} | {j['target']['p50_ms']:.2f} | {j['target']['p99_ms']:.2f} | "
                         f"{j['added']['p50_ms']:.2f} | {j['added']['p99_ms']:.2f} | {st['target']['p50_ms']:.2f} | "
                         f"{st['target']['p99_ms']:.2f} | {st['added']['p50_ms']:.2f} | {st['added']['p99_ms']:.2f} |")
        lines.append("")
    overhead = ttft_overhead(results)
    lines += ["## Time to first token (sequential streaming requests)", "",
              "| config | p50 ms | p99 ms | overhead p50 ms | overhead p99 ms | peak RSS MB |",
              "|---|---:|---:|---:|---:|---:|"]
    for name, t in results["targets"].items():
        if t.get("ttft"):
            o = overhead.get(name, {})
            lines.append(f"| {name} | {t['ttft']['p50_ms']:.2f} | {t['ttft']['p99_ms']:.2f} | {_f(o.get('p50'))} | "
                         f"{_f(o.get('p99'))} | {_f(t.get('peak_rss_mb'), '{:.0f}')} |")
    lines.append("")
    ev_rows = [(n, t) for n, t in results["targets"].items() if t.get("events")]
    if ev_rows:
        lines += ["## Events written vs requests answered", "",
                  "| config | responses (wrk) | requests (gateway metrics) | interaction events | in-flight bound | lost "
                  "| dropped | duplicates | feedback sent | feedback events | feedback req/s @8 |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, t in ev_rows:
            e, fb = t["events"], t.get("feedback") or {}
            lines.append(f"| {name} | {e['responses']} | {e.get('gateway_requests', '–')} | {e['interaction_events']} | "
                         f"{e['in_flight_bound']} | {events_lost(e)} | {e.get('events_dropped_metric', 0)} | "
                         f"{e.get('duplicate_event_ids', 0)} | {fb.get('responses', '–')} | "
                         f"{e.get('feedback_events', '–')} | {_f(fb.get('rps'), '{:.0f}')} |")
        lines.append("")
    offline = results.get("offline") or {}
    if offline:
        lines += ["## Offline", "", "| benchmark | result |", "|---|---|"]
        for name, o in offline.items():
            detail = (f"{o['seconds']:.1f} s" if o.get("seconds") is not None else o.get("status", "–"))
            if o.get("detail"):
                detail += f" — {o['detail']}"
            lines.append(f"| {name} | {detail} |")
        lines.append("")
    startup = (results.get("startup") or {}).get("commands", [])
    if startup:
        lines += ["## CLI start-up (fresh process per run)", "",
                  "| command | runs | min s | median s | heavy imports |", "|---|---:|---:|---:|---|"]
        for row in startup:
            lines.append(f"| `{row['command']}` | {row['runs']} | {row['min_s']:.3f} | {row['median_s']:.3f} | "
                         f"{', '.join(row['heavy_imports']) or 'none'} |")
        lines.append("")
    cs = checks(results)
    if cs:
        lines += ["## Targets (issue 9)", "", "| where | target | measured | limit | met |", "|---|---|---:|---:|:---:|"]
        for c in cs:
            lines.append(f"| {c['target']} | {c['check']} | {_f(c['value'])} | {c['op']} {c['limit']} | "
                         f"{ {True: 'yes', False: '**no**', None: 'n/a'}[c['ok']] } |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m bench.report RESULTS.json", file=sys.stderr)
        return 2
    print(markdown(msgspec.json.decode(Path(args[0]).read_bytes())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
