"""Run the real JS clients in tests/compat/node (openai Node SDK, GrowthBook JS SDK) with node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from tests.support.procs import ROOT

NODE_DIR = ROOT / "tests" / "compat" / "node"


def ensure_node_modules() -> Path:
    """The compat packages, installed from the lockfile (`make test` does it; this covers a bare pytest)."""
    if shutil.which("node") is None:
        raise RuntimeError("node is not installed (node 20 is required for the compatibility tests)")
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if not marker.exists() or marker.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
                       cwd=NODE_DIR, check=True, timeout=300)
    return NODE_DIR


def run_node(script: str, payload: object, env: dict[str, str] | None = None, timeout: float = 60.0) -> object:
    """Run `tests/compat/node/<script>` with `payload` as JSON on stdin; its stdout parsed as JSON."""
    ensure_node_modules()
    proc = subprocess.run(["node", script], cwd=NODE_DIR, input=json.dumps(payload).encode(), capture_output=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise RuntimeError(f"node {script} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-4000:]}")
    return json.loads(proc.stdout)
