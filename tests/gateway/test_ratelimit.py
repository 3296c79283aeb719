"""Per-key rate limits: one bucket across worker processes (embedded, a real
`abgate serve --workers 2`), and a hung Redis (SIGSTOP) that never stalls the request path."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing as mp
import signal
from pathlib import Path

import httpx
import pytest

from gateway.ratelimit import FileRateLimiter, SharedRateLimiter
from tests.support.procs import apoll_until, start_gateway, start_redis, start_simulator

pytestmark = pytest.mark.integration

KEY = "sk-client-ratelimit-test"


def _take(path: str, n: int, out: mp.Queue) -> None:  # type: ignore[type-arg]
    lim = FileRateLimiter(Path(path))
    out.put(sum(lim.check("k", 0.001, 30) is None for _ in range(n)))


def test_file_buckets_are_shared_by_processes(tmp_path: Path) -> None:
    q: mp.Queue = mp.get_context("fork").Queue()  # type: ignore[type-arg]
    procs = [mp.get_context("fork").Process(target=_take, args=(str(tmp_path / "rl.bin"), 25, q)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    admitted = sum(q.get(timeout=5) for _ in procs)
    assert admitted == 30  # 4 x 25 attempts, one burst of 30 between them


def test_changed_limits_start_a_fresh_bucket(tmp_path: Path) -> None:
    lim = FileRateLimiter(tmp_path / "rl.bin")
    assert [lim.check("k", 0.001, 2) is None for _ in range(3)] == [True, True, False]
    assert lim.check("k", 0.001, 5) is None  # new burst: a new bucket
    assert lim.check("other", 0.001, 1) is None and lim.check("other", 0.001, 1) is not None


def test_rate_limit_holds_across_workers(tmp_path: Path) -> None:
    sim, base = start_simulator(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(f"""
routes:
  support:
    experiment: rl-exp
    arms: [{{name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}}]
upstreams:
  sim: {{base_url: "{base}/v1", timeout_s: 10}}
default_upstream: sim
auth:
  keys:
    - {{sha256: "{hashlib.sha256(KEY.encode()).hexdigest()}", tenant: acme, rate_limit_rps: 0.001,
        rate_limit_burst: 20}}
""")
    gw = None
    try:
        gw, gbase = start_gateway(tmp_path, cfg, tmp_path / "state", "--workers", "2")
        codes = []
        for i in range(40):  # a new connection each time: both workers take turns
            with httpx.Client(base_url=gbase, timeout=10, headers={"authorization": f"Bearer {KEY}"}) as c:
                codes.append(c.post("/v1/chat/completions", json={
                    "model": "support", "user": f"u{i}", "messages": [{"role": "user", "content": "hi"}]}).status_code)
        assert codes.count(200) == 20 and codes.count(429) == 20, codes
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()


def test_hung_redis_does_not_stall_rate_limited_keys(tmp_path: Path) -> None:
    proc, port = start_redis(tmp_path)

    async def run() -> None:
        lim = SharedRateLimiter(f"redis://127.0.0.1:{port}/0", timeout_s=0.25)
        try:
            assert await lim.acheck("k", 1000.0, 1000) is None  # Redis answers
            proc.popen.send_signal(signal.SIGSTOP)  # hung: accepts, never answers
            assert await lim.acheck("k", 1000.0, 1000) is None  # falls back after one short wait
            assert lim.guard.failures == 1 and not lim.guard.up
            # long past the old 2 s retry window: the request path never waits on Redis again,
            # the background probe does (several PINGs while Redis hangs)
            async def served_while_probing() -> bool:
                assert await lim.acheck("k", 1000.0, 1000) is None
                return lim.guard.probes >= 4

            await apoll_until(served_while_probing, "four background probes")
            assert lim.guard.failures == 1
            proc.popen.send_signal(signal.SIGCONT)
            await apoll_until(lambda: lim.guard.up, "the guard to see Redis again")
            assert await lim.acheck("shared", 0.001, 1) is None
            assert await lim.acheck("shared", 0.001, 1) is not None  # the Redis bucket again
        finally:
            await lim.close()

    try:
        asyncio.run(run())
    finally:
        proc.popen.send_signal(signal.SIGCONT)
        proc.stop()
