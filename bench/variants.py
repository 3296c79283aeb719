"""Hot-path cost of a dynamic few-shot arm next to a plain arm (a short measurement, ~20 s).

    python -m bench.variants [--examples 2000] [--n 300] [--k 4] [--out bench/results]

One simulator (the chat and the embedding upstream) and one `abgate serve` with three routes on
the same model: `plain` (no overrides), `fewshot` (dynamic few-shot, k nearest of `--examples`
curated examples) and `prompt` (system prompt + parameters, no retrieval). A concurrency-1
client interleaves the routes request by request, so machine noise hits every side alike;
`fewshot` is measured twice: every request a new text (one embedding call each) and a
repeated text (the gateway's query-embedding cache). Reported per side: client latency
p50/p90/p99, and from the interaction events the gateway's own overhead (`overhead_ms`: CPU
time outside upstream waits, so the index search and the body rewrite are in it) and the
retrieval time (`fewshot.retrieval_ms`: embedding call + search). Added = side - plain.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.stats import percentile
from gateway import fewshot
from simulator.embeddings import embed
from tests.support.archive import archived_events
from tests.support.procs import Proc, abgate_cmd, free_port, start_simulator, wait_http

WORDS = ("order", "refund", "package", "late", "broken", "return", "invoice", "address", "password", "account",
         "subscription", "cancel", "shipping", "tracking", "damaged", "warranty", "exchange", "size", "color", "gift")


def _text(rng: random.Random, n: int = 12) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)) + f" #{rng.randrange(10**9)}"


def write_index(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    exs = []
    for i in range(n):
        user = _text(rng)
        exs.append(fewshot.ExportedExample(id=f"ex_{i:06d}", user=user, assistant=f"Answer {i}: {_text(rng, 20)}",
                                           embedding=fewshot.encode_vector(embed(user))))
    fewshot.write_export(path, fewshot.FewShotExport(
        format=fewshot.FORMAT, dataset="ds_bench", tenant="default", embedding_model="text-embedding-3-small",
        dim=256, created_at="bench", examples=tuple(exs)))


CONFIG = """
routes:
  plain:
    experiment: bench-plain
    arms: [{{name: only, model: gpt-6-luna, weight: 1.0}}]
  prompt:
    experiment: bench-prompt
    arms:
      - name: only
        model: gpt-6-luna
        weight: 1.0
        variant: {{system_prompt: "You are a helpful support agent.", params: {{temperature: 0.2, max_tokens: 200}}}}
  fewshot:
    experiment: bench-fewshot
    arms:
      - name: only
        model: gpt-6-luna
        weight: 1.0
        variant: {{fewshot: {{dataset: ds_bench, k: {k}}}}}
upstreams:
  sim: {{base_url: "{sim}/v1", timeout_s: 30}}
"""

SIDES = ("plain", "prompt", "fewshot-new-text", "fewshot-cached-text")


async def _run(gw: str, n: int, warmup: int, seed: int) -> dict[str, list[tuple[float, str]]]:
    rng = random.Random(seed)
    out: dict[str, list[tuple[float, str]]] = {s: [] for s in SIDES}
    repeated = _text(rng)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        for i in range(warmup + n):
            order = list(SIDES) if i % 2 == 0 else list(reversed(SIDES))
            fresh = _text(rng)
            for side in order:
                route = {"plain": "plain", "prompt": "prompt"}.get(side, "fewshot")
                text = repeated if side == "fewshot-cached-text" else fresh
                body = {"model": route, "user": f"u{i}", "messages": [{"role": "user", "content": text}]}
                t = time.perf_counter()
                async with session.post(f"{gw}/v1/chat/completions", json=body) as r:
                    await r.read()
                    iid = r.headers["x-abgate-interaction-id"]
                    assert r.status == 200, r.status
                ms = (time.perf_counter() - t) * 1000
                if i >= warmup:
                    out[side].append((ms, iid))
    return out


def _summary(xs: list[float]) -> dict[str, float]:
    return {"n": float(len(xs)), "p50_ms": percentile(xs, 50), "p90_ms": percentile(xs, 90),
            "p99_ms": percentile(xs, 99), "mean_ms": sum(xs) / len(xs)}


def measure(n: int = 300, warmup: int = 30, examples: int = 2000, k: int = 4, seed: int = 0) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="abgate-bench-variants-") as tmp:
        work = Path(tmp)
        sim_proc, sim = start_simulator(work)
        gw_proc: Proc | None = None
        try:
            state = work / "state"
            write_index(fewshot.export_path(state, "ds_bench"), examples, seed)
            cfg = work / "router.yaml"
            cfg.write_text(CONFIG.format(sim=sim, k=k))
            port = free_port()
            gw_proc = Proc(abgate_cmd("serve", "--config", str(cfg), "--state-dir", str(state), "--host", "127.0.0.1",
                                      "--port", str(port)), log=work / "gateway.log").start()
            gw = f"http://127.0.0.1:{port}"
            wait_http(f"{gw}/readyz", gw_proc)
            raw = asyncio.run(_run(gw, n, warmup, seed))
            want = {iid for side in raw.values() for _, iid in side}
            deadline = time.monotonic() + 20
            events: dict[str, dict[str, Any]] = {}
            while time.monotonic() < deadline:
                events = {e["interaction_id"]: e for e in archived_events(state)
                          if e.get("kind") == "interaction" and e.get("interaction_id") in want}
                if len(events) == len(want):
                    break
                time.sleep(0.2)
        finally:
            if gw_proc is not None:
                gw_proc.stop()
            sim_proc.stop()
    result: dict[str, Any] = {"params": {"n": n, "warmup": warmup, "examples": examples, "k": k, "dim": 256},
                              "loadavg_1m_after": os.getloadavg()[0], "sides": {}}
    for side, samples in raw.items():
        evs = [events[iid] for _, iid in samples if iid in events]
        row: dict[str, Any] = {"latency": _summary([ms for ms, _ in samples]),
                               "overhead": _summary([e["overhead_ms"] for e in evs])}
        retr = [e["fewshot"]["retrieval_ms"] for e in evs if e.get("fewshot") and e["fewshot"]["retrieval_ms"]]
        if retr:
            row["retrieval"] = _summary(retr)
            row["examples_sent"] = sum(len(e["fewshot"]["ids"]) for e in evs) / len(evs)
        result["sides"][side] = row
    plain = result["sides"]["plain"]
    for row in result["sides"].values():
        row["added"] = {part: {q: row[part][q] - plain[part][q] for q in ("p50_ms", "p90_ms", "p99_ms")}
                        for part in ("latency", "overhead")}
    return result


def to_markdown(res: dict[str, Any]) -> str:
    p = res["params"]
    lines = [f"# Few-shot variant hot-path cost ({res.get('date', '')})", "",
             f"Concurrency 1, {p['n']} requests per side (+{p['warmup']} warm-up), interleaved; dynamic few-shot "
             f"retrieves k={p['k']} of {p['examples']} examples ({p['dim']}-dim embeddings through the simulator). "
             f"1-min load average after the run: {res.get('loadavg_1m_after', float('nan')):.1f} "
             "(a busy machine inflates every p99).",
             "", "| side | latency p50 | p90 | p99 | added p50 | gateway overhead p50 | p99 | retrieval p50 | p99 |",
             "|---|---|---|---|---|---|---|---|---|"]
    for side, r in res["sides"].items():
        lat, ov, add = r["latency"], r["overhead"], r["added"]["latency"]
        ret = r.get("retrieval")
        lines.append(f"| {side} | {lat['p50_ms']:.2f} ms | {lat['p90_ms']:.2f} | {lat['p99_ms']:.2f} | "
                     f"{add['p50_ms']:+.2f} ms | {ov['p50_ms']:.3f} ms | {ov['p99_ms']:.3f} | "
                     + (f"{ret['p50_ms']:.2f} ms | {ret['p99_ms']:.2f} |" if ret else "— | — |"))
    lines += ["", "latency: whole request seen by the client; overhead: the event's `overhead_ms` (gateway time "
              "outside upstream waits: routing, body rewrite, index search, event); retrieval: the event's "
              "`fewshot.retrieval_ms` (request embedding through the upstream + cosine top-k)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    a = ap.parse_args(argv)
    res = measure(a.n, a.warmup, a.examples, a.k)
    res["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
    a.out.mkdir(parents=True, exist_ok=True)
    base = a.out / f"variants-{res['date']}"
    base.with_suffix(".json").write_text(json.dumps(res, indent=2) + "\n")
    md = to_markdown(res)
    base.with_suffix(".md").write_text(md)
    sys.stdout.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
