"""`abgate plan`: units per arm and days an online test needs (like GrowthBook's power calculator)."""

from __future__ import annotations

import math
from typing import Annotated

import typer

from abgate.cli.common import JsonOut, console, fail, print_json


def plan(
    baseline: Annotated[float, typer.Option(help="Control value: a rate in (0, 1), or a mean with --sd.")],
    mde: Annotated[float, typer.Option(help="Minimum detectable effect: relative to the baseline (0.1 = +10%) "
                                            "unless --absolute.")],
    absolute: Annotated[bool, typer.Option("--absolute", help="--mde is an absolute difference.")] = False,
    sd: Annotated[float | None, typer.Option(help="Per-unit standard deviation (default: sqrt(p(1-p)) of a rate).")]
    = None,
    units_per_day: Annotated[float | None, typer.Option(help="Units (users) entering the test per day, all arms.")]
    = None,
    arms: Annotated[int, typer.Option(help="Arms including control (traffic split evenly).")] = 2,
    alpha: Annotated[float, typer.Option(help="Two-sided false positive rate.")] = 0.05,
    power: Annotated[float, typer.Option(help="Chance to detect an effect of size --mde.")] = 0.8,
    metrics: Annotated[int, typer.Option(help="Success criteria (Bonferroni family, as the gate adjusts).")] = 1,
    looks: Annotated[int, typer.Option(help="Looks at the data (fixed inference only; sequential is valid at any "
                                             "number).")] = 1,
    inference: Annotated[str, typer.Option(help="sequential (the gate's default) or fixed.")] = "sequential",
    json: JsonOut = False,
) -> None:
    """Sample size and duration for a baseline, MDE, traffic, arms and looks."""
    from evaluation import planning  # scipy: only when planning

    if inference not in ("sequential", "fixed"):
        raise fail(f"--inference must be sequential or fixed, got {inference!r}", 2)
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise fail("--alpha and --power must be between 0 and 1", 2)
    try:
        p = planning.plan(baseline=baseline, mde=mde, relative=not absolute, sd=sd, alpha=alpha, power=power,
                          arms=arms, units_per_day=units_per_day, method="fixed" if inference == "fixed" else
                          "sequential", looks=looks, metrics=metrics)
    except ValueError as e:
        raise fail(str(e), 2) from None
    days = None if p.days is None else math.ceil(p.days * 10) / 10
    out = {"inference": p.method, "alpha_per_comparison": p.alpha, "power": p.power, "mde_absolute": p.mde_absolute,
           "sd": p.sd, "units_per_arm": p.units_per_arm, "arms": p.arms, "total_units": p.total_units, "days": days,
           "expected_units": p.expected_units, "fixed_horizon_units_per_arm": p.fixed_units_per_arm}
    if json:
        print_json(out)
        return
    console.print(f"[bold]{p.units_per_arm}[/] units per arm, {p.total_units} in total"
                  + (f", about [bold]{days}[/] days at {units_per_day:g} units/day" if days is not None else ""),
                  highlight=False)
    console.print(f"  {p.method} inference at alpha {p.alpha:.4g} per comparison, power {p.power:.0%}, "
                  f"absolute MDE {p.mde_absolute:.4g} (sd {p.sd:.4g})", highlight=False)
    if p.method == "sequential":
        console.print(f"  one fixed look at the end would need {p.fixed_units_per_arm} per arm; the sequential "
                      "gate may be re-run daily and can stop early", highlight=False)
        console.print(f"  criteria: expected_units: {p.expected_units}, min_units_per_arm: {p.units_per_arm}",
                      highlight=False)
    else:
        console.print(f"  criteria: inference: fixed, min_units_per_arm: {p.units_per_arm}; decide once, at the end",
                      highlight=False)
