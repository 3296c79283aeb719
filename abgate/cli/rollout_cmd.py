"""`abgate promote`, `abgate rollback`, `abgate rollout`: weight changes through the config store."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from abgate.cli.common import EXIT_NOGO, JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from evaluation import decisions, rollout
from gateway import config_store as cs


def _weights_table(v: cs.ConfigVersion, route: str) -> Table:
    r = v.config.routes[route]
    t = Table("arm", "model", "weight", title=f"{route}: config v{v.version}, phase {r.phase}")
    for a in r.arms:
        t.add_row(a.name, a.model, f"{a.weight:.2%}")
    return t


def promote(
    route: Annotated[str, typer.Argument(help="Route name.")],
    arm: Annotated[str, typer.Option("--arm", help="Arm to promote.")],
    decision: Annotated[str, typer.Option("--decision", help="Decision id that allows it.")],
    weight: Annotated[float, typer.Option(help="Share of traffic for the arm (0..1).")] = 1.0,
    force: Annotated[bool, typer.Option(help="Allow citing a decision that is not GO.")] = False,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Set ARM's weight (default 100%); the other arms share the rest proportionally."""
    sdir = state_dir(state)
    try:
        rec = decisions.load_record(sdir, decision)
    except FileNotFoundError as e:
        raise fail(str(e)) from None
    if rec.get("verdict") != "GO" and not force:
        raise fail(f"decision {decision} is {rec.get('verdict')}, not GO; pass --force to promote anyway")
    store = open_store(state, redis)
    try:
        new = rollout.promote(store, sdir, route, arm, weight=weight, decision_id=decision, author=getpass.getuser())
    except (rollout.RolloutError, cs.VersionConflict) as e:
        raise fail(str(e)) from None
    print_json(new) if json else console.print(_weights_table(new, route))


def rollback(
    route: Annotated[str, typer.Argument(help="Route name.")],
    to_version: Annotated[int | None, typer.Option("--to-version", help="Re-apply this config version.")] = None,
    reason: Annotated[str | None, typer.Option(help="Why (recorded in the audit log).")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """All of ROUTE's traffic back to control (arms[0]), or to a prior config version."""
    sdir = state_dir(state)
    try:
        new = rollout.rollback(open_store(state, redis), sdir, route, to_version=to_version, author=getpass.getuser(),
                               reason=reason)
    except (rollout.RolloutError, cs.VersionConflict) as e:
        raise fail(str(e)) from None
    if json:
        print_json(new)
    elif route in new.config.routes:
        console.print(_weights_table(new, route))
    else:
        console.print(f"rolled back to config v{to_version} as v{new.version}", highlight=False)


def rollout_command(
    route: Annotated[str, typer.Argument(help="Route name.")],
    arm: Annotated[str | None, typer.Option("--arm", help="Arm to ramp up.")] = None,
    steps: Annotated[str, typer.Option(help="Percentages, e.g. 5,25,50,100.")] = "5,25,50,100",
    interval: Annotated[str, typer.Option(help="Time at each step before the check (30s, 10m, 1h).")] = "1h",
    criteria: Annotated[Path | None, typer.Option("--criteria", help="Criteria YAML with the guardrails.")] = None,
    once: Annotated[bool, typer.Option("--once", help="Do one step/check and exit (for cron).")] = False,
    status: Annotated[bool, typer.Option("--status", help="Only show the rollout state.")] = False,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Ramp ARM through STEPS, checking the guardrails after each INTERVAL; roll back on harm.
    State is kept in <state>/rollouts/ROUTE.json, so running it again resumes."""
    sdir = state_dir(state)
    store = open_store(state, redis)
    try:
        if status:
            st = rollout.load_state(sdir, route)
            if st is None:
                raise fail(f"no rollout for route {route!r}")
        else:
            existing = rollout.load_state(sdir, route)
            if existing is None or existing.status != "running":
                if arm is None or criteria is None:
                    raise fail("starting a rollout needs --arm and --criteria", 2)
                rollout.start(sdir, route, arm, rollout.parse_steps(steps), rollout.parse_interval(interval), criteria)
            elif arm is not None and arm != existing.arm:
                raise fail(f"a rollout of {existing.arm} on {route!r} is running; it must finish first")
            author = getpass.getuser()
            if once:
                st = rollout.step(sdir, store, route, author=author)
            else:
                st = rollout.run(sdir, store, route, author=author, on_step=lambda s: console.print(
                    f"{s.history[-1].at} {s.history[-1].action} {s.history[-1].note}", highlight=False, markup=False))
    except (rollout.RolloutError, cs.VersionConflict) as e:
        raise fail(str(e)) from None
    except Exception as e:  # criteria errors carry the field; keep them readable
        from evaluation.criteria import CriteriaError

        if isinstance(e, CriteriaError):
            raise fail(f"criteria: {e}", 2) from None
        raise
    if json:
        print_json(st)
    else:
        t = Table("at", "action", "weight", "config", "phase", "decision", "verdict", "note",
                  title=f"rollout {st.route}: {st.arm} {st.status} (step {st.index + 1}/{len(st.steps)})")
        for h in st.history[-15:]:
            t.add_row(h.at, h.action, "" if h.weight is None else f"{h.weight:.0%}", str(h.config_version or ""),
                      str(h.phase or ""), h.decision_id or "", h.verdict or "", h.note)
        console.print(t)
    if st.status == "rolled_back":
        raise typer.Exit(EXIT_NOGO)
