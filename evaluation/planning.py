"""Sample size and duration of an online test, for the gate as it decides.

Like GrowthBook's power calculator: from a baseline (a rate, or a mean and sd), the
minimum detectable effect, daily traffic and the number of arms, the units per arm and
days needed for the given power. `method="sequential"` sizes the test for the gate's
default confidence sequences (tuned for the planned total), `method="fixed"` for one
pre-registered look (with `looks` > 1 the fixed test is Bonferroni-split over the looks).
Both are Bonferroni-adjusted for `metrics` success criteria and `arms - 1` comparisons.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from evaluation import stats


@dataclass(frozen=True, slots=True)
class Plan:
    method: stats.Method
    alpha: float  # the per-comparison level after the adjustments
    power: float
    mde_absolute: float
    sd: float
    units_per_arm: int
    arms: int
    total_units: int
    days: float | None  # None without a traffic figure
    expected_units: int  # put in the criteria as `expected_units` (the sequential tuning parameter)
    fixed_units_per_arm: int  # the same test with one fixed look, for comparison


def _sequential_ok(n: int, sd_c: float, sd_t: float, ratio: float, mde: float, alpha: float, power: float,
                   tuning: float | None) -> bool:
    nt = max(2, round(n * ratio))
    se = math.sqrt(sd_c**2 / n + sd_t**2 / nt)
    total = n + nt
    rho = stats.sequential_rho(alpha, tuning if tuning else float(total))
    hw = stats.sequential_halfwidth(se, total, alpha, rho)
    zb = float(stats._scipy_stats().norm.ppf(power))
    return mde - hw >= zb * se


def units_per_arm(
    sd_control: float, min_effect: float, *, alpha: float = 0.05, power: float = 0.8,
    sd_treatment: float | None = None, ratio: float = 1.0, method: stats.Method = "fixed",
    tuning: float | None = None,
) -> int:
    """Control-arm units (treatment: ratio x) so the final look has `power` to find an
    absolute effect `min_effect`. Sequential: the confidence sequence's lower bound must
    clear 0 with that power at the planned size (tuning=None: tuned for that size)."""
    if method == "fixed":
        return stats.units_for_mde(sd_control, min_effect, alpha, power, sd_treatment, ratio)
    sd_t = sd_control if sd_treatment is None else sd_treatment
    if min_effect <= 0 or not math.isfinite(min_effect):
        raise ValueError(f"min_effect must be > 0, got {min_effect}")
    lo, hi = 2, max(4, stats.units_for_mde(sd_control, min_effect, alpha, power, sd_t, ratio))
    while not _sequential_ok(hi, sd_control, sd_t, ratio, min_effect, alpha, power, tuning):
        lo, hi = hi, hi * 2
        if hi > 10**12:
            raise ValueError("effect too small for any sample size")
    while lo < hi:
        mid = (lo + hi) // 2
        if _sequential_ok(mid, sd_control, sd_t, ratio, min_effect, alpha, power, tuning):
            hi = mid
        else:
            lo = mid + 1
    return lo


def plan(
    *, baseline: float, mde: float, relative: bool = True, sd: float | None = None, alpha: float = 0.05,
    power: float = 0.8, arms: int = 2, units_per_day: float | None = None, method: stats.Method = "sequential",
    looks: int = 1, metrics: int = 1,
) -> Plan:
    """A plan for a rate (sd None: sqrt(p (1 - p)) from the baseline rate) or a mean with `sd`."""
    if arms < 2:
        raise ValueError("arms must be >= 2 (control and at least one treatment)")
    if looks < 1 or metrics < 1:
        raise ValueError("looks and metrics must be >= 1")
    if sd is None:
        if not 0 < baseline < 1:
            raise ValueError(f"baseline must be a rate in (0, 1) without --sd, got {baseline}")
        sd = math.sqrt(baseline * (1 - baseline))
    if not (sd > 0 and math.isfinite(sd)):
        raise ValueError(f"sd must be > 0, got {sd}")
    mde_abs = abs(mde * baseline) if relative else abs(mde)
    if mde_abs <= 0:
        raise ValueError("the minimum detectable effect must be non-zero")
    a = alpha / metrics / (arms - 1)
    fixed_alpha = a / looks
    n_fixed = units_per_arm(sd, mde_abs, alpha=fixed_alpha, power=power, method="fixed")
    n = n_fixed if method == "fixed" else units_per_arm(sd, mde_abs, alpha=a, power=power, method="sequential")
    total = n * arms
    days = total / units_per_day if units_per_day else None
    return Plan(method, fixed_alpha if method == "fixed" else a, power, mde_abs, sd, n, arms, total,
                days, 2 * n, n_fixed)
