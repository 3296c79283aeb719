"""Offline benchmarks: online analysis over 1M/10M events and dataset build + near-dedup on 100k.

Both call the real code of their owners: `bench/analyze_10m.py` (analysis) and the training
dataset builder; when one is not present yet the result says so instead of inventing a number.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from gateway import events as ev
from gateway.archive import ArchiveWriter

ROOT = Path(__file__).resolve().parents[1]

TOPICS = ["refund for order", "late delivery of order", "change the address of order", "cancel order",
          "invoice for order", "damaged item in order", "warranty claim on order", "missing part in order"]


def last_json(stdout: str) -> dict[str, Any] | None:
    """The last line of `stdout` that parses as a JSON object (scripts print their summary last)."""
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                return value
    return None


def analyze(*, quick: bool, console: Console) -> dict[str, Any]:
    """Run `bench/analyze_10m.py` (the analysis helper's benchmark) and keep its per-size results."""
    if not (ROOT / "bench" / "analyze_10m.py").exists():
        return {"status": "missing", "detail": "bench/analyze_10m.py is not there"}
    sizes = "1000000" if quick else "1000000,10000000"
    cmd = [sys.executable, "-m", "bench.analyze_10m", "--sizes", sizes, "--json"]
    console.print(f"offline: analyze on {sizes.replace(',', ' and ')} events")
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - start
    try:
        rows = json.loads(done.stdout)
    except json.JSONDecodeError:
        return {"status": "failed", "wall_s": wall, "detail": (done.stderr or done.stdout).strip()[-1500:]}
    return {"status": "ok", "wall_s": wall, "rows": rows}


def _vocabulary(rng: random.Random, size: int = 5000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "su", "ta", "ri", "po", "de", "fa", "gu", "zo", "ve", "chi", "bra", "str"]
    return ["".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))) for _ in range(size)]


def synthetic_interactions(n: int, seed: int = 7, dup_share: float = 0.2) -> Iterator[ev.Event]:
    """`n` interactions with feedback. Texts are drawn from a large vocabulary so distinct
    interactions are far apart (as real questions are), and `dup_share` of them are
    near-duplicates of an earlier one (one word changed), so near-dedup has real work to do."""
    rng = random.Random(seed)
    vocab = _vocabulary(rng)
    ts = "2026-01-15T12:00:00.000Z"
    seen: list[tuple[str, str]] = []
    for i in range(n):
        if seen and rng.random() < dup_share:
            # the same exchange again with one word of the question changed
            question, answer = rng.choice(seen)
            words = question.split()
            words[rng.randrange(2, len(words))] = rng.choice(vocab)
            question = " ".join(words)
        else:
            question = f"About my {rng.choice(TOPICS)}: " + " ".join(rng.choices(vocab, k=rng.randint(12, 30)))
            answer = "Thanks for writing. " + " ".join(rng.choices(vocab, k=rng.randint(15, 40)))
        seen.append((question, answer))
        iid = f"bench-{i}"
        yield ev.Interaction(
            event_id=ev.new_event_id(), ts=ts, tenant="default", route="support", experiment="bench-exp",
            arm=rng.choice(["control", "treatment"]), phase=1, config_version=1, interaction_id=iid,
            unit=f"u{rng.randrange(n // 4 + 1)}", traffic="live", model="gpt-4o-mini-2024-07-18", stream=False,
            status="ok", http_status=200, latency_ms=rng.uniform(200, 900), prompt_tokens=60, completion_tokens=80,
            messages=[{"role": "system", "content": "You are a helpful support assistant."},
                      {"role": "user", "content": question}],
            response=answer,
            finish_reason="stop",
        )
        r = rng.random()
        if r < 0.5:
            yield ev.Feedback(event_id=ev.new_event_id(), ts=ts, tenant="default", route="support",
                              experiment="bench-exp", interaction_id=iid, metric="thumbs",
                              value=1 if rng.random() < 0.8 else -1)
        elif r < 0.6:
            yield ev.Feedback(event_id=ev.new_event_id(), ts=ts, tenant="default", route="support",
                              experiment="bench-exp", interaction_id=iid, metric="edited_response",
                              value="Thanks for writing. " + " ".join(rng.choices(vocab, k=rng.randint(15, 40))))


def write_archive(state: Path, n: int) -> int:
    writer = ArchiveWriter(state, writer="bench")
    batch: list[ev.Event] = []
    written = 0
    for event in synthetic_interactions(n):
        batch.append(event)
        if len(batch) >= 10_000:
            written += writer.write(batch, fsync=False)
            batch = []
    return written + writer.write(batch, fsync=False)


def find_builder() -> Callable[[Path], dict[str, Any]] | None:
    """The training helper's dataset build (archive -> ranked, filtered, de-duplicated, split),
    as `state_dir -> summary`; None when `training` does not provide it (reported as missing)."""
    try:
        from training.build import BuildOptions, build
        from training.sources import from_archive
    except ImportError:
        return None

    def run(state: Path) -> dict[str, Any]:
        t0 = time.perf_counter()
        candidates, skipped = from_archive(state)
        read_s = time.perf_counter() - t0
        result = build(candidates, BuildOptions())
        report = result.report
        return {"read_s": read_s, "build_s": time.perf_counter() - t0 - read_s, "candidates": len(candidates),
                "skipped": len(skipped), "examples": report["examples"], "duplicates_exact":
                report["duplicates"]["exact"], "duplicates_near": report["duplicates"]["near"],
                "splits": report["splits"]}

    return run


def dataset_build(work: Path, *, n: int, console: Console) -> dict[str, Any]:
    builder = find_builder()
    if builder is None:
        return {"status": "missing", "detail": "training.build / training.sources not importable"}
    state = work / "dataset-state"
    start = time.perf_counter()
    events = write_archive(state, n)
    gen_s = time.perf_counter() - start
    console.print(f"offline: dataset build + near-dedup over {n:,} interactions ({events:,} events)")
    start = time.perf_counter()
    summary = builder(state)
    seconds = time.perf_counter() - start
    detail = (f"{n:,} interactions -> {summary['examples']:,} examples; {summary['duplicates_near']:,} near and "
              f"{summary['duplicates_exact']:,} exact duplicates removed; read {summary['read_s']:.1f} s, "
              f"build {summary['build_s']:.1f} s")
    return {"status": "ok", "seconds": seconds, "interactions": n, "events": events, "generate_s": gen_s,
            "detail": detail, "result": summary}


def run_all(work: Path, *, quick: bool, console: Console) -> dict[str, Any]:
    out: dict[str, Any] = {}
    a = analyze(quick=quick, console=console)
    for row in a.get("rows") or []:
        n = row["events"]
        label = f"{n // 1_000_000}m" if n % 1_000_000 == 0 else str(n)
        out[f"analyze_{label}"] = {
            "status": "ok", "seconds": row["analyze_s"], "events": n,
            "detail": f"{n:,} events ({row['archive_mb']:,.0f} MB JSONL), {row['units']:,} units; "
                      f"archive generated in {row['generate_s']:.0f} s", "result": row}
    if not a.get("rows"):
        out["analyze"] = a
    out["dataset_100k" if not quick else "dataset_10k"] = dataset_build(
        work, n=10_000 if quick else 100_000, console=console)
    return out
