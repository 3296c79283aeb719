"""`abgate gate --criteria FILE [--apply]`: GO / NO-GO / HOLD with a decision record."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from abgate.cli.common import EXIT_ERROR, JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from evaluation import criteria as critmod
from evaluation import decisions, gate
from evaluation.decide import decide
from gateway import config_edits as edits
from gateway import config_store as cs

_STYLE = {"GO": "bold green", "NO-GO": "bold red", "HOLD": "bold yellow"}


def _g(x: float | None, spec: str = ".4g") -> str:
    return "—" if x is None else format(x, spec)


def print_decision(d: gate.Decision, record: Path) -> None:
    if d.stage == "offline":  # runs and criteria, not experiment / phase / config version / SRM
        from abgate.cli.eval_cmd import print_decision as print_offline

        print_offline(d, record)
        return
    console.print(f"[{_STYLE[d.verdict]}]{d.verdict}[/]  decision {d.decision_id}  "
                  f"({d.stage}; experiment {d.experiment}; phase {d.phase}; config v{d.config_version})",
                  highlight=False)
    for r in d.reasons:
        console.print(f"  - {r}", highlight=False, markup=False)
    if d.arms:
        t = Table("arm", "model", "weight", "units", "interactions", title="Arms")
        for a in d.arms:
            t.add_row(a.name, a.model or "—", _g(a.weight), str(a.units), str(a.interactions))
        console.print(t)
    if d.metrics:
        t = Table("metric", "role", "control", "treatment", "units c/t", "coverage c/t", "lift", "CI (level)", "p",
                  "threshold", "verdict", "units needed", title=f"Metrics (SRM p = {_g(d.srm_p, '.3g')})")
        for m in d.metrics:
            level = f" ({1 - m.alpha:.4g})" if m.alpha is not None else ""
            t.add_row(m.metric, f"{m.role} ({m.direction}, {m.effect})", _g(m.control_value), _g(m.treatment_value),
                      f"{m.n_control}/{m.n_treatment}", f"{_g(m.coverage_control, '.0%')}/{_g(m.coverage_treatment, '.0%')}",
                      _g(m.estimate), f"[{_g(m.low)}, {_g(m.high)}]{level}", _g(m.p_value, ".3g"),
                      f"{m.threshold:+.4g}", m.verdict + (f" ({m.note})" if m.note else ""), str(m.units_needed or ""))
        console.print(t)
    if d.inference:
        console.print(f"inference: {d.inference}" + (f" (look {d.look} at this phase)" if d.look else ""),
                      highlight=False, markup=False)
        console.print(f"multiplicity: {d.multiplicity}", highlight=False, markup=False)
    console.print(f"record: {record} (+ .md)", highlight=False)


def gate_command(
    criteria: Annotated[Path, typer.Option("--criteria", help="Criteria YAML (DESIGN.md 'Gate criteria').")],
    apply: Annotated[bool, typer.Option("--apply", help="GO -> promote treatment, NO-GO -> roll back.")] = False,
    route: Annotated[str | None, typer.Option(help="Route to act on with --apply (default: the experiment's).")] = None,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Decide GO (exit 0) / NO-GO (exit 3) / HOLD (exit 4) and write a decision record."""
    sdir = state_dir(state)
    try:
        crit, sha = critmod.load(criteria)
        if crit.stage == "online" and not crit.experiment:
            # rollout guardrail files may leave it out (the rollout names the route); a gate may not
            raise critmod.CriteriaError("experiment", "required for stage: online")
    except critmod.CriteriaError as e:
        raise fail(f"{criteria}: {e}", 2) from None
    store = open_store(state, redis)
    author = getpass.getuser()
    kw: dict[str, Any] = {"criteria_path": str(criteria.resolve()), "criteria_sha256": sha, "decided_by": author}
    if crit.stage == "online":
        kw["store"] = store
    with console.status("evaluating criteria ...", spinner="dots"):
        d = decide(crit, sdir, **kw)
    applied = None
    if apply and d.verdict != "HOLD":
        target = route or crit.route or d.route or _route_for(store, crit.experiment)
        if target is None:
            raise fail("--apply: no route runs this experiment; pass --route")
        ed = edits.ConfigEditor(store, audit=edits.archive_audit(sdir))
        try:
            act = ed.apply_gate_verdict(d.verdict, route=target, treatment=crit.treatment, decision_id=d.decision_id,
                                        reasons=list(d.reasons), author=author)
        except (edits.EditError, cs.VersionConflict) as e:
            d.warnings.append(f"--apply failed: {e}")
            path = decisions.write_record(sdir, d)
            raise fail(f"--apply failed: {e} (decision {d.verdict} recorded in {path})", EXIT_ERROR) from None
        assert act is not None
        applied = {"action": act.action, "route": act.route, "config_version": act.version.version,
                   "phase": act.version.config.routes[act.route].phase}
        d.extra = {**d.extra, "applied": applied}
    path = decisions.write_record(sdir, d)
    if json:
        print_json({**decisions.to_dict(d), "record_path": str(path)})
    else:
        print_decision(d, path)
        if applied:
            console.print(f"applied: {applied['action']} {applied['route']} -> config v{applied['config_version']}",
                          highlight=False)
    raise typer.Exit(d.exit_code)


def _route_for(store: cs.ConfigStore, experiment: str | None) -> str | None:
    cur = store.current()
    if cur is None or experiment is None:
        return None
    return next((name for name, r in cur.config.routes.items() if r.experiment == experiment), None)
