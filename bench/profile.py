"""Profile a server under load with py-spy and say what dominates the per-request cost.

    python -m bench.profile [--target abgate|abgate-redis|passthrough] [--seconds 10] [--connections 32]

Starts the simulator and the target (pinned like `bench.run`), drives it with wrk, records with
`py-spy record` (raw collapsed stacks + an SVG flame graph) and prints the functions and packages
with the largest self and inclusive share of samples. Files go to bench/results/profile-<target>.*
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench import targets
from bench.wrk import WrkRun

RESULTS = Path(__file__).resolve().parent / "results"
console = Console(stderr=True)


@dataclass
class Profile:
    samples: int
    self_by_func: Counter[str]
    incl_by_func: Counter[str]
    self_by_package: Counter[str]
    incl_by_package: Counter[str]

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, 100.0 * v / self.samples) for k, v in counter.most_common(n)] if self.samples else []


def package_of(frame: str) -> str:
    """'func (aiohttp/client.py:878)' -> 'aiohttp'; '<frozen runpy>' and bare files -> their stem."""
    start = frame.rfind(" (")
    where = frame[start + 2:-1] if start >= 0 else frame
    path = where.rsplit(":", 1)[0]
    if path.startswith("<"):
        return path
    parts = [p for p in path.split("/") if p]
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif any(p.startswith("python3") for p in parts):  # /usr/lib/python3.11/asyncio/x.py
        parts = parts[[i for i, p in enumerate(parts) if p.startswith("python3")][-1] + 1:]
    if not parts:
        return path
    return parts[0].removesuffix(".py") if len(parts) > 1 or parts[0].endswith(".py") else parts[0]


def function_of(frame: str) -> str:
    """Drop the line number so one function's samples add up: 'f (a/b.py:12)' -> 'f (a/b.py)'."""
    start = frame.rfind(" (")
    if start < 0:
        return frame
    return frame[:start] + " (" + frame[start + 2:-1].rsplit(":", 1)[0] + ")"


# Leaves where a thread is parked, not working: thread-pool workers waiting for a job. py-spy's
# idle detection misses these, and they would otherwise swamp the event loop's real work.
IDLE_LEAVES = ("_worker (concurrent/futures/thread.py)", "Condition.wait (threading.py)",
               "Event.wait (threading.py)", "Thread._wait_for_tstate_lock (threading.py)")


def aggregate(lines: Iterable[str]) -> Profile:
    """Collapsed stacks ('a;b;c 12' per line, root first) -> self / inclusive shares (idle excluded)."""
    p = Profile(0, Counter(), Counter(), Counter(), Counter())
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            continue
        stack, _, count_s = line.rpartition(" ")
        try:
            count = int(count_s)
        except ValueError:
            continue
        frames = [f for f in stack.split(";") if f]
        if not frames or function_of(frames[-1]) in IDLE_LEAVES:
            continue
        p.samples += count
        leaf = frames[-1]
        p.self_by_func[function_of(leaf)] += count
        p.self_by_package[package_of(leaf)] += count
        for f in {function_of(f) for f in frames}:
            p.incl_by_func[f] += count
        for pkg in {package_of(f) for f in frames}:
            p.incl_by_package[pkg] += count
    return p


def markdown(profile: Profile, title: str, n: int = 25) -> str:
    out = [f"# {title}", "", f"{profile.samples} samples.", ""]
    for name, counter in (("Self time by package", profile.self_by_package),
                          ("Self time by function", profile.self_by_func),
                          ("Inclusive time by function", profile.incl_by_func)):
        out += [f"## {name}", "", "| % samples | where |", "|---:|---|"]
        out += [f"| {pct:.1f} | `{k}` |" for k, pct in profile.top(counter, n)]
        out.append("")
    return "\n".join(out)


def pyspy() -> str:
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(exe).exists():
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return exe


def record(pid: int, seconds: int, out_raw: Path, out_svg: Path) -> None:
    for fmt, out in (("raw", out_raw), ("flamegraph", out_svg)):
        done = subprocess.run([pyspy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250",
                               "--format", fmt, "--output", str(out), "--subprocesses"],
                              capture_output=True, text=True, timeout=seconds + 60)
        if done.returncode != 0:
            raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    p.add_argument("--target", default="abgate", choices=["abgate", "abgate-redis", "passthrough"])
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--stream", action="store_true", help="profile streaming requests")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    starters = {"abgate": targets.abgate_embedded, "abgate-redis": targets.abgate_redis,
                "passthrough": targets.passthrough}
    pin = targets.Pinning.detect()
    pin.pin_self()
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"profile-{args.target}" + ("-stream" if args.stream else "")
    raw, svg = args.out / f"{stem}.txt", args.out / f"{stem}.svg"
    work = Path(tempfile.mkdtemp(prefix="abgate-profile-"))
    try:
        with targets.simulator(work, pin) as sim, starters[args.target](work, pin, sim) as target:
            WrkRun(target.chat_url, "chat.lua", 8, 1, (target.model, "0"), taskset=pin.helpers).run()  # warm-up
            # Load for both recordings (raw, then SVG) plus slack; wrk outlives py-spy.
            load = subprocess.Popen(WrkRun(target.chat_url, "chat.lua", args.connections, 2 * args.seconds + 6,
                                           (target.model, "1" if args.stream else "0"),
                                           taskset=pin.helpers).command(),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                record(target.pid, args.seconds, raw, svg)
            finally:
                load.kill()
                load.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    profile = aggregate(raw.read_text().splitlines())
    title = f"py-spy profile: {args.target}, {args.connections} connections, " \
            f"{'streaming' if args.stream else 'non-streaming'}"
    (args.out / f"{stem}.md").write_text(markdown(profile, title) + "\n")
    for name, counter in (("self by package", profile.self_by_package), ("self by function", profile.self_by_func),
                          ("inclusive by function", profile.incl_by_func)):
        table = Table(title=f"{title} — {name}")
        table.add_column("% samples", justify="right")
        table.add_column("where")
        for k, pct in profile.top(counter, 20):
            table.add_row(f"{pct:.1f}", k)
        console.print(table)
    console.print(f"wrote {raw}, {svg} and {args.out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
