"""CLI start-up time (issue 15): `abgate --help` and `abgate config validate FILE`, wall clock per run.

Each command runs `runs` times as a fresh process (the console script operators use); the report
keeps the minimum (the machine's floor, robust to other load) and the median. Also lists which
heavy libraries the command imported, so a regression names its cause.

    python -m bench.startup [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3
HEAVY = ("duckdb", "numpy", "scipy", "sklearn", "openai", "litestar", "aiohttp", "redis", "datasketch",
         "uvicorn", "httpx", "evaluation", "training")

_CONFIG = """routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: gpt-4o-mini-2024-07-18, weight: 0.5}
      - {name: treatment, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: 0.5}
upstreams:
  openai: {base_url: "https://api.openai.com/v1", api_key_env: OPENAI_API_KEY}
"""

# Runs the CLI in-process and prints the top-level packages it imported (for `heavy_imports`).
_PROBE = """import sys, json
from abgate.cli.main import main
sys.argv = ["abgate", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
sys.__stderr__.write("\\nMODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})) + "\\n")
"""


def abgate_exe() -> list[str]:
    exe = Path(sys.executable).parent / "abgate"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "abgate"]


def heavy_imports(args: list[str]) -> list[str]:
    """The heavy packages `abgate ARGS` imports (empty is the goal for --help and config validate)."""
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    line = next((ln for ln in proc.stderr.splitlines() if ln.startswith("MODULES ")), None)
    if line is None:
        raise RuntimeError(f"probe failed for {args}: {proc.stderr[-2000:]}")
    mods = set(json.loads(line[len("MODULES "):]))
    return [h for h in HEAVY if h in mods]


def time_command(args: list[str], runs: int) -> dict[str, Any]:
    cmd = abgate_exe() + args
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, cwd=ROOT, timeout=120)
        times.append(time.perf_counter() - t0)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode()[-2000:]}")
    return {"command": "abgate " + " ".join(a if not a.endswith(".yaml") else "FILE" for a in args),
            "runs": runs, "min_s": min(times), "median_s": statistics.median(times),
            "heavy_imports": heavy_imports(args)}


def run(runs: int = 7) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "router.yaml"
        cfg.write_text(_CONFIG)
        rows = [time_command(["--help"], runs), time_command(["config", "validate", str(cfg)], runs)]
    return {"target_s": TARGET_S, "commands": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args(argv)
    res = run(args.runs)
    for row in res["commands"]:
        print(f"{row['command']:<32} min {row['min_s']:.3f} s  median {row['median_s']:.3f} s  "
              f"heavy imports: {', '.join(row['heavy_imports']) or 'none'}")
    return 0 if all(r["min_s"] < TARGET_S for r in res["commands"]) else 1


if __name__ == "__main__":
    sys.exit(main())
