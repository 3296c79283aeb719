"""SIGTERM while the state disk is full, on a real `abgate serve` whose state dir is a small
tmpfs filled to the last byte: every queued event survives (rescue spool on another file
system), the stop is reported unclean (exit 75), and the next start puts the events into
the archive."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.archive import archived_events
from tests.support.gateway_helpers import wait_events
from tests.support.procs import start_gateway, start_simulator

pytestmark = pytest.mark.integration

CONFIG = """
routes:
  support:
    experiment: diskfull-exp
    arms: [{{name: control, model: gpt-4o-mini-2024-07-18, weight: 1.0}}]
upstreams:
  sim: {{base_url: "{base}/v1", timeout_s: 10}}
default_upstream: sim
"""


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "state"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN): {r.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    # the last partial blocks too
    try:
        with open(filler, "ab") as f:
            while True:
                f.write(b"\0")
                f.flush()
    except OSError:
        pass
    return filler


def test_sigterm_with_the_state_disk_full_keeps_every_queued_event(tmp_path: Path, small_tmpfs: Path) -> None:
    sim, base = start_simulator(tmp_path)
    cfg = tmp_path / "router.yaml"
    cfg.write_text(CONFIG.format(base=base))
    env = {"ABGATE_RESCUE_DIR": str(tmp_path / "rescue")}
    state = small_tmpfs
    gw = None
    try:
        gw, gbase = start_gateway(tmp_path, cfg, state, env=env)
        with httpx.Client(base_url=gbase, timeout=10) as c:
            r = c.post("/v1/chat/completions", json={"model": "support", "user": "u1",
                                                    "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200
            iid = r.json()["id"]
            wait_events(state, lambda e: e.get("interaction_id") == iid)
            filler = _fill(state)
            for i in range(300):
                r = c.post("/v1/feedback", json={"interaction_id": iid, "metric": "csat", "value": 1 + i % 5,
                                                 "idempotency_key": f"k{i}"})
                assert r.status_code == 200 and r.json()["status"] == "recorded", r.text
            assert c.get("/readyz").status_code == 503  # the sink says it cannot write
        code = gw.stop(timeout=60)
        out = " ".join(gw.output().split())  # the console wraps long lines wherever the tmp path ends
        assert code == 75, out[-3000:]
        assert "rescue spool" in out and "300 queued" in out
        assert not [e for e in archived_events(state) if e["kind"] == "feedback"]

        os.unlink(filler)  # the operator frees the disk and starts again
        gw, gbase = start_gateway(tmp_path, cfg, state, env=env)
        fb = wait_events(state, lambda e: e["kind"] == "feedback", n=300)
        assert sorted(e["idempotency_key"] for e in fb) == sorted(f"k{i}" for i in range(300))
        assert not list((tmp_path / "rescue").glob("*.jsonl"))
        assert gw.stop(timeout=30) in (0, -signal.SIGTERM)  # a clean stop, as before
        assert "rescue spool" not in " ".join(gw.output().split("Application startup complete")[-1].split())
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()
