"""Dataset build with near-dedup over 100k archived interactions: `python -m bench.dataset_100k`.

Generates a seeded archive (interactions + feedback, ~10 % near-duplicates of earlier ones)
with the gateway's ArchiveWriter, then times what `abgate dataset build` does: read the
archive (DuckDB), rank/filter, exact + MinHash near-dedup, leak-free split, store in the
registry. Prints the timings and exits 1 when the build is over the target (default 60 s).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.offline import synthetic_interactions
from gateway.archive import ArchiveWriter
from training import build as bd
from training.registry import Registry
from training.sources import from_archive


def generate(state: Path, n: int, seed: int, dup_share: float) -> int:
    writer = ArchiveWriter(state, writer="bench")
    batch: list[Any] = []
    written = 0
    for event in synthetic_interactions(n, seed=seed, dup_share=dup_share):
        batch.append(event)
        if len(batch) >= 10_000:
            written += writer.write(batch, fsync=False)
            batch = []
    return written + writer.write(batch, fsync=False)


def timed_build(state: Path) -> dict[str, Any]:
    """The same steps, with the same defaults, as `abgate dataset build` on the archive."""
    t0 = time.perf_counter()
    candidates, skipped = from_archive(state)
    t1 = time.perf_counter()
    result = bd.build(candidates, bd.BuildOptions(min_signal="thumbs_up"))
    t2 = time.perf_counter()
    with Registry(state) as reg:
        reg.create_dataset(tenant="default", name="bench", source="archive", examples=result.examples,
                           params=result.report["options"], report=result.report,
                           system_prompt_sha=bd.prompt_sha(result.examples))
    t3 = time.perf_counter()
    rep = result.report
    return {"read_s": round(t1 - t0, 3), "build_s": round(t2 - t1, 3), "store_s": round(t3 - t2, 3),
            "seconds": round(t3 - t0, 3), "candidates": len(candidates), "skipped": len(skipped),
            "examples": rep["examples"], "filtered_out": rep["filtered_out"],
            "duplicates_exact": rep["duplicates"]["exact"], "duplicates_near": rep["duplicates"]["near"],
            "splits": rep["splits"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dataset_100k", description=__doc__.splitlines()[0])
    p.add_argument("--interactions", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--dup-share", type=float, default=0.1, help="share of near-duplicate interactions")
    p.add_argument("--target-s", type=float, default=60.0, help="exit 1 when the build takes longer")
    p.add_argument("--work", type=Path, default=None, help="keep the archive here (default: a temp dir)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    if args.interactions < 1 or not 0 <= args.dup_share < 1:
        p.error("--interactions must be >= 1 and --dup-share in [0, 1)")
    console = Console(stderr=args.json)
    work = args.work or Path(tempfile.mkdtemp(prefix="abgate-bench-ds-"))
    state = work / "state"
    if state.exists():
        shutil.rmtree(state)  # a stale registry would mark every interaction as already used
    try:
        with console.status(f"generating {args.interactions:,} interactions"):
            t = time.perf_counter()
            events = generate(state, args.interactions, args.seed, args.dup_share)
            gen_s = time.perf_counter() - t
        with console.status("dataset build + near-dedup"):
            out = timed_build(state)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out |= {"interactions": args.interactions, "events": events, "generate_s": round(gen_s, 3),
            "target_s": args.target_s, "ok": out["seconds"] <= args.target_s}
    if args.json:
        print(json.dumps(out))
    else:
        table = Table("step", "seconds", title="dataset build")
        for k in ("read_s", "build_s", "store_s", "seconds"):
            table.add_row({"seconds": "total"}.get(k, k[:-2]), f"{out[k]:.2f}")
        console.print(table)
        console.print(f"{out['candidates']:,} candidates -> {out['examples']:,} examples; "
                      f"{out['duplicates_near']:,} near and {out['duplicates_exact']:,} exact duplicates removed; "
                      f"splits {out['splits']}; archive generated in {gen_s:.1f} s")
        verdict = "[green]within[/]" if out["ok"] else "[red]OVER[/]"
        console.print(f"{verdict} the target: {out['seconds']:.1f} s vs {args.target_s:g} s")
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
