"""Run an example's script in-process: its `main(argv)`, as `python examples/<x>/<name> ARGS` would,
with stdout and stderr captured (interpreter start-up is most of a subprocess run)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import subprocess
from pathlib import Path


def run_script(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = mod.main(list(args))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
    return subprocess.CompletedProcess([str(path), *args], code or 0, out.getvalue(), err.getvalue())
