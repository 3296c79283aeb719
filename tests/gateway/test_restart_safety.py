"""Restart safety against real processes: no restart, respawned worker or other replica ever
undoes a promotion, rollback or rollout step; live file edits keep the managed weights; an
edit that conflicts with them is refused and the running config stays."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from gateway import config_store as cs
from gateway.redis_store import RedisConfigStore
from tests.conftest import write_config
from tests.support import http
from tests.support.procs import Proc, abgate_cmd, free_port, poll_until, start_gateway

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("restart_safety")]

GUARDS = """
stage: online
control: control
treatment: treatment
guardrails:
  - {metric: error, direction: decrease}
"""
TREATMENT = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"


def _store(state: Path, redis_url: str | None) -> cs.ConfigStore:
    return RedisConfigStore.from_url(redis_url) if redis_url else cs.FileConfigStore(state)


def _traffic(v: cs.ConfigVersion) -> tuple[dict[str, float], int]:
    r = v.config.routes["support"]
    return {a.name: a.weight for a in r.arms}, r.phase


def _cli(*args: str) -> None:
    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 0, r.output


def _served_version(base: str) -> int:
    r = http.post(f"{base}/v1/chat/completions", timeout=10,
                   json={"model": "support", "messages": [{"role": "user", "content": "hi"}], "user": "u1"})
    assert r.status_code == 200, r.text
    return int(r.headers["x-abgate-config-version"])


@pytest.fixture
def gateways() -> Iterator[list[Proc]]:
    procs: list[Proc] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()


@pytest.fixture(params=["embedded", "redis"])
def mode(request: pytest.FixtureRequest) -> str | None:
    if request.param == "embedded":
        return None
    _, url = request.getfixturevalue("redis_server")
    return url


def test_promote_rollback_rollout_then_restart_with_the_original_file_changes_nothing(
        tmp_path: Path, simulator: str, mode: str | None, gateways: list[Proc]) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "router.yaml", simulator)
    extra = ("--redis", mode) if mode else ()
    cli_extra = ["--state-dir", str(state), *(["--redis", mode] if mode else [])]
    store = _store(state, mode)

    def restart() -> str:
        gateways[-1].stop(sig=signal.SIGTERM)
        proc, base = start_gateway(tmp_path, cfg, state, *extra)
        gateways.append(proc)
        return base

    proc, base = start_gateway(tmp_path, cfg, state, *extra)
    gateways.append(proc)
    # promote through the admin API
    r = http.post(f"{base}/admin/promote", json={"route": "support", "arm": "treatment", "weight": 0.8,
                                                   "decision_id": "dec-1", "author": "ann"}, timeout=10)
    assert r.status_code == 200, r.text
    promoted = store.current()
    assert promoted is not None and _traffic(promoted)[0] == pytest.approx({"control": 0.2, "treatment": 0.8})
    # roll back from the CLI while it runs
    _cli("rollback", "support", "--reason", "guardrail breached", *cli_extra)
    rolled = store.current()
    assert rolled is not None and _traffic(rolled)[0] == {"control": 1.0, "treatment": 0.0}
    # one rollout step (5%)
    crit = tmp_path / "guards.yaml"
    crit.write_text(GUARDS)
    _cli("rollout", "support", "--arm", "treatment", "--criteria", str(crit), "--steps", "5,50,100", "--interval",
         "1h", "--once", *cli_extra)
    stepped = store.current()
    assert stepped is not None and _traffic(stepped)[0] == pytest.approx({"control": 0.95, "treatment": 0.05})
    assert [v.action for v in store.history()] == ["seed", "promote", "rollback", "rollout_step"]
    poll_until(lambda: _served_version(base) == stepped.version, "the rollout step to be served")
    # restart with the original file: weights, phase and version unchanged, nothing written
    gateways[-1].stop(sig=signal.SIGTERM)
    proc, base = start_gateway(tmp_path, cfg, state, *extra)
    gateways.append(proc)
    assert store.current() == stepped and _traffic(store.current())[1] == _traffic(stepped)[1] == 4
    assert _served_version(base) == stepped.version
    assert "file unchanged since it was applied" in proc.output()
    hist = store.history()
    assert len(hist) == 4 and hist[1].author == "ann" and hist[1].decision_id == "dec-1"


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            continue
    return out


def _workers(pid: int) -> set[int]:
    """uvicorn's worker processes: the serve process's children that run the app (not the
    multiprocessing resource tracker)."""
    found = set()
    for child in _children(pid):
        try:
            cmd = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in cmd:
            found.add(child)
    return found


def test_a_worker_killed_minus_9_is_respawned_without_writing_config(
        tmp_path: Path, simulator: str, gateways: list[Proc]) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "router.yaml", simulator)
    proc, base = start_gateway(tmp_path, cfg, state, "--workers", "2")
    gateways.append(proc)
    assert proc.popen is not None
    poll_until(lambda: len(_workers(proc.popen.pid)) == 2 and proc.output().count("Application startup complete") >= 2,
          "two workers")
    r = http.post(f"{base}/admin/promote", json={"route": "support", "arm": "treatment", "weight": 1.0,
                                                   "decision_id": "dec-9"}, timeout=10)
    assert r.status_code == 200, r.text
    store = cs.FileConfigStore(state)
    promoted = store.current()
    assert promoted is not None and promoted.version == 2
    before = _workers(proc.popen.pid)
    victim = min(before)
    started = proc.output().count("Application startup complete")
    os.kill(victim, signal.SIGKILL)
    # uvicorn respawns it; its start-up is over once it reports "Application startup complete"
    poll_until(lambda: len(_workers(proc.popen.pid) - before) == 1
          and proc.output().count("Application startup complete") > started, "the respawned worker")
    assert store.latest_version() == 2 and store.current() == promoted
    for _ in range(10):  # whichever worker answers serves the promotion
        assert _served_version(base) == 2


def test_two_replicas_on_one_redis_restarting_one_keeps_the_others_change(
        tmp_path: Path, simulator: str, redis_server: tuple[Proc, str], gateways: list[Proc]) -> None:
    _, url = redis_server
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    file_a = write_config(tmp_path / "a" / "router.yaml", simulator)
    file_b = write_config(tmp_path / "b" / "router.yaml", simulator)
    a, base_a = start_gateway(tmp_path, file_a, tmp_path / "state-a", "--redis", url)
    b, base_b = start_gateway(tmp_path, file_b, tmp_path / "state-b", "--redis", url)
    gateways += [a, b]
    store = RedisConfigStore.from_url(url)
    assert store.latest_version() == 1  # B's identical file was not applied again
    r = http.post(f"{base_a}/admin/promote", json={"route": "support", "arm": "treatment", "weight": 0.8,
                                                     "decision_id": "dec-a"}, timeout=10)
    assert r.status_code == 200, r.text
    promoted = store.current()
    assert promoted is not None and promoted.version == 2
    poll_until(lambda: _served_version(base_b) == 2, "replica B to follow")
    # restart B with its own (unchanged) file: nothing is written
    b.stop(sig=signal.SIGTERM)
    b, base_b = start_gateway(tmp_path, file_b, tmp_path / "state-b", "--redis", url)
    gateways.append(b)
    assert store.current() == promoted and _served_version(base_b) == 2
    # edit B's file while it runs (a new treatment model): applied once, A's weights kept
    file_b.write_text(file_b.read_text().replace(f'"{TREATMENT}", weight', '"gpt-4o-mini-2024-07-18", weight'))
    poll_until(lambda: store.latest_version() == 3, "B to apply its edited file")
    cur = store.current()
    assert cur is not None and cur.action == "file"
    assert _traffic(cur)[0] == pytest.approx({"control": 0.2, "treatment": 0.8})
    assert cur.config.routes["support"].arms[1].model == "gpt-4o-mini-2024-07-18"
    poll_until(lambda: _served_version(base_a) == 3, "replica A to follow")
    assert store.latest_version() == 3  # A's own (unchanged) file is not written back
    store.close()


def test_live_file_edits_keep_managed_weights_and_conflicting_edits_are_refused(
        tmp_path: Path, simulator: str, gateways: list[Proc]) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "router.yaml", simulator)
    proc, base = start_gateway(tmp_path, cfg, state)
    gateways.append(proc)
    r = http.post(f"{base}/admin/promote", json={"route": "support", "arm": "treatment", "weight": 1.0,
                                                   "decision_id": "dec-5"}, timeout=10)
    assert r.status_code == 200
    store = cs.FileConfigStore(state)
    # a GitOps edit: new treatment model, and the file still says 50/50
    original = cfg.read_text()
    cfg.write_text(original.replace(f'"{TREATMENT}", weight', '"gpt-4o-mini-2024-07-18", weight'))
    poll_until(lambda: _served_version(base) == 3, "the edited file to be served")
    cur = store.current()
    assert cur is not None and cur.action == "file" and cur.author == "file-reload"
    assert _traffic(cur)[0] == {"control": 0.0, "treatment": 1.0}
    assert cur.config.routes["support"].arms[1].model == "gpt-4o-mini-2024-07-18"
    assert "kept managed traffic control=0, treatment=1" in cur.reason
    # an edit that removes the arm carrying all traffic is refused; version 3 keeps serving
    cfg.write_text(re.sub(r"      - \{name: treatment.*\n", "", original).replace("weight: 0.5}", "weight: 1.0}"))
    poll_until(lambda: "config_file_refused" in proc.output(), "the refusal")
    assert "routes.support.arms: removes arm 'treatment', which carries 100% of the route's traffic" in proc.output()
    assert store.latest_version() == 3 and _served_version(base) == 3
    # `serve` refuses to start with it (exit 1, nothing written) while the old one keeps serving
    refused = Proc(abgate_cmd("serve", "--config", str(cfg), "--port", str(free_port()), "--state-dir", str(state)),
                   log=tmp_path / "refused.log").start()
    gateways.append(refused)
    assert refused.popen is not None and refused.popen.wait(60) == 1
    assert "refused, nothing was written" in refused.output() and "--reset-traffic" in refused.output()
    assert store.latest_version() == 3
    # once the operator drains the arm, the running gateway applies the waiting edit
    _cli("rollback", "support", "--reason", "drain treatment", "--state-dir", str(state))
    poll_until(lambda: store.latest_version() == 5, "the drained edit to be applied")
    cur = store.current()
    assert cur is not None and [a.name for a in cur.config.routes["support"].arms] == ["control"]
    assert [v.action for v in store.history()][3:] == ["rollback", "file"]
