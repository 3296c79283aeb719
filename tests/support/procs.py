"""Start real server processes for tests on free loopback ports, and always stop them."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support import http

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


# Ports below the kernel's ephemeral range (32768-60999 by default): a port the OS hands out for
# `bind(0)` can be taken a moment later by an outgoing connection of another test, before the
# server that was meant to get it binds it. Each xdist worker draws from its own slice.
_PORTS_LO, _PORTS_HI = 20000, 32000
_rng = random.Random(os.getpid())


def free_port() -> int:
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    span = (_PORTS_HI - _PORTS_LO) // 4
    lo = _PORTS_LO + (worker % 4) * span
    for _ in range(200):
        port = _rng.randrange(lo, lo + span)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        fallback: int = s.getsockname()[1]
        return fallback


def _in_use(proc: Proc) -> bool:
    return not proc.alive() and "address already in use" in proc.output().lower()


def abgate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "abgate", *args]


@dataclass
class Proc:
    """A child process with its log file; `stop()` terminates it (SIGTERM, then SIGKILL)."""

    args: Sequence[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")
        self.popen = subprocess.Popen(
            list(self.args), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, **self.env},
            start_new_session=True,
        )
        out.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 10.0, sig: int | None = None) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            if sig is not None:
                self.popen.send_signal(sig)
            else:
                self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def poll_until(cond: Callable[[], bool], what: str, timeout: float = 60.0, interval: float = 0.05) -> None:
    """Poll `cond` until it holds; fail with `what` after `timeout` seconds (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def wait_http(url: str, proc: Proc | None = None, timeout: float = 60.0) -> None:
    """Poll `url` until it answers 2xx; fail early (with the log) if the process died."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.args} exited early:\n{proc.output()[-4000:]}")
        try:
            if http.get(url, timeout=1.0).status_code < 300:
                return
        except httpx.HTTPError as err:
            last = err
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last}):\n{proc.output()[-4000:] if proc else ''}")


def wait_port(port: int, proc: Proc | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and not proc.alive():
            raise RuntimeError(f"{proc.args} exited early:\n{proc.output()[-4000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"port {port} not open after {timeout}s")


def start_redis(tmp: Path, port: int | None = None) -> tuple[Proc, int]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run `make sysdeps` (make test does)")
    port = port or free_port()
    data = tmp / f"redis-{port}"
    data.mkdir(parents=True, exist_ok=True)
    proc = Proc(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "", "--appendonly", "yes",
         "--appendfsync", "always"],
        log=tmp / f"redis-{port}.log",
    ).start()
    wait_port(port, proc)
    return proc, port


def start_simulator(tmp: Path, *extra: str) -> tuple[Proc, str]:
    for attempt in range(3):
        port = free_port()
        proc = Proc([sys.executable, "-m", "simulator", "--host", "127.0.0.1", "--port", str(port), *extra],
                    log=tmp / f"simulator-{port}.log").start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/healthz", proc)
        except RuntimeError:
            if attempt < 2 and _in_use(proc):  # the port was taken meanwhile: another one
                continue
            raise
        return proc, base
    raise AssertionError("unreachable")


def start_gateway(tmp: Path, config: Path, state: Path, *extra: str, env: dict[str, str] | None = None
                  ) -> tuple[Proc, str]:
    for attempt in range(3):
        port = free_port()
        proc = Proc(
            abgate_cmd("serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                       "--state-dir", str(state), *extra),
            log=tmp / f"gateway-{port}.log",
            env=env or {},
        ).start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_http(f"{base}/readyz", proc)
        except RuntimeError:
            if attempt < 2 and _in_use(proc):  # the port was taken meanwhile: another one
                continue
            raise
        return proc, base
    raise AssertionError("unreachable")


async def apoll_until(cond: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 60.0,
                      interval: float = 0.05) -> None:
    """`poll_until` inside an event loop: `cond` may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = cond()
        if got if isinstance(got, bool) else await got:
            return
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
