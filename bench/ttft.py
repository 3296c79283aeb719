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
