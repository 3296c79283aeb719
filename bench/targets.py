"""Start and stop each benchmarked configuration on loopback; one `Target` per configuration.

The server under test is pinned to its own CPU when there are two or more, and everything else
(simulator, wrk, redis, archiver, the harness) to the others, so "per worker process" numbers
are not muddied by the load generator stealing the same core.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.archive_count import count_archive
from tests.support.procs import Proc, free_port, wait_http, wait_port

BASE_MODEL = "gpt-4o-mini-2024-07-18"
FT_MODEL = "ft:gpt-4o-mini-2024-07-18:acme:bench:b1"
ROUTE = "bench"


@dataclass(frozen=True)
class Pinning:
    sut: str | None = None  # CPU list for the server under test
    helpers: str | None = None  # CPU list for everything else

    @classmethod
    def detect(cls, enabled: bool = True) -> Pinning:
        cpus = sorted(os.sched_getaffinity(0))
        if not enabled or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls()
        return cls(sut=str(cpus[0]), helpers=",".join(map(str, cpus[1:])))

    def prefix(self, role: str) -> list[str]:
        cpus = self.sut if role == "sut" else self.helpers
        return ["taskset", "-c", cpus] if cpus else []

    def describe(self) -> str:
        return f"server under test on CPU {self.sut}, load + upstream on CPU {self.helpers}" if self.sut else "none"

    def pin_self(self) -> None:
        """Move the harness (and so every child it starts without a prefix) onto the helper CPUs."""
        if self.helpers:
            os.sched_setaffinity(0, {int(c) for c in self.helpers.split(",")})


@dataclass
class Target:
    name: str
    label: str
    base_url: str
    model: str
    pid: int  # root of the process tree whose CPU and memory are measured
    gateway: bool = False
    state_dir: Path | None = None
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/v1/chat/completions"


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


@contextmanager
def simulator(work: Path, pin: Pinning, *extra: str) -> Iterator[tuple[Proc, str]]:
    port = free_port()
    proc = Proc([*pin.prefix("helpers"), *py("-m", "simulator", "--host", "127.0.0.1", "--port", str(port), *extra)],
                log=work / "simulator.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc)
        yield proc, base
    finally:
        proc.stop()


def gateway_config(path: Path, upstream_base: str) -> Path:
    """Two arms 50/50 by user: routing, cost, content capture and events all exercised per request."""
    path.write_text(f"""
routes:
  {ROUTE}:
    experiment: bench-exp
    hash_attribute: user
    arms:
      - {{name: control, model: {BASE_MODEL}, weight: 0.5}}
      - {{name: treatment, model: "{FT_MODEL}", weight: 0.5}}
upstreams:
  sim: {{base_url: "{upstream_base}/v1", timeout_s: 30}}
models:
  {BASE_MODEL}: {{upstream: sim, input_per_mtok: 0.15, output_per_mtok: 0.60}}
  "{FT_MODEL}": {{upstream: sim, input_per_mtok: 0.30, output_per_mtok: 1.20}}
""")
    return path


@contextmanager
def direct(work: Path, pin: Pinning, sim: tuple[Proc, str]) -> Iterator[Target]:
    proc, base = sim
    assert proc.popen is not None
    yield Target("direct", "wrk straight to the simulator", base, BASE_MODEL, proc.popen.pid)


@contextmanager
def passthrough(work: Path, pin: Pinning, sim: tuple[Proc, str]) -> Iterator[Target]:
    port = free_port()
    proc = Proc([*pin.prefix("sut"), *py("-m", "bench.passthrough", "--upstream", sim[1], "--port", str(port))],
                log=work / "passthrough.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz", proc)
        assert proc.popen is not None
        yield Target("passthrough", "bare forwarder on the same stack (raw ASGI chat route before Litestar, uvicorn/uvloop/httptools, aiohttp)",
                     base, BASE_MODEL, proc.popen.pid)
    finally:
        proc.stop()


def serve(work: Path, pin: Pinning, config: Path, state: Path, name: str, *extra: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc([*pin.prefix("sut"), *py("-m", "abgate", "serve", "--config", str(config), "--host", "127.0.0.1",
                                         "--port", str(port), "--state-dir", str(state), *extra)],
                log=work / f"{name}.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/readyz", proc, timeout=30)
    return proc, base


@contextmanager
def abgate_embedded(work: Path, pin: Pinning, sim: tuple[Proc, str]) -> Iterator[Target]:
    state = work / "state-embedded"
    config = gateway_config(work / "abgate-embedded.yaml", sim[1])
    proc, base = serve(work, pin, config, state, "abgate-embedded")
    try:
        assert proc.popen is not None
        yield Target("abgate", "abgate serve, embedded (routing + events + feedback + metrics)", base, ROUTE,
                     proc.popen.pid, gateway=True, state_dir=state)
    finally:
        proc.stop(timeout=30)  # SIGTERM: the sink flushes every queued event before exit


def _redis_drained(redis_url: str) -> bool:
    import redis

    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    try:
        groups = client.xinfo_groups("abgate:events")
    except redis.RedisError:
        return False
    finally:
        client.close()
    return bool(groups) and all(g.get("pending", 1) == 0 and (g.get("lag") or 0) == 0 for g in groups)


def wait_archive_stable(state: Path, redis_url: str | None, timeout_s: float = 60.0) -> None:
    """Wait until the archiver caught up: stream fully acknowledged and the archive stopped growing."""
    deadline = time.monotonic() + timeout_s
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = sum(count_archive(state).kinds.values())
        if n != last:
            last, stable_since = n, time.monotonic()
        drained = redis_url is None or _redis_drained(redis_url)
        if drained and time.monotonic() - stable_since >= 1.0:
            return
        time.sleep(0.25)


def start_redis(work: Path, pin: Pinning, port: int) -> Proc:
    """redis-server on `port` with its data in `work/redis` (a restart on the same port keeps the data)."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run `make sysdeps`")
    (work / "redis").mkdir(parents=True, exist_ok=True)
    # Production-like durability: AOF, fsync every second (a clean shutdown writes everything).
    proc = Proc([*pin.prefix("helpers"), exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(work / "redis"),
                 "--save", "", "--appendonly", "yes", "--appendfsync", "everysec"],
                log=work / "redis.log").start()
    wait_port(port, proc)
    return proc


@contextmanager
def abgate_redis(work: Path, pin: Pinning, sim: tuple[Proc, str]) -> Iterator[Target]:
    state = work / "state-redis"
    rport = free_port()
    redis_proc = start_redis(work, pin, rport)
    procs = [redis_proc]
    try:
        url = f"redis://127.0.0.1:{rport}/0"
        archiver = Proc([*pin.prefix("helpers"), *py("-m", "abgate", "archive", "--redis", url, "--state-dir",
                                                       str(state))], log=work / "archiver.log").start()
        procs.append(archiver)
        config = gateway_config(work / "abgate-redis.yaml", sim[1])
        gw, base = serve(work, pin, config, state, "abgate-redis", "--redis", url)
        procs.append(gw)
        assert gw.popen is not None
        target = Target("abgate-redis", "abgate serve, Redis mode (XADD + `abgate archive` consumer)", base, ROUTE,
                        gw.popen.pid, gateway=True, state_dir=state)
        try:
            yield target
        finally:
            gw.stop(timeout=30)
            if archiver.alive():
                wait_archive_stable(state, url)
            else:
                target.notes["archiver"] = f"archiver exited early:\n{archiver.output()[-2000:]}"
    finally:
        for p in reversed(procs):
            p.stop(timeout=30)


def litellm_available() -> str | None:
    """None when LiteLLM's proxy can run here, else why not."""
    if importlib.util.find_spec("litellm") is None:
        return "litellm is not installed (pip install 'litellm[proxy]' to include it)"
    if shutil.which("litellm") is None and not (Path(sys.executable).parent / "litellm").exists():
        return "the litellm proxy CLI is not installed (pip install 'litellm[proxy]')"
    return None


@contextmanager
def litellm(work: Path, pin: Pinning, sim: tuple[Proc, str]) -> Iterator[Target]:
    port = free_port()
    cfg = work / "litellm.yaml"
    cfg.write_text(f"""
model_list:
  - model_name: {ROUTE}
    litellm_params: {{model: "openai/{BASE_MODEL}", api_base: "{sim[1]}/v1", api_key: "sk-bench"}}
litellm_settings: {{drop_params: true}}
""")
    exe = shutil.which("litellm") or str(Path(sys.executable).parent / "litellm")
    proc = Proc([*pin.prefix("sut"), exe, "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                 "--num_workers", "1"], log=work / "litellm.log").start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/health/liveliness", proc, timeout=90)
        assert proc.popen is not None
        yield Target("litellm", "LiteLLM proxy, 1 worker, same upstream", base, ROUTE, proc.popen.pid)
    finally:
        proc.stop()
