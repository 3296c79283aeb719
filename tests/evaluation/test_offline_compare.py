"""compare(): CIs and paired tests checked against statsmodels / scipy on the same numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.offline import compare as cmp
from evaluation.offline import runs
from tests.support.lazy import LazyModule
from tests.support.offline_eval import ACC, make_run

sm_tables = LazyModule("statsmodels.stats.contingency_tables")
sm_proportion = LazyModule("statsmodels.stats.proportion")


def test_binary_metric_wilson_cis_and_mcnemar_match_statsmodels(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 120
    base = (rng.random(n) < 0.7).astype(int)
    cand = base.copy()
    flips = rng.choice(n, 30, replace=False)
    cand[flips[:22]] = 1  # mostly fixes ...
    cand[flips[22:]] = 0  # ... a few new errors
    b, c = make_run(tmp_path, "b", acc=list(base)), make_run(tmp_path, "c", acc=list(cand))
    m = cmp.compare(b, c).metric("all_fields_correct")
    assert m is not None and m.n_pairs == n
    for side, arr in ((m.base, base), (m.candidate, cand)):
        lo, hi = sm_proportion.proportion_confint(int(arr.sum()), n, alpha=0.05, method="wilson")
        assert side.mean == pytest.approx(arr.mean()) and side.low == pytest.approx(lo) and side.high == pytest.approx(hi)
    n10 = int(((base == 1) & (cand == 0)).sum())
    n01 = int(((base == 0) & (cand == 1)).sum())
    assert m.discordant == (n10, n01)
    table = [[int(((base == 1) & (cand == 1)).sum()), n10], [n01, int(((base == 0) & (cand == 0)).sum())]]
    expected = sm_tables.mcnemar(table, exact=(n10 + n01) < 25, correction=True)
    assert m.p_value == pytest.approx(expected.pvalue)
    assert m.test.startswith("mcnemar")
    assert m.absolute.estimate == pytest.approx(cand.mean() - base.mean())
    assert m.absolute.low < m.absolute.estimate < m.absolute.high
    assert m.relative.estimate == pytest.approx(cand.mean() / base.mean() - 1)
    assert m.outcome == ("better" if m.p_value < 0.05 else "no significant difference")


def test_small_discordance_uses_the_exact_test(tmp_path: Path) -> None:
    base = [1] * 40 + [0] * 10
    cand = [1] * 40 + [1] * 6 + [0] * 4
    m = cmp.compare(make_run(tmp_path, "b", acc=base), make_run(tmp_path, "c", acc=cand)).metric("all_fields_correct")
    assert m is not None and m.test == "mcnemar (exact)" and m.discordant == (0, 6)
    assert m.p_value == pytest.approx(sm_tables.mcnemar([[40, 0], [6, 4]], exact=True).pvalue)  # 2 * 0.5**6


def test_continuous_metric_bootstrap_and_paired_bootstrap(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    sb = rng.uniform(0.3, 0.8, 80)
    sc = np.clip(sb + rng.normal(0.05, 0.05, 80), 0, 1)
    b = make_run(tmp_path, "b", acc=[1] * 80, sim=list(sb))
    c = make_run(tmp_path, "c", acc=[1] * 80, sim=list(sc))
    m = cmp.compare(b, c).metric("similarity")
    assert m is not None and m.test == "paired bootstrap"
    d = sc - sb
    assert m.absolute.estimate == pytest.approx(d.mean())
    # the percentile CI of the paired mean difference is close to the t interval on the differences
    from scipy import stats as st

    t_lo, t_hi = st.ttest_1samp(d, 0).confidence_interval()
    assert m.absolute.low == pytest.approx(t_lo, abs=0.005) and m.absolute.high == pytest.approx(t_hi, abs=0.005)
    assert m.p_value < 0.01 and m.outcome == "better"
    assert m.base.low < m.base.mean < m.base.high


def test_latency_and_per_category_regressions(tmp_path: Path) -> None:
    n = 60
    cats = ["gift" if i < 30 else "business" for i in range(n)]
    base = [1] * n
    cand = [1] * 30 + [0] * 20 + [1] * 10  # candidate breaks 20 of 30 business examples
    lat_b = [100.0 + (i % 5) for i in range(n)]
    lat_c = [150.0 + (i % 5) for i in range(n)]
    b = make_run(tmp_path, "b", acc=base, latency=lat_b, categories=cats)
    c = make_run(tmp_path, "c", acc=cand, latency=lat_c, categories=cats)
    rep = cmp.compare(b, c)
    lat = rep.latency
    assert lat.base_p50 == pytest.approx(np.median(lat_b)) and lat.candidate_p50 == pytest.approx(np.median(lat_c))
    assert lat.p50_diff.estimate == pytest.approx(50.0) and lat.p50_diff.low > 0
    assert rep.metric("latency_ms").outcome == "worse"
    reg = {(r.category, r.metric): r for r in rep.categories}
    assert reg[("business", "all_fields_correct")].regressed and reg[("business", "all_fields_correct")].significant
    assert reg[("business", "all_fields_correct")].diff == pytest.approx(-20 / 30)
    assert not reg[("gift", "all_fields_correct")].regressed
    assert rep.warnings == []


def test_trust_warnings_and_unknown_metrics(tmp_path: Path) -> None:
    b = make_run(tmp_path, "b", acc=[1, 0, 1, 1])
    c = make_run(tmp_path, "c", acc=[1, 1, 1, 1], failed=[3], dataset_sha="e" * 64)
    w = cmp.trust_warnings(b, c)
    assert any("different datasets" in x for x in w) and any("1 failed" in x for x in w)
    assert cmp.compare(b, c).metric("all_fields_correct").n_pairs == 3  # the failed example is not paired
    with pytest.raises(ValueError, match="not in both runs: nope"):
        cmp.compare(b, c, metrics=["nope"])
    assert [m.metric for m in cmp.compare(b, c, metrics=[ACC.name]).metrics] == [ACC.name]


def test_runs_refuse_overwrite_and_report_unreadable_files(tmp_path: Path) -> None:
    make_run(tmp_path, "r", acc=[1, 0])
    with pytest.raises(runs.RunError, match="already exists"):
        runs.reserve(tmp_path, "r")
    with pytest.raises(runs.RunError, match="no eval run 'nope'.*runs in"):
        runs.load(tmp_path, "nope")
    p = tmp_path / "evals" / "r" / "results.jsonl"
    p.write_text(p.read_text() + "{broken\n")
    with pytest.raises(runs.RunError, match="1 unreadable line"):
        runs.load(tmp_path, "r")
    with pytest.raises(runs.RunError, match="must be"):
        runs.new_run_id("m", "../escape")
