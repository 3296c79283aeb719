"""`abgate analyze EXPERIMENT`: online A/B analysis of one phase from the archive."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

import typer
from rich.table import Table

from abgate.cli.common import JsonOut, RedisUrl, StateDir, console, fail, open_store, print_json, state_dir
from evaluation import analysis as an


def _g(x: float, spec: str = ".4g") -> str:
    return "—" if x is None or not math.isfinite(x) else format(x, spec)


def to_dict(a: an.Analysis) -> dict[str, Any]:
    """JSON-friendly view (NaN -> null)."""

    def f(x: float) -> float | None:
        return x if isinstance(x, (int, float)) and math.isfinite(x) else None

    return {
        "experiment": a.experiment, "route": a.route, "phase": a.phase, "phases": list(a.phases),
        "config_versions": list(a.config_versions), "control": a.control,
        "arms": [{"name": s.name, "models": list(s.models), "expected_weight": s.expected_weight,
                  "units": s.units, "interactions": s.interactions} for s in a.arms],
        "srm": None if a.srm is None else {"chi2": f(a.srm.chi2), "p_value": f(a.srm.p_value),
                                          "observed": a.srm.observed, "expected": a.srm.expected},
        "first_ts": a.first_ts, "last_ts": a.last_ts, "days": a.days,
        "archive": {"files": a.archive.files, "corrupt_lines": a.archive.corrupt_lines,
                    "examples": [f"{e.path}:{e.line}: {e.error}" for e in a.archive.examples]},
        "units_in_multiple_arms": a.units_in_multiple_arms, "warnings": list(a.warnings),
        "inference": {"method": a.method, "expected_units": a.tuning, "alpha": a.alpha},
        "metrics": {
            name: {
                "kind": r.kind, "definition": r.definition, "events": r.events,
                "arms": {k: {"units": s.units, "observations": s.observations, "coverage": f(s.coverage),
                             "mean": f(s.mean), "sd": f(s.sd)}
                         for k, s in r.arms.items()},
                "lifts": {k: {eff: {"estimate": f(c.estimate), "low": f(c.low), "high": f(c.high),
                                    "p_value": f(c.p_value), "method": c.method, "note": c.note}
                              for eff, c in (("absolute", l.absolute), ("relative", l.relative))}
                          for k, l in r.lifts.items()},
            }
            for name, r in a.metrics.items()
        },
    }


def analyze(
    experiment: Annotated[str, typer.Argument(help="The route's `experiment` key.")],
    phase: Annotated[int | None, typer.Option(help="Phase to analyse (default: latest).")] = None,
    control: Annotated[str | None, typer.Option(help="Control arm (default: the config's arms[0]).")] = None,
    metric: Annotated[list[str] | None, typer.Option("--metric", help="Only these metrics (repeatable).")] = None,
    inference: Annotated[str, typer.Option(
        help="sequential (confidence sequences, valid at any number of looks) or fixed (one pre-registered look).",
    )] = "sequential",
    expected_units: Annotated[int, typer.Option(
        help="Sequential tuning: total units expected in both arms at the planned end.")] = 5000,
    state: StateDir = None,
    redis: RedisUrl = None,
    json: JsonOut = False,
) -> None:
    """Per-arm units, metric means, lifts with 95% CIs, SRM and days elapsed for one phase."""
    sdir = state_dir(state)
    if inference not in ("sequential", "fixed"):
        raise fail(f"--inference must be sequential or fixed, got {inference!r}", 2)
    if expected_units < 2:
        raise fail("--expected-units must be >= 2", 2)
    try:
        with console.status(f"analysing {experiment} in {sdir / 'events'} ...", spinner="dots"):
            a = an.analyze(sdir, experiment, phase=phase, control=control, metrics=metric or [],
                           store=open_store(state, redis), method="fixed" if inference == "fixed" else "sequential",
                           tuning=float(expected_units))
    except an.AnalysisError as err:
        raise fail(str(err)) from None
    if metric:
        a = dataclasses.replace(a, metrics={k: v for k, v in a.metrics.items() if k in metric})
    if json:
        print_json(to_dict(a))
        return
    console.print(
        f"[bold]{a.experiment}[/] route {a.route} phase {a.phase} (phases {list(a.phases)}), "
        f"config versions {list(a.config_versions)}; {a.first_ts} .. {a.last_ts} ({a.days:.2f} days)",
        highlight=False,
    )
    arms = Table("arm", "models", "expected weight", "units", "interactions", title="Arms")
    for s in a.arms:
        arms.add_row(s.name, ", ".join(s.models), _g(s.expected_weight) if s.expected_weight is not None else "—",
                     str(s.units), str(s.interactions))
    console.print(arms)
    if a.srm:
        console.print(f"SRM chi-square {_g(a.srm.chi2)}  p = {_g(a.srm.p_value, '.3g')}", highlight=False)
    others = [s.name for s in a.arms if s.name != a.control]
    level = f"{1 - a.alpha:.0%}"
    t = Table("metric", "kind", *[f"{s.name} mean (units/obs, coverage)" for s in a.arms],
              *[h for o in others for h in (f"{o} abs lift [{level} CI]", f"rel lift [{level} CI]", "p")],
              title=f"Metrics ({a.method} intervals" + (f", expected_units {a.tuning:.0f})" if a.method == "sequential"
                                                         else ")"))
    for name, r in a.metrics.items():
        cells = [f"{_g(r.arms[s.name].mean)} ({r.arms[s.name].units}/{r.arms[s.name].observations}, "
                 f"{_g(r.arms[s.name].coverage, '.0%')})" for s in a.arms]
        for o in others:
            l = r.lifts[o]
            cells += [f"{_g(l.absolute.estimate)} [{_g(l.absolute.low)}, {_g(l.absolute.high)}]",
                      f"{_g(l.relative.estimate, '+.2%')} [{_g(l.relative.low, '+.2%')}, {_g(l.relative.high, '+.2%')}]",
                      _g(l.absolute.p_value, ".3g")]
        t.add_row(name, r.kind, *cells)
    console.print(t)
    console.print("units = units with a value; coverage = share of the arm's interactions with the metric; "
                  "mean = per-unit mean, ratio = sum over interactions with the feedback (gateway.metric_catalog)",
                  highlight=False)
    if not a.archive.ok:
        console.print(f"[bold red]archive: {a.archive.corrupt_lines} unreadable line(s)[/]")
        for e in a.archive.examples:
            console.print(f"  {e.path}:{e.line}: {e.error}", highlight=False, markup=False)
    for w in a.warnings:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
