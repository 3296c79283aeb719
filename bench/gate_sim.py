"""A/A and power simulations of the gate as operators use it: re-run every day, and rollouts
that check guardrails at every step. Not a timed test (it takes minutes); the test suite
keeps fast known-answer tests for each rule.

Each replication draws units that arrive uniformly over `days` (50/50), each with 1-5
interactions: approved feedback on 60% of interactions (ratio metric), errors 1%,
policy violations 1% (count metric), latency ~ N(800, 240) ms. At every daily look the
per-arm sufficient statistics of the units seen so far go through the same code as
`abgate gate` (`evaluation.analysis.metric_result` -> `evaluation.gate.decide_online`),
only the DuckDB aggregation is skipped (the analysis tests check that separately).

Scenarios (success: approved increase, min_effect 0):
  gate-1g   one guardrail (error)                 -- the issue's table
  gate-3g   the README's three guardrails (policy_violation, error, latency_ms +10%)
  rollout   steps 5/25/50/100 with the three guardrails, a new phase per step, HOLD waits
Printed: ever-GO and ever-NO-GO over the looks (A/A), rollout false-rollback (A/A), and
power (a true +0.05 approved effect) for sequential and fixed inference, each with a 95%
Wilson interval.

    python -m bench.gate_sim [--reps 200] [--looks 14] [--units 1600] [--seed 0] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from evaluation import analysis as an
from evaluation import criteria as critmod
from evaluation import gate, stats
from evaluation.archive_sql import ArchiveHealth

ARMS = ("control", "treatment")
BASE = """
experiment: sim
min_units_per_arm: 100
min_days: 0
success:
  - {metric: approved, direction: increase, min_effect: 0}
"""
ONE_GUARD = "guardrails:\n  - {metric: error, direction: decrease}\n"
THREE_GUARDS = """guardrails:
  - {metric: policy_violation, direction: decrease}
  - {metric: error, direction: decrease}
  - {metric: latency_ms, direction: decrease, tolerance: 0.10, effect: relative}
"""


@dataclass(frozen=True, slots=True)
class Units:
    """Per-unit data of one simulated experiment (or rollout phase)."""

    arm: np.ndarray  # 0 control, 1 treatment
    day: np.ndarray  # arrival time in days
    n: np.ndarray  # interactions
    ax: np.ndarray  # approved: sum of values
    ay: np.ndarray  # approved: interactions with the feedback
    err: np.ndarray  # failed interactions
    lat: np.ndarray  # mean latency
    pv: np.ndarray  # policy violation events


def draw(rng: np.random.Generator, units: int, days: float, p_treat: float, effect: float) -> Units:
    arm = (rng.random(units) < p_treat).astype(np.int8)
    n = rng.integers(1, 6, units)
    ay = rng.binomial(n, 0.6)
    ax = rng.binomial(ay, 0.55 + effect * arm)
    err = rng.binomial(n, 0.01)
    lat = rng.normal(800.0, 240.0 / np.sqrt(n))
    pv = rng.binomial(n, 0.01)
    return Units(arm, rng.random(units) * days, n, ax, ay, err, lat, pv)


def analysis_at(u: Units, until: float, weights: dict[str, float], method: stats.Method,
                tuning: float) -> an.Analysis:
    """The Analysis `abgate analyze` would produce from the units that arrived by `until`."""
    seen = u.day <= until
    metrics: dict[str, tuple[an.MetricKind, dict[str, Any], dict[str, Any]]] = {m: ("mean", {}, {}) for m in
                                                           ("error", "latency_ms", "policy_violation")}
    metrics["approved"] = ("ratio", {}, {})
    units: dict[str, int] = {}
    inter: dict[str, int] = {}
    for i, name in enumerate(ARMS):
        k = seen & (u.arm == i)
        n = u.n[k].astype(float)
        units[name], inter[name] = int(k.sum()), int(n.sum())
        for m, vals, obs in (("error", u.err[k] / n, n.sum()), ("latency_ms", u.lat[k], n.sum()),
                             ("policy_violation", u.pv[k] / n, u.pv[k].sum())):
            mom = stats.ArmMoments.from_values(vals) if obs else stats.ArmMoments(0, math.nan, math.nan)
            metrics[m][1][name], metrics[m][2][name] = mom, int(obs)
        has = u.ay[k] > 0
        metrics["approved"][1][name] = stats.RatioMoments.from_values(u.ax[k][has], u.ay[k][has])
        metrics["approved"][2][name] = int(u.ay[k].sum())
    results = {m: an.metric_result(m, kind, mom, obs, inter, list(ARMS), "control", 0.05, method, tuning)
               for m, (kind, mom, obs) in metrics.items()}
    srm = stats.srm_test(units, weights)
    return an.Analysis(
        experiment="sim", route="sim", phase=1, phases=(1,), config_versions=(1,), control="control",
        arms=tuple(an.ArmSummary(a, ("m",), weights[a], units[a], inter[a]) for a in ARMS), srm=srm,
        metrics=results, first_ts=None, last_ts=None, days=until, archive=ArchiveHealth(1, 0),
        units_in_multiple_arms=0, alpha=0.05, method=method, tuning=tuning,
    )


def _crit(text: str, method: str, expected_units: int) -> critmod.Criteria:
    c = critmod.parse(text)
    return msgspec.structs.replace(c, inference=method, expected_units=expected_units)


def gate_run(rng: np.random.Generator, crit: critmod.Criteria, units: int, looks: int, effect: float) -> set[str]:
    """Verdicts seen over `looks` daily looks of one experiment."""
    u = draw(rng, units, float(looks), 0.5, effect)
    seen: set[str] = set()
    w = {"control": 0.5, "treatment": 0.5}
    for day in range(1, looks + 1):
        a = analysis_at(u, float(day), w, crit.inference, float(crit.expected_units))
        seen.add(gate.decide_online(crit, Path("."), analysis=a).verdict)
    return seen


def rollout_run(rng: np.random.Generator, crit: critmod.Criteria, units_per_day: float, step_days: float,
                max_waits: int = 5) -> str:
    """One A/A rollout over 5/25/50/100%: a new phase (fresh units) per step; HOLD waits
    another interval on the same phase. Returns rolled_back / completed / stuck."""
    for w in (0.05, 0.25, 0.50):
        weights = {"control": 1 - w, "treatment": w}
        horizon = step_days * (max_waits + 1)
        u = draw(rng, int(units_per_day * horizon), horizon, w, 0.0)
        for k in range(1, max_waits + 2):
            a = analysis_at(u, step_days * k, weights, crit.inference, float(crit.expected_units))
            v = gate.decide_online(crit, Path("."), analysis=a, guardrails_only=True).verdict
            if v == "NO-GO":
                return "rolled_back"
            if v == "GO":
                break
        else:
            return "stuck"
    return "completed"


def wilson(k: int, n: int) -> tuple[float, float, float]:
    ci = stats.wilson_interval(k, n)
    return ci.estimate, ci.low, ci.high


def run(reps: int, looks: int, units: int, seed: int, effect: float) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for method in ("sequential", "fixed"):
        res: dict[str, list[float]] = {}
        for name, guards in (("gate-1g", ONE_GUARD), ("gate-3g", THREE_GUARDS)):
            crit = _crit(BASE + guards, method, units)
            rng = np.random.default_rng(seed)
            go = nogo = 0
            for _ in range(reps):
                seen = gate_run(rng, crit, units, looks, 0.0)
                go += "GO" in seen
                nogo += "NO-GO" in seen
            res[f"{name} A/A ever-GO"] = list(wilson(go, reps))
            res[f"{name} A/A ever-NO-GO"] = list(wilson(nogo, reps))
        crit = _crit(BASE + ONE_GUARD, method, units)
        rng = np.random.default_rng(seed + 1)
        ever = last = 0
        for _ in range(reps):
            u = draw(rng, units, float(looks), 0.5, effect)
            w = {"control": 0.5, "treatment": 0.5}
            verdicts = [gate.decide_online(crit, Path("."), analysis=analysis_at(u, float(d), w, method, units)).verdict
                        for d in range(1, looks + 1)]
            ever += "GO" in verdicts
            last += verdicts[-1] == "GO"
        res[f"gate-1g power (+{effect} approved), GO at any look"] = list(wilson(ever, reps))
        res[f"gate-1g power (+{effect} approved), GO at the last look"] = list(wilson(last, reps))
        gcrit = _crit("experiment: sim\n" + THREE_GUARDS, method, units)
        rng = np.random.default_rng(seed + 2)
        outcomes = [rollout_run(rng, gcrit, units / looks, 2.0) for _ in range(reps)]
        res["rollout A/A false rollback"] = list(wilson(outcomes.count("rolled_back"), reps))
        res["rollout A/A completed"] = list(wilson(outcomes.count("completed"), reps))
        out[method] = res
    # Fixed-horizon reference: one pre-registered look at the end, fixed intervals.
    crit = _crit(BASE + ONE_GUARD, "fixed", units)
    rng = np.random.default_rng(seed + 1)
    hits = 0
    for _ in range(reps):
        u = draw(rng, units, float(looks), 0.5, effect)
        a = analysis_at(u, float(looks), {"control": 0.5, "treatment": 0.5}, "fixed", units)
        hits += gate.decide_online(crit, Path("."), analysis=a).verdict == "GO"
    out["fixed"][f"gate-1g power (+{effect} approved), one fixed look at day {looks}"] = list(wilson(hits, reps))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--looks", type=int, default=14)
    p.add_argument("--units", type=int, default=1600)
    p.add_argument("--effect", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    out = run(args.reps, args.looks, args.units, args.seed, args.effect)
    if args.json:
        print(json.dumps({"reps": args.reps, "looks": args.looks, "units": args.units, "results": out}, indent=2))
        return 0
    print(f"{args.reps} replications, {args.units} units over {args.looks} days, daily looks "
          f"({time.perf_counter() - t0:.0f} s)")
    for method, res in out.items():
        print(f"\n{method} inference")
        for k, (est, lo, hi) in res.items():
            print(f"  {k:62s} {est:6.1%}  [{lo:.1%}, {hi:.1%}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
