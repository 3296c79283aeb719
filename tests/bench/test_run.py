"""The benchmark harness's own pure functions: parsing, comparisons, target checks, soak criteria."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench import offline, procfs, report, soak, stats
from bench.archive_count import ArchiveCount, count_archive, count_lines
from bench.wrk import WrkError, WrkRun, parse_output
from gateway.archive import ArchiveWriter

WRK_STDOUT = """Running 5s test @ http://127.0.0.1:1/v1/chat/completions
  1 threads and 8 connections
Requests/sec:   5500.04
WRKJSON {"requests":11004,"duration_us":2000713,"bytes":3554292,"errors":{"connect":0,"read":1,"write":0,"status":3,"timeout":0},"latency_us":{"mean":1454.4,"max":6206,"p50":1441,"p90":1572,"p99":1743,"p999":4505},"statuses":{"200":11001,"502":3}}
"""


def test_parse_wrk_summary_line() -> None:
    r = parse_output(WRK_STDOUT)
    assert r.requests == 11004
    assert r.latency_us.p50 == 1441 and r.latency_us.p99 == 1743
    assert r.errors.read == 1 and r.errors.status == 3
    assert r.statuses == {"200": 11001, "502": 3}
    assert r.rps == pytest.approx(11004 / 2.000713)


def test_parse_wrk_without_summary_is_a_clear_error() -> None:
    with pytest.raises(WrkError, match="no summary line"):
        parse_output("Usage: wrk <options> <url>\n")


def test_wrk_command_whole_seconds_threads_capped_and_pinned() -> None:
    cmd = WrkRun("http://127.0.0.1:9/x", "chat.lua", 1, 2.6, ("bench", "1"), threads=2, taskset="1").command()
    assert cmd[:3] == ["taskset", "-c", "1"]
    assert "-t1" in cmd and "-c1" in cmd and "-d3s" in cmd
    assert cmd[-3:] == ["--", "bench", "1"]
    assert Path(cmd[cmd.index("-s") + 1]).is_file()


def test_percentile_matches_linear_interpolation() -> None:
    values = [5.0, 1.0, 3.0, 2.0, 4.0]
    assert stats.percentile(values, 50) == 3.0
    assert stats.percentile(values, 0) == 1.0 and stats.percentile(values, 100) == 5.0
    assert stats.percentile([1.0, 2.0], 25) == pytest.approx(1.25)
    with pytest.raises(ValueError):
        stats.percentile([], 50)
    with pytest.raises(ValueError):
        stats.percentile([1.0], 101)


def test_ratio_and_slope() -> None:
    assert stats.ratio(3, 4) == 0.75
    assert stats.ratio(3, 0) is None and stats.ratio(None, 4) is None
    assert stats.linear_slope([0, 1, 2, 3], [10, 12, 14, 16]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        stats.linear_slope([1, 1], [2, 3])


def test_parse_proc_stat_with_spaces_and_parens_in_name() -> None:
    ticks = os.sysconf("SC_CLK_TCK")
    fields = ["S", "42"] + ["0"] * 9 + [str(3 * ticks), str(ticks)] + ["0"] * 30
    line = "1234 (python (x) y) " + " ".join(fields)
    ppid, cpu = procfs.parse_stat(line)
    assert ppid == 42 and cpu == pytest.approx(4.0)


def test_tree_usage_sums_descendants(tmp_path: Path) -> None:
    ticks = os.sysconf("SC_CLK_TCK")

    def proc(pid: int, ppid: int, cpu_ticks: int, rss: int, hwm: int) -> None:
        d = tmp_path / str(pid)
        d.mkdir()
        rest = ["S", str(ppid)] + ["0"] * 9 + [str(cpu_ticks), "0"] + ["0"] * 30
        (d / "stat").write_text(f"{pid} (w) " + " ".join(rest))
        (d / "status").write_text(f"Name:\tw\nVmHWM:\t{hwm} kB\nVmRSS:\t{rss} kB\n")

    proc(10, 1, ticks, 100, 150)
    proc(11, 10, 2 * ticks, 200, 250)
    proc(12, 11, ticks, 50, 60)
    proc(20, 1, 9 * ticks, 999, 999)  # not in the tree
    (tmp_path / "self").mkdir()
    assert sorted(procfs.tree_pids(10, tmp_path)) == [10, 11, 12]
    u = procfs.usage(10, tmp_path)
    assert u.cpu_s == pytest.approx(4.0) and u.rss_kb == 350 and u.hwm_kb == 460


def _run(target: str, mode: str, c: int, rps: float, p50: float, p99: float) -> dict:
    return {"target": target, "mode": mode, "connections": c, "rps": rps, "p50_ms": p50, "p99_ms": p99,
            "errors": {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}, "cpu_ms_per_req": 0.2}


def _results(gw_rps32: float = 4000.0, gw_p50: float = 0.9, lost: int = 0) -> dict:
    runs = [
        _run("direct", "json", 1, 9000, 0.10, 0.20), _run("direct", "json", 32, 30000, 1.0, 2.0),
        _run("passthrough", "json", 1, 2500, 0.40, 0.80), _run("passthrough", "json", 32, 5000, 6.0, 9.0),
        _run("abgate", "json", 1, 1200, 0.10 + gw_p50, 2.5), _run("abgate", "json", 32, gw_rps32, 8.0, 12.0),
    ]
    ok = {"status": "ok", "label": "x"}
    return {
        "date": "2026-01-01T00:00:00Z", "quick": True, "machine": {"cpus": 2}, "options": {"duration_s": 3},
        "runs": runs, "offline": {"analyze_10m": {"status": "ok", "seconds": 12.0}},
        "targets": {
            "direct": {**ok, "ttft": {"p50_ms": 0.2, "p90_ms": 0.3, "p99_ms": 0.5}},
            "passthrough": {**ok, "ttft": {"p50_ms": 0.7, "p90_ms": 0.8, "p99_ms": 1.0}},
            "abgate": {**ok, "ttft": {"p50_ms": 1.5, "p90_ms": 1.9, "p99_ms": 3.0}, "peak_rss_mb": 80.0,
                       "events": {"responses": 1000, "interaction_events": 1000 - lost, "in_flight_bound": 41,
                                  "duplicate_event_ids": 0, "unreadable_lines": 0}},
            "litellm": {"status": "skipped", "label": "LiteLLM", "reason": "not installed"},
        },
    }


def test_compare_added_latency_and_ratios() -> None:
    rows = {(r["target"], r["connections"]): r for r in report.compare(_results())}
    gw1 = rows[("abgate", 1)]
    assert gw1["added_p50_ms"] == pytest.approx(0.9) and gw1["added_p99_ms"] == pytest.approx(2.3)
    assert rows[("abgate", 32)]["rps_vs_passthrough"] == pytest.approx(0.8)
    assert rows[("passthrough", 32)]["rps_vs_direct"] == pytest.approx(5000 / 30000)
    assert rows[("direct", 1)]["added_p50_ms"] == 0
    assert rows[("abgate", 32)]["capacity_vs_passthrough"] == pytest.approx(1.0)  # equal CPU per request


def test_checks_pass_and_fail_on_the_issue_targets() -> None:
    good = {c["check"]: c["ok"] for c in report.checks(_results())}
    assert all(good.values()), good
    heavier = _results()
    heavier["runs"][5]["cpu_ms_per_req"] = 0.4  # twice the pass-through's CPU per request
    assert not {c["check"]: c for c in report.checks(heavier)}["CPU-bound capacity @32 vs pass-through"]["ok"]
    bad = {c["check"]: c for c in report.checks(_results(gw_rps32=3000, gw_p50=1.4, lost=2))}
    assert not bad["added latency p50 @1 (ms)"]["ok"]
    assert not bad["throughput @32 vs pass-through"]["ok"]
    assert bad["throughput @32 (req/s)"]["ok"]  # 3000 >= 2000
    assert bad["events lost"]["value"] == 2 and not bad["events lost"]["ok"]
    assert bad["analyze 10M events (s)"]["ok"]


def test_events_accounting_bounds() -> None:
    base = {"responses": 100, "in_flight_bound": 8, "duplicate_event_ids": 0, "unreadable_lines": 0}
    assert report.events_ok({**base, "interaction_events": 100})
    assert report.events_ok({**base, "interaction_events": 108})  # cut-off requests logged, not counted by wrk
    assert not report.events_ok({**base, "interaction_events": 109})
    assert not report.events_ok({**base, "interaction_events": 99})
    assert not report.events_ok({**base, "interaction_events": 100, "duplicate_event_ids": 1})


def test_markdown_has_tables_ratios_and_skips() -> None:
    md = report.markdown(_results())
    assert "| abgate | 32 | 4000 |" in md
    assert "*skipped: not installed*" in md
    assert "| abgate | 1.50 | 3.00 | 1.30 | 2.50 | 80 |" in md  # TTFT overhead vs direct
    assert "## Targets (issue 9)" in md and "**no**" not in md


def test_archive_count_kinds_duplicates_and_bad_lines(tmp_path: Path) -> None:
    events = list(offline.synthetic_interactions(50, seed=3))
    ArchiveWriter(tmp_path, writer="t").write(events + events[:2], fsync=False)
    counted = count_archive(tmp_path)
    interactions = sum(1 for e in events if type(e).__name__ == "Interaction")
    assert counted.kinds["interaction"] == interactions == 50
    assert counted.statuses["ok"] == 50
    assert counted.duplicates == 2
    into = ArchiveCount()
    count_lines([b'{"kind":"interaction"', b"", b'{"kind":"feedback","event_id":"x"}'], into, set())
    assert into.unreadable == 1 and into.kinds["feedback"] == 1


def test_synthetic_interactions_are_deterministic_with_near_duplicates() -> None:
    a = [e for e in offline.synthetic_interactions(400, seed=5) if type(e).__name__ == "Interaction"]
    b = [e for e in offline.synthetic_interactions(400, seed=5) if type(e).__name__ == "Interaction"]
    assert [e.messages for e in a] == [e.messages for e in b]
    questions = [e.messages[1]["content"] for e in a]
    # near-duplicates share all words but one with an earlier question
    near = sum(1 for i, q in enumerate(questions) if any(
        len(set(q.split()) ^ set(p.split())) <= 2 and q != p for p in questions[:i]))
    assert 40 <= near <= 120


def test_last_json_line() -> None:
    assert offline.last_json('progress\n{"seconds_10m": 12.5}\n') == {"seconds_10m": 12.5}
    assert offline.last_json("{not json}\nno json") is None


def test_soak_pacing_and_memory_and_status_checks() -> None:
    assert soak.pacing_delay_ms(32, 1600, 1.0) == 19
    assert soak.pacing_delay_ms(8, 100000, 5.0) == 1
    with pytest.raises(ValueError):
        soak.pacing_delay_ms(0, 100, 1)
    flat = [(t * 5.0, 100_000 + (t % 3) * 100) for t in range(40)]
    assert soak.memory_flat(flat)["ok"]
    step = [(t * 5.0, 100_000 + (20_000 if t >= 16 else 0)) for t in range(40)]  # one-off growth in the outage
    assert soak.memory_flat(step)["ok"]
    leaking = [(t * 5.0, 100_000 + t * 2_000) for t in range(40)]
    leak = soak.memory_flat(leaking)
    assert not leak["ok"] and leak["steady_slope_mb_per_min"] > 20
    assert not soak.memory_flat(flat[:3])["ok"]
    assert soak.status_check({"200": 990, "502": 10}, 11, 8)["ok"]
    assert not soak.status_check({"200": 990, "500": 1}, 0, 8)["ok"]
    assert not soak.status_check({"200": 990, "502": 10}, 4, 8)["ok"]  # a 502 without an upstream_error event


def test_profile_aggregate_self_and_inclusive_shares() -> None:
    from bench.profile import aggregate, function_of, package_of

    lines = [
        "run (uvicorn/main.py:10);handle (gateway/proxy.py:40);encode (msgspec/__init__.py:1) 6",
        "run (uvicorn/main.py:10);handle (gateway/proxy.py:41) 3",
        "run (uvicorn/main.py:11);_run_once (/usr/lib/python3.11/asyncio/base_events.py:1900) 1",
        "garbage line without count",
    ]
    p = aggregate(lines)
    assert p.samples == 10
    assert dict(p.top(p.self_by_package, 5)) == {"msgspec": 60.0, "gateway": 30.0, "asyncio": 10.0}
    assert dict(p.top(p.incl_by_func, 5))["handle (gateway/proxy.py)"] == 90.0  # two lines, one function
    assert dict(p.top(p.incl_by_func, 5))["run (uvicorn/main.py)"] == 100.0
    assert package_of("f (/x/.venv/lib/python3.11/site-packages/aiohttp/client.py:9)") == "aiohttp"
    assert package_of("<module> (<frozen runpy>:88)") == "<frozen runpy>"
    assert function_of("f (a/b.py:12)") == "f (a/b.py)"


def test_events_exact_against_the_gateways_own_request_count() -> None:
    base = {"responses": 100, "in_flight_bound": 8, "interaction_events": 104}
    assert report.events_ok({**base, "gateway_requests": 104})
    assert not report.events_ok({**base, "gateway_requests": 106})  # two completed requests without an event
    assert not report.events_ok({**base, "gateway_requests": 104, "events_dropped_metric": 1})


def test_metric_totals_from_a_scrape() -> None:
    from bench.run import metric_totals

    text = """# TYPE abgate_requests counter
abgate_requests_total{route="bench",arm="control",model="m",status="ok"} 7.0
abgate_requests_total{route="bench",arm="treatment",model="m",status="ok"} 5.0
# TYPE abgate_events counter
abgate_events_total{kind="interaction",outcome="written"} 12.0
abgate_events_total{kind="feedback",outcome="dropped"} 2.0
"""
    totals = metric_totals(text)
    assert totals["requests"] == 12.0 and totals["events_written"] == 12.0 and totals["events_dropped"] == 2.0


def test_check_without_a_baseline_is_not_applicable_rather_than_failed() -> None:
    res = _results()
    res["runs"] = [r for r in res["runs"] if r["target"] != "passthrough"]
    by = {c["check"]: c for c in report.checks(res)}
    assert by["throughput @32 vs pass-through"]["ok"] is None
    assert "| n/a |" in report.markdown(res)


def test_checks_prefer_the_interleaved_concurrency_1_measurement() -> None:
    res = _results(gw_p50=0.2)  # wrk-based: 0.2 ms added, would pass
    res["targets"]["abgate"]["paired"] = {
        "json": {"added": {"p50_ms": 1.4, "p99_ms": 2.0}},
        "stream": {"added": {"p50_ms": 0.5, "p99_ms": 1.0}},
    }
    by = {c["check"]: c for c in report.checks(res)}
    assert by["added latency p50 @1 (ms)"]["value"] == 1.4 and not by["added latency p50 @1 (ms)"]["ok"]
    assert by["added latency p99 @1 (ms)"]["ok"] and by["streaming TTFT overhead p50 (ms)"]["value"] == 0.5
