"""Traffic generator end to end: simulator upstream + real gateway process + simulated users with feedback."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.traffic import run
from tests.conftest import write_config
from tests.support.procs import ROOT, start_gateway, start_simulator

pytestmark = pytest.mark.integration


def test_traffic_splits_arms_and_feedback_reaches_the_archive(tmp_path: Path) -> None:
    sim, sim_base = start_simulator(tmp_path)
    gw = None
    try:
        cfg = write_config(tmp_path / "router.yaml", sim_base)
        gw, gw_base = start_gateway(tmp_path, cfg, tmp_path / "state")
        summary = asyncio.run(run(gw_base, "support", users=60, requests=240, seed=11, concurrency=6,
                                  stream_share=0.25))
        assert summary.requests == summary.ok == 240 and summary.errors == 0, summary.first_error
        assert set(summary.arms) == {"control", "treatment"}
        control, treatment = summary.arms["control"], summary.arms["treatment"]
        assert control.models == {"gpt-4o-mini-2024-07-18"}
        assert treatment.models == {"ft:gpt-4o-mini-2024-07-18:acme:support:abc123"}
        assert 60 <= treatment.requests <= 180  # 50/50 by user; 60 users is a coarse split
        assert treatment.mean_quality > control.mean_quality + 0.1
        assert summary.feedback_errors == 0 and summary.feedback_sent > 240

        again = asyncio.run(run(gw_base, "support", users=60, requests=240, seed=11, concurrency=3,
                                send_feedback=False))
        assert {a: s.requests for a, s in again.arms.items()} == {a: s.requests for a, s in summary.arms.items()}

        cli = subprocess.run([sys.executable, "-m", "simulator.traffic", "--gateway", gw_base, "--route", "support",
                              "--users", "5", "--requests", "10", "--seed", "3", "--no-feedback", "--json"],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["ok"] == 10
    finally:
        if gw is not None:
            gw.stop()
        sim.stop()

    events = [json.loads(line) for f in (tmp_path / "state" / "events").rglob("*.jsonl")
              for line in f.read_text().splitlines() if line.strip()]
    feedback = [e for e in events if e["kind"] == "feedback"]
    assert len(feedback) == summary.feedback_sent
    by_arm: dict[str, list[int]] = {"control": [], "treatment": []}
    for e in feedback:
        if e["metric"] == "thumbs":
            by_arm[e["arm"]].append(1 if e["value"] == 1 else 0)
    up = {a: sum(v) / len(v) for a, v in by_arm.items()}
    assert up["treatment"] > up["control"]
