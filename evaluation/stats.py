"""Shared statistics for online A/B analysis and offline evaluation.

Every function is pure (no I/O), takes plain numbers or numpy arrays, and is checked
against scipy/statsmodels in tests/evaluation/test_stats_reference.py. Two-sided tests throughout;
`alpha=0.05` means 95% intervals.

Offline evaluation imports: `wilson_interval`, `mcnemar`, `bootstrap_ci`,
`paired_bootstrap`. Online analysis imports the rest (Welch, delta method, SRM, power).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


class _Distribution(Protocol):
    """The scalar methods used here of a scipy.stats distribution (`norm`, `t`, `binom`, `chi2`);
    extra positional arguments are its shape parameters (degrees of freedom; n and p)."""

    def ppf(self, q: float, /, *shape: float) -> float: ...
    def sf(self, x: float, /, *shape: float) -> float: ...
    def cdf(self, x: float, /, *shape: float) -> float: ...


class _ScipyStats(Protocol):
    """The part of `scipy.stats` used here (scipy ships no type information)."""

    norm: _Distribution
    t: _Distribution
    binom: _Distribution
    chi2: _Distribution


def _scipy_stats() -> _ScipyStats:
    """scipy.stats is a 0.5 s import; the CLI loads it only when used."""
    from scipy import stats

    typed: _ScipyStats = stats
    return typed

__all__ = [
    "Interval",
    "Comparison",
    "McNemarResult",
    "PairedBootstrap",
    "SrmResult",
    "ArmMoments",
    "RatioMoments",
    "wilson_interval",
    "mcnemar",
    "bootstrap_ci",
    "paired_bootstrap",
    "welch",
    "welch_from_samples",
    "relative_lift",
    "ratio_estimate",
    "ratio_compare",
    "srm_test",
    "units_for_mde",
    "z_crit",
    "Method",
    "DEFAULT_TUNING",
    "welch_df",
    "sequential_rho",
    "sequential_halfwidth",
    "sequential_p_value",
    "finish",
]

Method = Literal["fixed", "sequential"]
DEFAULT_TUNING = 5000.0  # gbstats' default sequential tuning parameter (expected total units)


# ---------------------------------------------------------------------------------------
# Result types


@dataclass(frozen=True, slots=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class Comparison:
    """Treatment minus control (absolute) or (T - C) / C (relative), with a CI and p."""

    estimate: float
    low: float
    high: float
    se: float
    p_value: float
    df: float | None = None  # Welch degrees of freedom; None for normal-approximation tests
    method: str = "fixed"  # "fixed" (one pre-registered look) or "sequential" (valid at any look)
    note: str = ""  # why there is no interval (NaNs), e.g. zero variance or too few units


@dataclass(frozen=True, slots=True)
class McNemarResult:
    statistic: float
    p_value: float
    b: int  # base correct, candidate wrong
    c: int  # base wrong, candidate correct
    exact: bool


@dataclass(frozen=True, slots=True)
class PairedBootstrap:
    """Mean of (candidate - base) over paired examples, percentile CI, two-sided p."""

    estimate: float
    low: float
    high: float
    p_value: float
    n: int


@dataclass(frozen=True, slots=True)
class SrmResult:
    chi2: float
    p_value: float
    observed: dict[str, int]
    expected: dict[str, float]


@dataclass(frozen=True, slots=True)
class ArmMoments:
    """Sufficient statistics of per-unit values in one arm: n units, mean, sample variance."""

    n: int
    mean: float
    var: float  # sample variance (ddof=1) of the per-unit values

    @classmethod
    def from_sums(cls, n: int, s: float, ss: float) -> ArmMoments:
        """From n, sum x and sum x^2 (as aggregated in DuckDB)."""
        if n <= 0:
            return cls(0, math.nan, math.nan)
        mean = s / n
        var = (ss - n * mean * mean) / (n - 1) if n > 1 else math.nan
        return cls(n, mean, max(var, 0.0) if not math.isnan(var) else var)

    @classmethod
    def from_values(cls, values: Sequence[float] | np.ndarray) -> ArmMoments:
        a = np.asarray(values, dtype=float)
        n = int(a.size)
        if n == 0:
            return cls(0, math.nan, math.nan)
        return cls(n, float(a.mean()), float(a.var(ddof=1)) if n > 1 else math.nan)


@dataclass(frozen=True, slots=True)
class RatioMoments:
    """Per-unit numerator x and denominator y sums for a ratio metric sum(x)/sum(y).

    n units; sx, sy sums; sxx, syy, sxy sums of squares and cross products.
    """

    n: int
    sx: float
    sy: float
    sxx: float
    syy: float
    sxy: float

    @classmethod
    def from_values(cls, x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> RatioMoments:
        xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        return cls(
            int(xa.size),
            float(xa.sum()),
            float(ya.sum()),
            float((xa * xa).sum()),
            float((ya * ya).sum()),
            float((xa * ya).sum()),
        )


# ---------------------------------------------------------------------------------------
# Helpers


def z_crit(alpha: float = 0.05) -> float:
    """Two-sided normal critical value, e.g. 1.95996 for alpha 0.05."""
    return float(_scipy_stats().norm.ppf(1.0 - alpha / 2.0))


def _nan(note: str, method: str = "fixed") -> Comparison:
    return Comparison(math.nan, math.nan, math.nan, math.nan, math.nan, None, method, note)


def welch_df(var_c: float, n_c: int, var_t: float, n_t: int) -> float:
    """Welch-Satterthwaite degrees of freedom from unit-level variances (gbstats `TTest.dof`)."""
    a, b = var_c / n_c, var_t / n_t
    return (a + b) ** 2 / (a * a / (n_c - 1) + b * b / (n_t - 1))


def sequential_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """The mixing parameter of the two-sided asymptotic confidence sequence (Waudby-Smith et
    al. 2023, eq. 161; gbstats `sequential_rho`): chosen so the sequence is tightest when the
    total sample size reaches `tuning` (the expected number of units in the two arms)."""
    la = -2.0 * math.log(alpha)
    return math.sqrt((la + math.log(la + 1.0)) / tuning)


def sequential_halfwidth(se: float, n: int, alpha: float, rho: float) -> float:
    """Half-width of the asymptotic confidence sequence at total sample size n (eq. 9 of
    Waudby-Smith et al. 2023; gbstats `sequential_interval_halfwidth` with s2 = se^2 n)."""
    s2 = se * se * n
    nr2 = n * rho * rho
    return math.sqrt(s2 * 2.0 * (nr2 + 1.0) * math.log(math.sqrt(nr2 + 1.0) / alpha) / (n * rho) ** 2)


def sequential_p_value(estimate: float, se: float, n: int, rho: float, null: float = 0.0) -> float:
    """Always-valid p-value, 1 / e-value (eq. 155; gbstats `SequentialTwoSidedTTest.p_value`)."""
    st2 = (estimate - null) ** 2 * n / (se * se)
    tr2p1 = n * rho * rho + 1.0
    log_e = rho * rho * st2 / (2.0 * tr2p1) - 0.5 * math.log(tr2p1)
    return 1.0 if log_e <= 0 else min(1.0, math.exp(-log_e))


def finish(
    estimate: float, se: float, alpha: float, *, df: float | None, n: int, method: Method = "fixed",
    tuning: float = DEFAULT_TUNING, null: float = 0.0,
) -> Comparison:
    """Interval and p for an estimate with standard error `se`.

    fixed: Welch t quantiles with `df` (normal when df is None), as gbstats' TwoSidedTTest;
    sequential: the asymptotic confidence sequence over n total units (gbstats'
    SequentialTwoSidedTTest), valid however often it is looked at.
    A zero or undefined standard error gives NaNs with a note: no decision from it.
    """
    if not (math.isfinite(estimate) and math.isfinite(se)) or se < 0:
        return _nan("estimate or variance undefined", method)
    if se == 0:
        return _nan("zero variance: every value is the same, no interval", method)
    if method == "sequential":
        rho = sequential_rho(alpha, tuning)
        hw = sequential_halfwidth(se, n, alpha, rho)
        p = sequential_p_value(estimate, se, n, rho, null)
        return Comparison(estimate, estimate - hw, estimate + hw, se, p, df, "sequential")
    if df is None or not math.isfinite(df):
        q = z_crit(alpha)
        p = float(2.0 * _scipy_stats().norm.sf(abs((estimate - null) / se)))
    else:
        q = float(_scipy_stats().t.ppf(1 - alpha / 2, df))
        p = float(2.0 * _scipy_stats().t.sf(abs((estimate - null) / se), df))
    return Comparison(estimate, estimate - q * se, estimate + q * se, se, p, df, "fixed")


# ---------------------------------------------------------------------------------------
# Proportions and paired tests (offline evaluation)


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> Interval:
    """Wilson score interval for a binomial proportion.

    Same numbers as `statsmodels.stats.proportion.proportion_confint(..., method="wilson")`.
    n == 0 gives NaNs (missing data must never look like a result).
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got successes={successes} n={n}")
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    z = z_crit(alpha)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def mcnemar(b: int, c: int, exact: bool | None = None, correction: bool = True) -> McNemarResult:
    """McNemar's test on the discordant pairs of a paired binary outcome.

    b = pairs where base was right and candidate wrong, c = base wrong and candidate right.
    exact=None picks the exact binomial test when b + c < 25 (the usual rule), else the
    chi-square statistic with continuity correction. Matches
    `statsmodels.stats.contingency_tables.mcnemar(table, exact=..., correction=...)`.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b} c={c}")
    use_exact = (b + c) < 25 if exact is None else exact
    if use_exact:
        k, n = min(b, c), b + c
        p = 1.0 if n == 0 else float(min(1.0, 2.0 * _scipy_stats().binom.cdf(k, n, 0.5)))
        return McNemarResult(float(k), p, b, c, True)
    if b + c == 0:
        return McNemarResult(0.0, 1.0, b, c, False)
    diff = abs(b - c) - (1.0 if correction else 0.0)
    stat = diff**2 / (b + c)  # statsmodels does not clamp at 0 when b == c; we match it
    return McNemarResult(float(stat), float(_scipy_stats().chi2.sf(stat, 1)), b, c, False)


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], float] | str = "mean",
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile bootstrap CI of a statistic ("mean", "median", or a function of a 1-D array).

    Deterministic for a given seed. Empty input gives NaNs.
    """
    a = np.asarray(values, dtype=float)
    if a.size == 0:
        return Interval(math.nan, math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_resamples, a.size))
    samples = a[idx]
    if statistic == "mean":
        est, boot = float(a.mean()), samples.mean(axis=1)
    elif statistic == "median":
        est, boot = float(np.median(a)), np.median(samples, axis=1)
    elif callable(statistic):
        est = float(statistic(a))
        boot = np.array([statistic(row) for row in samples], dtype=float)
    else:
        raise ValueError(f"unknown statistic {statistic!r}; use 'mean', 'median' or a function")
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Interval(est, float(lo), float(hi))


def paired_bootstrap(
    base: Sequence[float] | np.ndarray,
    candidate: Sequence[float] | np.ndarray,
    alpha: float = 0.05,
    n_resamples: int = 2000,
    seed: int = 0,
) -> PairedBootstrap:
    """Paired bootstrap of mean(candidate - base) over the same examples.

    The p-value is the two-sided bootstrap p: twice the share of resampled mean differences
    on the other side of zero (bounded below by 1/n_resamples so it is never exactly 0).
    """
    b, c = np.asarray(base, dtype=float), np.asarray(candidate, dtype=float)
    if b.shape != c.shape:
        raise ValueError(f"paired samples must have the same length, got {b.size} and {c.size}")
    if b.size == 0:
        return PairedBootstrap(math.nan, math.nan, math.nan, math.nan, 0)
    d = c - b
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, d.size, size=(n_resamples, d.size))].mean(axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    est = float(d.mean())
    if np.all(d == 0):
        p = 1.0
    else:
        below = float(np.mean(boot <= 0))
        above = float(np.mean(boot >= 0))
        p = min(1.0, max(2.0 * min(below, above), 1.0 / n_resamples))
    return PairedBootstrap(est, float(lo), float(hi), p, int(d.size))


# ---------------------------------------------------------------------------------------
# Two-sample comparisons on per-unit aggregates (online analysis)


MIN_UNITS = 2  # fewer units with a value in an arm: no variance, no interval


def _too_few(nc: int, nt: int, method: str) -> Comparison | None:
    if nc < MIN_UNITS or nt < MIN_UNITS:
        return _nan(f"too few units with a value (control {nc}, treatment {nt}; need {MIN_UNITS} each)", method)
    return None


def _zero_var(vc: float, vt: float, method: str) -> Comparison | None:
    # gbstats: an arm with zero (or negative) variance gives no result (ZERO_NEGATIVE_VARIANCE).
    if not (vc > 0 and vt > 0):
        which = ", ".join(n for n, v in (("control", vc), ("treatment", vt)) if not v > 0)
        return _nan(f"zero variance in {which}: every unit has the same value, no interval", method)
    return None


def welch(
    control: ArmMoments, treatment: ArmMoments, alpha: float = 0.05, *, method: Method = "fixed",
    tuning: float = DEFAULT_TUNING,
) -> Comparison:
    """mean(treatment) - mean(control) from per-unit moments.

    fixed: Welch's t-test; matches `scipy.stats.ttest_ind(t, c, equal_var=False)` for the
    p-value and its `confidence_interval()`. sequential: the confidence sequence.
    Needs >= 2 units per arm and non-zero variance in both arms, else NaNs with a note.
    """
    bad = _too_few(control.n, treatment.n, method) or _zero_var(control.var, treatment.var, method)
    if bad:
        return bad
    diff = treatment.mean - control.mean
    se = math.sqrt(control.var / control.n + treatment.var / treatment.n)
    df = welch_df(control.var, control.n, treatment.var, treatment.n)
    return finish(diff, se, alpha, df=df, n=control.n + treatment.n, method=method, tuning=tuning)


def welch_from_samples(control: Sequence[float], treatment: Sequence[float], alpha: float = 0.05) -> Comparison:
    return welch(ArmMoments.from_values(control), ArmMoments.from_values(treatment), alpha)


def _relative(mc: float, vmc: float, mt: float, vmt: float) -> tuple[float, float]:
    """(mt/mc - 1, Var) by the delta method for independent arm means (gbstats
    `variance_of_ratios`): Var ~= Var(mt)/mc^2 + mt^2 Var(mc)/mc^4."""
    return mt / mc - 1.0, vmt / mc**2 + mt**2 * vmc / mc**4


def relative_lift(
    control: ArmMoments, treatment: ArmMoments, alpha: float = 0.05, *, method: Method = "fixed",
    tuning: float = DEFAULT_TUNING,
) -> Comparison:
    """(mean_t - mean_c) / mean_c with a delta-method CI (independent arms); fixed intervals
    use Welch t quantiles as gbstats does. NaN when the control mean is 0, an arm has fewer
    than 2 units or zero variance."""
    bad = _too_few(control.n, treatment.n, method) or _zero_var(control.var, treatment.var, method)
    if bad:
        return bad
    if control.mean == 0 or not math.isfinite(control.mean):
        return _nan("control mean is 0: relative lift undefined", method)
    est, var = _relative(control.mean, control.var / control.n, treatment.mean, treatment.var / treatment.n)
    df = welch_df(control.var, control.n, treatment.var, treatment.n)
    return finish(est, math.sqrt(max(var, 0.0)), alpha, df=df, n=control.n + treatment.n, method=method,
                  tuning=tuning)


def ratio_estimate(m: RatioMoments) -> tuple[float, float]:
    """Ratio sum(x)/sum(y) over units and its delta-method variance (units are i.i.d.).

    Var(R) ~= (Var(x) - 2 R Cov(x,y) + R^2 Var(y)) / (n * ybar^2).
    """
    if m.n < 2 or m.sy == 0:
        return (math.nan, math.nan)
    n = m.n
    xbar, ybar = m.sx / n, m.sy / n
    r = m.sx / m.sy
    vx = (m.sxx - n * xbar * xbar) / (n - 1)
    vy = (m.syy - n * ybar * ybar) / (n - 1)
    cxy = (m.sxy - n * xbar * ybar) / (n - 1)
    var = (vx - 2 * r * cxy + r * r * vy) / (n * ybar * ybar)
    return (r, max(var, 0.0))


def ratio_compare(
    control: RatioMoments, treatment: RatioMoments, alpha: float = 0.05, relative: bool = False, *,
    method: Method = "fixed", tuning: float = DEFAULT_TUNING,
) -> Comparison:
    """Compare a ratio metric (e.g. thumbs-up rate over interactions with feedback) between
    arms, with unit-level delta-method variances. relative=True gives (Rt - Rc) / Rc.
    Fixed intervals use Welch t quantiles on the unit-level variances (gbstats)."""
    bad = _too_few(control.n, treatment.n, method)
    if bad:
        return bad
    rc, vc = ratio_estimate(control)
    rt, vt = ratio_estimate(treatment)
    if not (math.isfinite(rc) and math.isfinite(rt)):
        return _nan("no denominator in an arm", method)
    bad = _zero_var(vc, vt, method)
    if bad:
        return bad
    df = welch_df(vc * control.n, control.n, vt * treatment.n, treatment.n)
    n = control.n + treatment.n
    if not relative:
        return finish(rt - rc, math.sqrt(vc + vt), alpha, df=df, n=n, method=method, tuning=tuning)
    if rc == 0:
        return _nan("control rate is 0: relative lift undefined", method)
    est, var = _relative(rc, vc, rt, vt)
    return finish(est, math.sqrt(var), alpha, df=df, n=n, method=method, tuning=tuning)


# ---------------------------------------------------------------------------------------
# Sample-ratio mismatch and power


def srm_test(observed: Mapping[str, int], expected_weights: Mapping[str, float]) -> SrmResult:
    """Chi-square goodness of fit of units per arm against the configured weights.

    Same as `scipy.stats.chisquare(obs, f_exp)`. Arms with expected weight 0 and no units
    are dropped; units in an arm expected at 0 give p = 0 (a broken split).
    """
    names = list(expected_weights)
    unknown = [a for a in observed if a not in expected_weights and observed[a] > 0]
    if unknown:
        raise ValueError(f"units observed in arms without an expected weight: {', '.join(unknown)}")
    total_w = float(sum(expected_weights.values()))
    if total_w <= 0:
        raise ValueError("expected weights must sum to a positive number")
    total = int(sum(observed.get(a, 0) for a in names))
    obs = {a: int(observed.get(a, 0)) for a in names}
    exp = {a: total * float(expected_weights[a]) / total_w for a in names}
    if total == 0:
        return SrmResult(math.nan, math.nan, obs, exp)
    chi2 = 0.0
    dof = -1
    for a in names:
        if exp[a] == 0:
            if obs[a] > 0:
                return SrmResult(math.inf, 0.0, obs, exp)
            continue
        chi2 += (obs[a] - exp[a]) ** 2 / exp[a]
        dof += 1
    if dof <= 0:
        return SrmResult(0.0, 1.0, obs, exp)
    return SrmResult(float(chi2), float(_scipy_stats().chi2.sf(chi2, dof)), obs, exp)


def units_for_mde(
    sd_control: float,
    min_effect: float,
    alpha: float = 0.05,
    power: float = 0.8,
    sd_treatment: float | None = None,
    ratio: float = 1.0,
) -> int:
    """Units needed in the control arm to detect an absolute difference `min_effect`
    (two-sided, normal approximation); treatment needs ratio x that.

    n_c = (z_{1-alpha/2} + z_power)^2 * (sd_c^2 + sd_t^2 / ratio) / mde^2. With equal sds
    this is `statsmodels NormalIndPower().solve_power(mde/sd, alpha=, power=, ratio=)`.
    """
    if min_effect <= 0 or not math.isfinite(min_effect):
        raise ValueError(f"min_effect must be > 0, got {min_effect}")
    sd_t = sd_control if sd_treatment is None else sd_treatment
    if not (math.isfinite(sd_control) and math.isfinite(sd_t)):
        raise ValueError("standard deviations must be finite")
    za = z_crit(alpha)
    zb = float(_scipy_stats().norm.ppf(power))
    n = (za + zb) ** 2 * (sd_control**2 + sd_t**2 / ratio) / min_effect**2
    return max(2, math.ceil(n))
