"""Promote, roll back and ramp a route's arms through the versioned config store.

Every change is a new config version made by `gateway.config_edits` (the store bumps
the route's phase when weights change; the route's traffic becomes managed, so a restart
with the original config file keeps it) and a `config` audit event in the archive. A rollout walks weight steps
(Argo Rollouts / Flagger style): set a step, wait the interval, check the guardrails on
the current phase, advance or roll back. Its state lives in
`<state>/rollouts/<route>.json`, so a restarted (or cron-driven, `--once`) rollout resumes.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import msgspec

from evaluation import criteria as critmod
from evaluation import decisions, gate
from gateway import config_edits as edits
from gateway import config_store as cs


class RolloutError(RuntimeError):
    """A promote/rollback/rollout that cannot be done; the message says why."""


# --------------------------------------------------------------------------------------
# Weights: every change goes through gateway.config_edits (one promote rule, one validation,
# CAS, the audit event in the archive); these wrappers turn its errors into RolloutError.


def _editor(store: cs.ConfigStore, state_dir: Path) -> edits.ConfigEditor:
    return edits.ConfigEditor(store, audit=edits.archive_audit(state_dir))


def _current(store: cs.ConfigStore, route: str) -> cs.ConfigVersion:
    cur = store.current()
    if cur is None:
        raise RolloutError("the config store is empty; set a config first (abgate config set)")
    if route not in cur.config.routes:
        raise RolloutError(f"unknown route {route!r}; routes: {', '.join(cur.config.routes) or 'none'}")
    return cur


def set_arm_weight(
    store: cs.ConfigStore, state_dir: Path, route: str, arm: str, weight: float, *, author: str, reason: str,
    decision_id: str | None, action: str,
) -> cs.ConfigVersion:
    try:
        return _editor(store, state_dir).move_traffic(route, arm, weight, action=action,
                                                      change=edits.Change(author, reason, decision_id))
    except edits.EditError as e:
        raise RolloutError(e.message) from None


def promote(
    store: cs.ConfigStore, state_dir: Path, route: str, arm: str, *, weight: float = 1.0, decision_id: str,
    author: str, reason: str | None = None,
) -> cs.ConfigVersion:
    """Give `arm` `weight` of the route's traffic, citing the decision that allowed it."""
    if not decision_id:
        raise RolloutError("promote needs --decision: cite the gate decision that allows it")
    try:
        return _editor(store, state_dir).promote(route, arm, weight,
                                                 change=edits.Change(author, reason or "", decision_id))
    except edits.EditError as e:
        raise RolloutError(e.message) from None


def rollback(
    store: cs.ConfigStore, state_dir: Path, route: str, *, to_version: int | None = None, author: str,
    reason: str | None = None, decision_id: str | None = None,
) -> cs.ConfigVersion:
    """All traffic back to control (arms[0]), or re-apply config version `to_version`."""
    _current(store, route)
    change = edits.Change(author, reason or "", decision_id)
    ed = _editor(store, state_dir)
    try:
        if to_version is not None:
            return ed.rollback_to(to_version, change=change)
        return ed.rollback_route(route, change=change)
    except edits.EditError as e:
        raise RolloutError(e.message) from None


# --------------------------------------------------------------------------------------
# Rollout


class StepRecord(msgspec.Struct):
    at: str
    action: Literal["set_weight", "check", "rollback", "complete", "wait", "hold"]
    weight: float | None = None
    config_version: int | None = None
    phase: int | None = None
    decision_id: str | None = None
    verdict: str | None = None
    note: str = ""


class RolloutState(msgspec.Struct):
    route: str
    arm: str
    steps: list[float]  # fractions 0..1
    interval_s: float
    criteria_path: str
    status: Literal["running", "completed", "rolled_back"] = "running"
    index: int = -1  # index of the step currently applied; -1 = not started
    last_change_at: float | None = None  # epoch seconds of the last weight change
    history: list[StepRecord] = []


def parse_interval(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        raise RolloutError(f"invalid interval {text!r}; use e.g. 30s, 10m, 1h, 2d")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]


def parse_steps(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise RolloutError(f"invalid steps {text!r}; use percentages like 5,25,50,100") from None
    if not vals or any(not 0 < v <= 100 for v in vals) or vals != sorted(vals) or len(set(vals)) != len(vals):
        raise RolloutError(f"steps must be increasing percentages in (0, 100], got {text!r}")
    return [v / 100.0 for v in vals]


def state_path(state_dir: Path, route: str) -> Path:
    return state_dir / "rollouts" / f"{route}.json"


def load_state(state_dir: Path, route: str) -> RolloutState | None:
    p = state_path(state_dir, route)
    return msgspec.json.decode(p.read_bytes(), type=RolloutState) if p.exists() else None


def save_state(state_dir: Path, st: RolloutState) -> None:
    p = state_path(state_dir, st.route)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(msgspec.to_builtins(st), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, p)


def start(
    state_dir: Path, route: str, arm: str, steps: list[float], interval_s: float, criteria_path: Path,
) -> RolloutState:
    """Create the rollout state (or return the running one if it is the same rollout)."""
    existing = load_state(state_dir, route)
    if existing is not None and existing.status == "running":
        if existing.arm != arm or existing.steps != steps:
            raise RolloutError(
                f"a different rollout of {route!r} is running (arm {existing.arm}, steps {existing.steps}); "
                f"finish it or delete {state_path(state_dir, route)}"
            )
        return existing
    critmod.load(criteria_path)  # fail early on a bad criteria file
    st = RolloutState(route=route, arm=arm, steps=steps, interval_s=interval_s,
                      criteria_path=str(Path(criteria_path).resolve()))
    save_state(state_dir, st)
    return st


def _now_iso(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def step(
    state_dir: Path, store: cs.ConfigStore, route: str, *, author: str, now: float | None = None,
) -> RolloutState:
    """Advance the rollout by at most one action and persist it:
    not started -> first weight; interval not over -> wait; else check the guardrails on
    the current phase: worse -> rollback (+ decision record); untrustworthy/no data -> hold
    at this step; ok -> next weight, or completed after the last one."""
    st = load_state(state_dir, route)
    if st is None:
        raise RolloutError(f"no rollout for route {route!r}; start one with abgate rollout")
    if st.status != "running":
        return st
    now = time.time() if now is None else now
    if st.index < 0:
        return _apply_step(state_dir, store, st, 0, author, now)
    assert st.last_change_at is not None
    if now - st.last_change_at < st.interval_s:
        st.history.append(StepRecord(at=_now_iso(now), action="wait",
                                     note=f"{st.interval_s - (now - st.last_change_at):.0f}s left at this step"))
        save_state(state_dir, st)
        return st
    if st.steps[st.index] >= 1.0:
        # All traffic on the arm: no control left to compare with; the previous step's check
        # already passed, so the rollout is done once this interval is over.
        st.status = "completed"
        st.history.append(StepRecord(at=_now_iso(now), action="complete", weight=1.0, note="100% reached"))
        save_state(state_dir, st)
        return st
    crit, sha = critmod.load(Path(st.criteria_path))
    cur = _current(store, route)
    r = cur.config.routes[route]
    crit = msgspec.structs.replace(crit, experiment=crit.experiment or r.experiment, route=route,
                                   treatment=st.arm, control=r.arms[0].name, phase=None)
    d = gate.decide_online(crit, state_dir, store=store, criteria_path=st.criteria_path, criteria_sha256=sha,
                           decided_by=author, guardrails_only=True, phase=r.phase)
    d.extra = {**d.extra, "rollout_step": st.index, "rollout_weight": st.steps[st.index]}
    decisions.write_record(state_dir, d)
    if d.verdict == "NO-GO":
        new = rollback(store, state_dir, route, author=author, decision_id=d.decision_id,
                       reason=f"rollout of {st.arm} rolled back at {st.steps[st.index]:.0%}: " + "; ".join(d.reasons))
        st.status = "rolled_back"
        st.history.append(StepRecord(at=_now_iso(now), action="rollback", weight=0.0, config_version=new.version,
                                     phase=new.config.routes[route].phase, decision_id=d.decision_id,
                                     verdict=d.verdict, note="; ".join(d.reasons)))
        save_state(state_dir, st)
        return st
    if d.verdict == "HOLD":
        st.history.append(StepRecord(at=_now_iso(now), action="hold", decision_id=d.decision_id, verdict=d.verdict,
                                     note="; ".join(d.reasons)))
        save_state(state_dir, st)
        return st
    st.history.append(StepRecord(at=_now_iso(now), action="check", decision_id=d.decision_id, verdict=d.verdict,
                                 weight=st.steps[st.index], phase=r.phase))
    if st.index + 1 >= len(st.steps):
        st.status = "completed"
        st.history.append(StepRecord(at=_now_iso(now), action="complete", weight=st.steps[st.index]))
        save_state(state_dir, st)
        return st
    return _apply_step(state_dir, store, st, st.index + 1, author, now, decision_id=d.decision_id)


def _apply_step(state_dir: Path, store: cs.ConfigStore, st: RolloutState, index: int, author: str, now: float,
                decision_id: str | None = None) -> RolloutState:
    w = st.steps[index]
    new = set_arm_weight(store, state_dir, st.route, st.arm, w, author=author, decision_id=decision_id,
                         reason=f"rollout {st.arm}: step {index + 1}/{len(st.steps)} at {w:.0%}",
                         action="rollout_step")
    st.index, st.last_change_at = index, now
    st.history.append(StepRecord(at=_now_iso(now), action="set_weight", weight=w, config_version=new.version,
                                 phase=new.config.routes[st.route].phase, decision_id=decision_id))
    save_state(state_dir, st)
    return st


def run(
    state_dir: Path, store: cs.ConfigStore, route: str, *, author: str,
    sleep: Callable[[float], None] = time.sleep, on_step: Callable[[RolloutState], None] | None = None,
) -> RolloutState:
    """Drive the rollout to completion or rollback, sleeping between checks."""
    while True:
        st = step(state_dir, store, route, author=author)
        if on_step:
            on_step(st)
        if st.status != "running":
            return st
        assert st.last_change_at is not None
        wait = st.last_change_at + st.interval_s - time.time()
        sleep(max(wait, min(st.interval_s, 60.0)) if st.history[-1].action == "hold" else max(wait, 0.0))
