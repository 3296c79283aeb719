"""Benchmark `abgate analyze` on synthetic archives of 1M and 10M events (targets: 10M < 30 s
from JSONL; 10M < 10 s with closed days compacted to Parquet, `abgate events compact`).

`--compact` also compacts the archive (all its days are closed) and times the analysis
again over Parquet. `--sizes 100000000 --parquet-only` reports 100M (about 50 GB of JSONL on
disk while it runs; it skips the JSONL analysis, which at that size needs tens of GB of RAM).

The archive is generated inside DuckDB (a few seconds, no Python objects per event) in
the exact line format `gateway.archive.ArchiveWriter` writes: 70% interaction events,
30% feedback (approved/csat/thumbs/edited_response/policy_violation), 20 interactions
per unit, two arms at 50/50, treatment with a higher approval rate.

    python -m bench.analyze_10m [--sizes 1000000,10000000] [--compact | --parquet-only] [--dir DIR] [--keep] [--json]
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb

from evaluation import analysis
from evaluation import compact as compaction

TARGET_S = {10_000_000: 30.0}
COMPACT_TARGET_S = {10_000_000: 10.0}


def generate(state: Path, n_events: int, files: int = 8) -> float:
    """Write `n_events` events as JSONL under `<state>/events/date=2025-01-0X/`; returns seconds."""
    t0 = time.perf_counter()
    n_inter = int(n_events * 0.7)
    n_fb = n_events - n_inter
    con = duckdb.connect()
    per_file = -(-n_inter // files)
    fb_per_file = -(-n_fb // files)
    for f in range(files):
        part = state / "events" / f"date=2025-01-{f % 28 + 1:02d}"
        part.mkdir(parents=True, exist_ok=True)
        lo, hi = f * per_file, min(n_inter, (f + 1) * per_file)
        flo, fhi = f * fb_per_file, min(n_fb, (f + 1) * fb_per_file)
        # Feedback i refers to interaction (i * 7 + 3) % n_inter so it lands on many units.
        con.execute(f"""
        COPY (
          SELECT * FROM (
            SELECT 'interaction' AS kind, md5('e' || i) AS event_id,
                   strftime(TIMESTAMP '2025-01-01' + to_seconds(i % 1296000), '%Y-%m-%dT%H:%M:%S.000Z') AS ts,
                   'default' AS tenant, 'support' AS route, 'bench-exp' AS experiment,
                   CASE WHEN (i // 20) % 2 = 0 THEN 'control' ELSE 'treatment' END AS arm,
                   1 AS phase, 1 AS config_version, 'ix-' || md5('i' || i) AS interaction_id,
                   'unit-' || (i // 20) AS unit, 'live' AS traffic,
                   CASE WHEN (i // 20) % 2 = 0 THEN 'base' ELSE 'ft:base:x' END AS model, false AS stream,
                   CASE WHEN hash(i, 1) % 100 = 0 THEN 'upstream_error' ELSE 'ok' END AS status, 200 AS http_status,
                   300 + (hash(i, 2) % 1000)::DOUBLE AS latency_ms, NULL::DOUBLE AS ttft_ms, 1.5 AS overhead_ms,
                   (50 + hash(i, 3) % 100)::BIGINT AS prompt_tokens, (20 + hash(i, 4) % 200)::BIGINT AS completion_tokens,
                   0.00002 AS cost_usd, NULL AS fallback_from, NULL AS messages, NULL AS response, 'stop' AS finish_reason,
                   NULL AS error
            FROM range({lo}, {hi}) t(i)
          )
        ) TO '{part}/bench-int-{f:03d}.jsonl' (FORMAT JSON)
        """)
        con.execute(f"""
        COPY (
          SELECT 'feedback' AS kind, md5('f' || j) AS event_id,
                 strftime(TIMESTAMP '2025-01-01' + to_seconds(k % 1296000 + 60), '%Y-%m-%dT%H:%M:%S.000Z') AS ts,
                 'default' AS tenant, 'support' AS route, 'bench-exp' AS experiment,
                 CASE WHEN (k // 20) % 2 = 0 THEN 'control' ELSE 'treatment' END AS arm, 1 AS phase,
                 1 AS config_version, 'ix-' || md5('i' || k) AS interaction_id,
                 ['approved', 'csat', 'thumbs', 'edited_response', 'policy_violation'][1 + j % 5] AS metric,
                 CASE j % 5
                   WHEN 0 THEN to_json(hash(j, 5) % 100 < CASE WHEN (k // 20) % 2 = 0 THEN 55 ELSE 60 END)
                   WHEN 1 THEN to_json(1 + hash(j, 6) % 5)
                   WHEN 2 THEN to_json(CASE WHEN hash(j, 7) % 2 = 0 THEN 1 ELSE -1 END)
                   WHEN 3 THEN to_json('an edited answer')
                   ELSE to_json(hash(j, 8) % 50 = 0) END AS value,
                 NULL AS idempotency_key, 'user' AS source, 'unit-' || (k // 20) AS unit, 'live' AS traffic,
                 NULL AS extra
          FROM (SELECT j, (j * 7 + 3) % {n_inter} AS k FROM range({flo}, {fhi}) t(j))
        ) TO '{part}/bench-fb-{f:03d}.jsonl' (FORMAT JSON)
        """)
    con.close()
    return time.perf_counter() - t0


@dataclass
class Result:
    events: int
    archive_mb: float
    generate_s: float
    units: int = 0
    interactions: int = 0
    corrupt_lines: int = 0
    approved_lift: float = math.nan
    approved_ci: tuple[float, float] = (math.nan, math.nan)
    srm_p: float | None = None
    analyze_s: float | None = None  # from JSONL (None: not run, --parquet-only)
    target_s: float | None = None
    compact_s: float | None = None
    parquet_mb: float | None = None
    analyze_parquet_s: float | None = None
    compact_target_s: float | None = None
    same_result: bool | None = None  # Parquet and JSONL analyses agree (None: only one was run)

    @property
    def jsonl_pass(self) -> bool:
        return self.analyze_s is None or self.target_s is None or self.analyze_s < self.target_s

    @property
    def parquet_pass(self) -> bool:
        return self.analyze_parquet_s is None or self.compact_target_s is None or \
            self.analyze_parquet_s < self.compact_target_s

    @property
    def passed(self) -> bool:
        return self.jsonl_pass and self.parquet_pass and self.same_result is not False


def _record(res: Result, a: analysis.Analysis) -> None:
    appr = a.metrics["approved"].lifts["treatment"].absolute
    res.units = sum(s.units for s in a.arms)
    res.interactions = sum(s.interactions for s in a.arms)
    res.corrupt_lines = a.archive.corrupt_lines
    res.approved_lift = round(appr.estimate, 4)
    res.approved_ci = (round(appr.low, 4), round(appr.high, 4))
    res.srm_p = a.srm.p_value if a.srm else None


def _timed_analysis(state: Path) -> tuple[analysis.Analysis, float]:
    t0 = time.perf_counter()
    a = analysis.analyze(state, "bench-exp", expected_weights={"control": 0.5, "treatment": 0.5})
    return a, round(time.perf_counter() - t0, 2)


def run(sizes: list[int], root: Path, keep: bool, compact: bool = False, parquet_only: bool = False) -> list[Result]:
    results = []
    for n in sizes:
        state = root / f"n{n}"
        if state.exists():
            shutil.rmtree(state)
        gen_s = generate(state, n)
        size_mb = sum(p.stat().st_size for p in (state / "events").rglob("*.jsonl")) / 1e6
        res = Result(events=n, archive_mb=round(size_mb, 1), generate_s=round(gen_s, 2), target_s=TARGET_S.get(n))
        jsonl_lift: float | None = None
        if not parquet_only:
            a, res.analyze_s = _timed_analysis(state)
            _record(res, a)
            jsonl_lift = a.metrics["approved"].lifts["treatment"].absolute.estimate
        if compact or parquet_only:
            t0 = time.perf_counter()
            days = compaction.compact(state, today=datetime.date(2030, 1, 1))
            res.compact_s = round(time.perf_counter() - t0, 2)
            res.parquet_mb = round(sum(d.parquet_bytes for d in days) / 1e6, 1)
            units = res.units
            b, res.analyze_parquet_s = _timed_analysis(state)
            res.compact_target_s = COMPACT_TARGET_S.get(n)
            _record(res, b)
            if jsonl_lift is not None:
                est = b.metrics["approved"].lifts["treatment"].absolute.estimate
                res.same_result = _close(est, jsonl_lift) and res.units == units
        results.append(res)
        if not keep:
            shutil.rmtree(state)
    return results


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(b))


def _verdict(ok: bool, target: float | None) -> str:
    return "-" if target is None else ("met" if ok else "NOT met")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--sizes", default="1000000,10000000")
    p.add_argument("--dir", type=Path, default=None, help="Where to build archives (default: a temp dir).")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--compact", action="store_true", help="also compact to Parquet and analyse again")
    p.add_argument("--parquet-only", action="store_true",
                   help="compact and analyse only the Parquet (for 100M: the JSONL analysis needs tens of GB of RAM)")
    args = p.parse_args(argv)
    sizes = [int(x) for x in args.sizes.split(",")]
    root = args.dir or Path(tempfile.mkdtemp(prefix="abgate-bench-analyze-"))
    try:
        results = run(sizes, root, args.keep, args.compact, args.parquet_only)
    finally:
        if args.dir is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps([{**asdict(r), "pass": r.passed} for r in results], indent=2))
    else:
        for r in results:
            print(f"{r.events:>11,} events ({r.archive_mb:,.0f} MB JSONL, generated in {r.generate_s:.1f}s): "
                  f"{r.units:,} units, {r.interactions:,} interactions; approved lift {r.approved_lift:+.4f} "
                  f"CI {list(r.approved_ci)}")
            if r.analyze_s is not None:
                print(f"{'':>11}  analyze from JSONL {r.analyze_s:.2f}s (target {r.target_s or '-'}s: "
                      f"{_verdict(r.jsonl_pass, r.target_s)})")
            if r.analyze_parquet_s is not None:
                print(f"{'':>11}  compacted to {r.parquet_mb:,.0f} MB Parquet in {r.compact_s:.1f}s: analyze "
                      f"{r.analyze_parquet_s:.2f}s (target {r.compact_target_s or '-'}s: "
                      f"{_verdict(r.parquet_pass, r.compact_target_s)}); same result as JSONL: "
                      f"{'-' if r.same_result is None else r.same_result}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
