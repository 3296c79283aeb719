"""`abgate plan` numbers: fixed sizes as statsmodels, sequential sizes give the power they promise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from evaluation import planning, stats
from tests.support.lazy import LazyModule

sm_power = LazyModule("statsmodels.stats.power")


def test_fixed_plan_matches_statsmodels() -> None:
    p = planning.plan(baseline=0.5, mde=0.1, relative=True, method="fixed")
    ref = sm_power.NormalIndPower().solve_power(0.05 / 0.5, alpha=0.05, power=0.8)
    assert p.units_per_arm == int(np.ceil(ref))
    # looks and metrics split alpha (Bonferroni), arms split traffic
    assert planning.plan(baseline=0.5, mde=0.1, method="fixed", looks=14).units_per_arm > p.units_per_arm
    p3 = planning.plan(baseline=0.5, mde=0.1, method="fixed", arms=3, units_per_day=300)
    assert p3.total_units == 3 * p3.units_per_arm and p3.days == pytest.approx(p3.total_units / 300)


def test_sequential_plan_has_its_power_at_the_planned_size() -> None:
    p = planning.plan(baseline=0.3, mde=0.2, relative=True, method="sequential")
    assert p.units_per_arm > p.fixed_units_per_arm  # the price of peeking safely
    rng = np.random.default_rng(0)
    n, hits = p.units_per_arm, 0
    for _ in range(300):
        c = rng.binomial(1, 0.3, n).astype(float)
        t = rng.binomial(1, 0.36, n).astype(float)
        r = stats.welch(stats.ArmMoments.from_values(c), stats.ArmMoments.from_values(t), method="sequential",
                        tuning=p.expected_units)
        hits += r.low > 0
    assert 0.72 <= hits / 300 <= 0.9


def test_plan_cli_json_and_errors() -> None:
    r = CliRunner().invoke(app, ["plan", "--baseline", "0.55", "--mde", "0.1", "--units-per-day", "115", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["inference"] == "sequential" and out["units_per_arm"] > out["fixed_horizon_units_per_arm"]
    assert out["days"] == pytest.approx(out["total_units"] / 115, abs=0.1)
    r = CliRunner().invoke(app, ["plan", "--baseline", "1.5", "--mde", "0.1"])
    assert r.exit_code == 2 and "baseline must be a rate" in r.output
