"""Run wrk with the harness's Lua scripts and parse the JSON summary they print."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

SCRIPTS = Path(__file__).resolve().parent / "wrk"
MARKER = "WRKJSON "


class WrkErrors(msgspec.Struct, frozen=True):
    connect: int = 0
    read: int = 0
    write: int = 0
    status: int = 0
    timeout: int = 0


class WrkLatency(msgspec.Struct, frozen=True):
    mean: float
    max: int
    p50: int
    p90: int
    p99: int
    p999: int


class WrkResult(msgspec.Struct, frozen=True):
    requests: int
    duration_us: int
    bytes: int
    errors: WrkErrors
    latency_us: WrkLatency
    statuses: dict[str, int] = {}

    @property
    def rps(self) -> float:
        return self.requests / (self.duration_us / 1e6) if self.duration_us else 0.0


class WrkError(RuntimeError):
    pass


def parse_output(stdout: str) -> WrkResult:
    """The summary line printed by the scripts' done(); a clear error when wrk printed none."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            return msgspec.json.decode(line[len(MARKER):], type=WrkResult)
    raise WrkError(f"wrk printed no summary line; output was:\n{stdout[-2000:]}")


def wrk_binary() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkError("wrk is not installed: run `make sysdeps` (apt package wrk)")
    return exe


@dataclass(frozen=True)
class WrkRun:
    url: str
    script: str
    connections: int
    duration_s: float  # wrk takes whole seconds
    args: tuple[str, ...] = ()
    threads: int = 1
    timeout_s: int = 10
    taskset: str | None = None  # CPU list to pin wrk to, e.g. "1"
    extra_env: dict[str, str] = field(default_factory=dict)

    def command(self) -> list[str]:
        cmd = [wrk_binary(), f"-t{min(self.threads, self.connections)}", f"-c{self.connections}",
               f"-d{max(1, round(self.duration_s))}s", f"--timeout={self.timeout_s}s", "-s", str(SCRIPTS / self.script), self.url]
        if self.args:
            cmd += ["--", *self.args]
        return ["taskset", "-c", self.taskset, *cmd] if self.taskset else cmd

    def run(self) -> WrkResult:
        done = subprocess.run(self.command(), capture_output=True, text=True, timeout=self.duration_s + 60)
        if done.returncode != 0:
            raise WrkError(f"wrk exited {done.returncode}: {(done.stderr or done.stdout).strip()[-2000:]}")
        return parse_output(done.stdout)
