"""Time to first token through a target, measured with a small async client (wrk cannot).

Sequential requests (concurrency 1) so the figure is the path's own delay, not queueing.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from bench.stats import percentile


def chat_body(model: str, user: int, *, stream: bool) -> bytes:
    return json.dumps({
        "model": model, "user": f"ttft-user-{user}", "stream": stream, "max_tokens": 64,
        "messages": [{"role": "system", "content": "You are a helpful support assistant."},
                     {"role": "user", "content": f"Where is my order #{user}? It was due yesterday."}],
    }).encode()


async def _measure(url: str, model: str, n: int, warmup: int) -> list[float]:
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(warmup + n):
            body = chat_body(model, i, stream=True)
            start = time.perf_counter()
            async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"{url} answered {resp.status}: {(await resp.read())[:500]!r}")
                first = b""
                while not first.strip():  # the first chunk that carries an SSE event
                    first = await resp.content.readany()
                    if not first:
                        raise RuntimeError(f"{url} closed the stream before the first event")
                elapsed = time.perf_counter() - start
                await resp.read()
            if i >= warmup:
                samples.append(elapsed * 1000.0)
    return samples


async def _one(session: aiohttp.ClientSession, url: str, body: bytes, *, stream: bool) -> float:
    """Milliseconds to the whole body (non-streaming) or to the first SSE event (streaming)."""
    start = time.perf_counter()
    async with session.post(url, data=body, headers={"content-type": "application/json"}) as resp:
        if resp.status != 200:
            raise RuntimeError(f"{url} answered {resp.status}: {(await resp.read())[:500]!r}")
        if stream:
            first = b""
            while not first.strip():
                first = await resp.content.readany()
                if not first:
                    raise RuntimeError(f"{url} closed the stream before the first event")
            elapsed = time.perf_counter() - start
            await resp.read()
        else:
            await resp.read()
            elapsed = time.perf_counter() - start
    return elapsed * 1000.0


def summarize(samples: list[float]) -> dict[str, float]:
    return {"n": float(len(samples)), "mean_ms": sum(samples) / len(samples), "p50_ms": percentile(samples, 50),
            "p90_ms": percentile(samples, 90), "p99_ms": percentile(samples, 99)}


async def _paired(direct: tuple[str, str], target: tuple[str, str], n: int, warmup: int
                  ) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {m: {"direct": [], "target": []} for m in ("json", "stream")}
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) for _ in range(2)]
    try:
        for i in range(warmup + n):
            for mode in ("json", "stream"):
                # Alternate which side goes first so neither always meets a warmer cache.
                order = [("direct", direct, sessions[0]), ("target", target, sessions[1])]
                for side, (url, model), session in (order if i % 2 == 0 else order[::-1]):
                    ms = await _one(session, url, chat_body(model, i, stream=mode == "stream"), stream=mode == "stream")
                    if i >= warmup:
                        out[mode][side].append(ms)
    finally:
        for s in sessions:
            await s.close()
    return out


def measure_paired(direct: tuple[str, str], target: tuple[str, str], n: int = 300, warmup: int = 20
                   ) -> dict[str, dict[str, dict[str, float]]]:
    """Concurrency-1 latency (whole response) and TTFT, request by request interleaved between
    the simulator and the target, so machine noise hits both sides alike. (url, model) pairs.
    Returns {json|stream: {direct|target|added: {p50_ms, p90_ms, p99_ms, ...}}}; `requests` counts
    what the target received."""
    raw = asyncio.run(_paired(direct, target, n, warmup))
    result: dict[str, dict[str, dict[str, float]]] = {}
    for mode, sides in raw.items():
        d, t = summarize(sides["direct"]), summarize(sides["target"])
        added = {k: t[k] - d[k] for k in ("mean_ms", "p50_ms", "p90_ms", "p99_ms")}
        result[mode] = {"direct": d, "target": t, "added": added}
    result["requests"] = {"target": {"n": float(2 * (n + warmup))}}
    return result


def measure(url: str, model: str, n: int = 300, warmup: int = 20) -> dict[str, float]:
    """p50/p90/p99/mean TTFT in milliseconds over `n` sequential streaming requests."""
    samples = asyncio.run(_measure(url, model, n, warmup))
    return {
        "n": float(len(samples)),
        "requests": float(n + warmup),
        "mean_ms": sum(samples) / len(samples),
        "p50_ms": percentile(samples, 50),
        "p90_ms": percentile(samples, 90),
        "p99_ms": percentile(samples, 99),
    }
