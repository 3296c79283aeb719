"""Sequential and fixed intervals in evaluation.stats against gbstats' formulas and scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import stats
from tests.support.lazy import LazyModule

st = LazyModule("scipy.stats")


def _gb_rho(alpha: float, tuning: float) -> float:
    # gbstats.frequentist.tests.sequential_rho (two-sided), transcribed
    return float(np.sqrt((-2 * np.log(alpha) + np.log(-2 * np.log(alpha) + 1)) / tuning))


def _gb_halfwidth(s2: float, n: int, tuning: float, alpha: float) -> float:
    # gbstats.frequentist.tests.sequential_interval_halfwidth, transcribed
    rho = _gb_rho(alpha, tuning)
    return float(np.sqrt(s2) * np.sqrt((2 * (n * rho**2 + 1)) * np.log(np.sqrt(n * rho**2 + 1) / alpha) / (n * rho) ** 2))


def _gb_p(est: float, se: float, n: int, rho: float) -> float:
    st2 = est**2 * n / se**2
    tr2p1 = n * rho**2 + 1
    return min(1 / (np.exp(rho**2 * st2 / (2 * tr2p1)) / np.sqrt(tr2p1)), 1)


@pytest.mark.parametrize("tuning", [1000.0, 5000.0])
def test_sequential_welch_matches_gbstats(tuning: float) -> None:
    rng = np.random.default_rng(1)
    c, t = rng.normal(1.0, 2.0, 400), rng.normal(1.5, 2.5, 300)
    res = stats.welch(stats.ArmMoments.from_values(c), stats.ArmMoments.from_values(t), method="sequential",
                      tuning=tuning)
    se = math.sqrt(c.var(ddof=1) / 400 + t.var(ddof=1) / 300)
    hw = _gb_halfwidth(se**2 * 700, 700, tuning, 0.05)
    assert res.method == "sequential"
    assert res.low == pytest.approx(t.mean() - c.mean() - hw, abs=1e-12)
    assert res.high == pytest.approx(t.mean() - c.mean() + hw, abs=1e-12)
    assert res.p_value == pytest.approx(_gb_p(t.mean() - c.mean(), se, 700, _gb_rho(0.05, tuning)), rel=1e-9)
    fixed = stats.welch(stats.ArmMoments.from_values(c), stats.ArmMoments.from_values(t))
    assert res.high - res.low > fixed.high - fixed.low  # the price of looking any number of times


def test_sequential_relative_and_ratio_use_the_same_sequence() -> None:
    rng = np.random.default_rng(2)
    yc, yt = rng.integers(1, 4, 300).astype(float), rng.integers(1, 4, 300).astype(float)
    xc, xt = rng.binomial(yc.astype(int), 0.4).astype(float), rng.binomial(yt.astype(int), 0.5).astype(float)
    mc, mt = stats.RatioMoments.from_values(xc, yc), stats.RatioMoments.from_values(xt, yt)
    for relative in (False, True):
        seq = stats.ratio_compare(mc, mt, relative=relative, method="sequential", tuning=2000)
        fix = stats.ratio_compare(mc, mt, relative=relative)
        assert seq.estimate == pytest.approx(fix.estimate) and seq.se == pytest.approx(fix.se)
        assert (seq.high - seq.low) / 2 == pytest.approx(_gb_halfwidth(seq.se**2 * 600, 600, 2000, 0.05), rel=1e-12)


def test_fixed_ratio_and_relative_use_welch_t_quantiles() -> None:
    # gbstats' TwoSidedTTest: t quantile with Welch-Satterthwaite df from unit-level variances.
    x_c, y_c = np.array([1.0, 0, 2, 1]), np.array([1.0, 1, 2, 2])
    x_t, y_t = np.array([1.0, 1, 2, 0, 1]), np.array([1.0, 1, 2, 1, 2])
    mc, mt = stats.RatioMoments.from_values(x_c, y_c), stats.RatioMoments.from_values(x_t, y_t)
    res = stats.ratio_compare(mc, mt)
    _, vc = stats.ratio_estimate(mc)
    _, vt = stats.ratio_estimate(mt)
    df = (vc + vt) ** 2 / (vc**2 / 3 + vt**2 / 4)
    assert res.df == pytest.approx(df)
    assert (res.high - res.low) / 2 == pytest.approx(st.t.ppf(0.975, df) * math.sqrt(vc + vt))
    assert (res.high - res.low) / 2 > st.norm.ppf(0.975) * math.sqrt(vc + vt)  # wider than normal at n = 4


def test_zero_variance_and_too_few_units_give_no_interval() -> None:
    # 3 control units approving 1 of 2 each, 3 treatment units approving 2 of 2: used to be CI [0.5, 0.5], p 0.
    c = stats.RatioMoments.from_values([1, 1, 1], [2, 2, 2])
    t = stats.RatioMoments.from_values([2, 2, 2], [2, 2, 2])
    for method in ("fixed", "sequential"):
        res = stats.ratio_compare(c, t, method=method)
        assert math.isnan(res.low) and "zero variance" in res.note
    res = stats.welch(stats.ArmMoments(1, 1.0, math.nan), stats.ArmMoments(5, 1.0, 1.0))
    assert math.isnan(res.low) and "too few units" in res.note
    res = stats.welch(stats.ArmMoments(5, 1.0, 0.0), stats.ArmMoments(5, 2.0, 1.0))
    assert math.isnan(res.p_value) and "zero variance in control" in res.note


def test_confidence_sequence_covers_at_every_look() -> None:
    # A/A with 10 looks: the fixed interval excludes 0 at some look far more often than the sequence.
    rng = np.random.default_rng(3)
    ever_fixed = ever_seq = 0
    for _ in range(200):
        c, t = rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
        f = s = False
        for n in range(200, 2001, 200):
            a, b = stats.ArmMoments.from_values(c[:n]), stats.ArmMoments.from_values(t[:n])
            fx = stats.welch(a, b)
            sq = stats.welch(a, b, method="sequential", tuning=4000)
            f |= fx.low > 0 or fx.high < 0
            s |= sq.low > 0 or sq.high < 0
        ever_fixed += f
        ever_seq += s
    assert ever_seq / 200 <= 0.05
    assert ever_fixed > 2 * ever_seq
