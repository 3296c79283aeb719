"""evaluation.stats checked against scipy / statsmodels on the same numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation import stats
from tests.support.lazy import LazyModule

st = LazyModule("scipy.stats")
sm_tables = LazyModule("statsmodels.stats.contingency_tables")
sm_power = LazyModule("statsmodels.stats.power")
sm_proportion = LazyModule("statsmodels.stats.proportion")


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (85, 100), (412, 977)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    ci = stats.wilson_interval(k, n)
    lo, hi = sm_proportion.proportion_confint(k, n, alpha=0.05, method="wilson")
    assert ci.estimate == pytest.approx(k / n)
    assert ci.low == pytest.approx(lo, abs=1e-12)
    assert ci.high == pytest.approx(hi, abs=1e-12)


def test_wilson_rejects_bad_counts_and_empty_is_nan() -> None:
    with pytest.raises(ValueError):
        stats.wilson_interval(5, 3)
    assert math.isnan(stats.wilson_interval(0, 0).low)


@pytest.mark.parametrize("b,c,exact", [(3, 9, True), (0, 5, True), (30, 12, False), (40, 40, False), (7, 2, None)])
def test_mcnemar_matches_statsmodels(b: int, c: int, exact: bool | None) -> None:
    res = stats.mcnemar(b, c, exact=exact)
    ref = sm_tables.mcnemar([[50, b], [c, 40]], exact=res.exact, correction=True)
    assert res.statistic == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)


def test_welch_matches_scipy() -> None:
    rng = np.random.default_rng(7)
    c = rng.normal(1.0, 2.0, 300)
    t = rng.normal(1.4, 3.0, 200)
    res = stats.welch_from_samples(c, t)
    ref = st.ttest_ind(t, c, equal_var=False)
    ci = ref.confidence_interval(0.95)
    assert res.estimate == pytest.approx(t.mean() - c.mean())
    assert res.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.low == pytest.approx(ci.low, rel=1e-9)
    assert res.high == pytest.approx(ci.high, rel=1e-9)
    assert res.df == pytest.approx(ref.df, rel=1e-9)


def test_arm_moments_from_sums_equals_from_values() -> None:
    x = np.array([0.0, 1.0, 1.0, 0.5, 2.0])
    a = stats.ArmMoments.from_sums(len(x), float(x.sum()), float((x * x).sum()))
    b = stats.ArmMoments.from_values(x)
    assert a.mean == pytest.approx(b.mean)
    assert a.var == pytest.approx(b.var)


def test_relative_lift_delta_method_covers_simulated_truth() -> None:
    # Known answer: true relative lift 0.2. Over repeated seeded draws the 95% delta CI
    # must cover it about 95% of the time and its mean must be close to the truth.
    cover = 0
    ests = []
    for seed in range(200):
        rng = np.random.default_rng(seed)
        c = rng.exponential(5.0, 400)
        t = rng.exponential(6.0, 400)
        r = stats.relative_lift(stats.ArmMoments.from_values(c), stats.ArmMoments.from_values(t))
        ests.append(r.estimate)
        cover += r.low <= 0.2 <= r.high
    assert 0.9 <= cover / 200 <= 0.99
    assert np.mean(ests) == pytest.approx(0.2, abs=0.02)


def test_relative_lift_formula() -> None:
    c = stats.ArmMoments(100, 2.0, 4.0)
    t = stats.ArmMoments(100, 2.5, 9.0)
    r = stats.relative_lift(c, t)
    se = math.sqrt((9.0 / 100) / 4 + 2.5**2 * (4.0 / 100) / 16)
    assert r.estimate == pytest.approx(0.25)
    assert r.se == pytest.approx(se)
    # Fixed intervals use Welch t quantiles, as gbstats' TwoSidedTTest does.
    df = (9.0 / 100 + 4.0 / 100) ** 2 / ((9.0 / 100) ** 2 / 99 + (4.0 / 100) ** 2 / 99)
    assert r.df == pytest.approx(df)
    assert r.p_value == pytest.approx(2 * st.t.sf(0.25 / se, df))
    assert r.high - r.estimate == pytest.approx(st.t.ppf(0.975, df) * se)
    assert math.isnan(stats.relative_lift(stats.ArmMoments(10, 0.0, 1.0), t).estimate)


def test_ratio_delta_method_matches_linearisation() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(1, 6, 500).astype(float)
    x = rng.binomial(y.astype(int), 0.3).astype(float)
    m = stats.RatioMoments.from_values(x, y)
    r, var = stats.ratio_estimate(m)
    assert r == pytest.approx(x.sum() / y.sum())
    # Linearised per-unit values: (x - r y) / ybar; Var(R) = var(lin) / n.
    lin = (x - r * y) / y.mean()
    assert var == pytest.approx(lin.var(ddof=1) / len(x), rel=1e-9)


def test_ratio_compare_absolute_and_relative() -> None:
    rng = np.random.default_rng(11)
    yc = rng.integers(1, 4, 400).astype(float)
    yt = rng.integers(1, 4, 400).astype(float)
    xc = rng.binomial(yc.astype(int), 0.4).astype(float)
    xt = rng.binomial(yt.astype(int), 0.6).astype(float)
    mc, mt = stats.RatioMoments.from_values(xc, yc), stats.RatioMoments.from_values(xt, yt)
    a = stats.ratio_compare(mc, mt)
    rel = stats.ratio_compare(mc, mt, relative=True)
    assert a.estimate == pytest.approx(xt.sum() / yt.sum() - xc.sum() / yc.sum())
    assert a.low > 0 and a.p_value < 1e-6
    assert rel.estimate == pytest.approx((xt.sum() / yt.sum()) / (xc.sum() / yc.sum()) - 1)


def test_srm_matches_scipy_chisquare() -> None:
    res = stats.srm_test({"control": 5100, "treatment": 4900}, {"control": 0.5, "treatment": 0.5})
    ref = st.chisquare([5100, 4900], [5000, 5000])
    assert res.chi2 == pytest.approx(ref.statistic)
    assert res.p_value == pytest.approx(ref.pvalue)
    res3 = stats.srm_test({"a": 700, "b": 180, "c": 120}, {"a": 0.7, "b": 0.2, "c": 0.1})
    ref3 = st.chisquare([700, 180, 120], [700, 200, 100])
    assert res3.p_value == pytest.approx(ref3.pvalue)


def test_srm_broken_split_and_zero_weight_arm() -> None:
    assert stats.srm_test({"control": 6000, "treatment": 4000}, {"control": 0.5, "treatment": 0.5}).p_value < 1e-6
    assert stats.srm_test({"control": 10, "treatment": 3}, {"control": 1.0, "treatment": 0.0}).p_value == 0.0
    assert stats.srm_test({"control": 10}, {"control": 1.0, "treatment": 0.0}).p_value == 1.0
    with pytest.raises(ValueError):
        stats.srm_test({"ghost": 3}, {"control": 1.0})


@pytest.mark.parametrize("sd,mde,ratio", [(0.5, 0.05, 1.0), (1.2, 0.2, 1.0), (0.3, 0.02, 2.0)])
def test_units_for_mde_matches_statsmodels(sd: float, mde: float, ratio: float) -> None:
    n = stats.units_for_mde(sd, mde, ratio=ratio)
    ref = sm_power.NormalIndPower().solve_power(effect_size=mde / sd, alpha=0.05, power=0.8, ratio=ratio)
    assert n == math.ceil(ref)


def test_bootstrap_ci_deterministic_and_covers_mean() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10, 2, 400)
    a = stats.bootstrap_ci(x, seed=5)
    b = stats.bootstrap_ci(x, seed=5)
    assert a == b
    ref = st.bootstrap((x,), np.mean, n_resamples=2000, method="percentile", random_state=5)
    assert a.low == pytest.approx(ref.confidence_interval.low, abs=0.05)
    assert a.high == pytest.approx(ref.confidence_interval.high, abs=0.05)
    assert a.low < x.mean() < a.high
    med = stats.bootstrap_ci(x, statistic="median")
    assert med.estimate == pytest.approx(np.median(x))
    assert math.isnan(stats.bootstrap_ci([]).estimate)


def test_paired_bootstrap_detects_improvement_and_null() -> None:
    rng = np.random.default_rng(2)
    base = rng.binomial(1, 0.6, 300).astype(float)
    better = np.where(rng.random(300) < 0.3, 1.0, base)
    res = stats.paired_bootstrap(base, better)
    assert res.estimate == pytest.approx(better.mean() - base.mean())
    assert res.low > 0 and res.p_value < 0.01
    same = stats.paired_bootstrap(base, base)
    assert same.p_value == 1.0 and same.estimate == 0.0
    with pytest.raises(ValueError):
        stats.paired_bootstrap([1.0], [1.0, 2.0])
