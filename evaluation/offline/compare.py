"""Base vs candidate on the same held-out examples.

Per metric: each run's mean with a 95% CI (Wilson for binary metrics, bootstrap of the
mean otherwise), the paired difference (candidate - base) and relative difference with
paired-bootstrap CIs, and a paired test: McNemar on the discordant pairs for binary
metrics, the paired bootstrap otherwise. Latency: p50 / p95 per run and their paired
differences. Per category: where the candidate is worse than the base.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from evaluation import stats
from evaluation.offline.runs import Run, summarize_metric
from evaluation.offline.scorers import ERROR, LATENCY, MetricSpec

N_RESAMPLES = 4000
SEED = 0


@dataclass(frozen=True, slots=True)
class Side:
    n: int
    mean: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True, slots=True)
class Effect:
    estimate: float
    low: float
    high: float

    @property
    def finite(self) -> bool:
        return all(map(math.isfinite, (self.estimate, self.low, self.high)))


@dataclass(frozen=True, slots=True)
class MetricComparison:
    metric: str
    kind: str
    higher_is_better: bool | None
    n_pairs: int
    base: Side
    candidate: Side
    absolute: Effect  # mean(candidate - base) over pairs
    relative: Effect  # mean(candidate) / mean(base) - 1 over pairs
    p_value: float
    test: str  # mcnemar (exact|chi2) | paired bootstrap
    discordant: tuple[int, int] | None = None  # (base right & candidate wrong, base wrong & candidate right)
    alpha: float = 0.05

    @property
    def outcome(self) -> str:
        if self.n_pairs == 0 or not self.absolute.finite:
            return "no data"
        if self.higher_is_better is None or not self.p_value < self.alpha:
            return "no significant difference" if self.higher_is_better is not None else "—"
        better = (self.absolute.estimate > 0) == self.higher_is_better
        return "better" if better else "worse"


@dataclass(frozen=True, slots=True)
class CategoryRow:
    category: str
    metric: str
    n: int
    base_mean: float
    candidate_mean: float
    diff: float
    p_value: float
    regressed: bool  # candidate worse by point estimate
    significant: bool  # ... and p < alpha


@dataclass(frozen=True, slots=True)
class Latency:
    base_p50: float | None
    base_p95: float | None
    candidate_p50: float | None
    candidate_p95: float | None
    p50_diff: Effect
    p95_diff: Effect


@dataclass(frozen=True, slots=True)
class Report:
    base_run: str
    candidate_run: str
    base_model: str
    candidate_model: str
    alpha: float
    metrics: list[MetricComparison]
    latency: Latency
    categories: list[CategoryRow]
    warnings: list[str] = field(default_factory=list)

    def metric(self, name: str) -> MetricComparison | None:
        return next((m for m in self.metrics if m.metric == name), None)


_NAN = Effect(math.nan, math.nan, math.nan)


def paired_arrays(base: Run, cand: Run, metric: str, ids: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    bv, cv = base.values(metric), cand.values(metric)
    keys = [i for i in (ids if ids is not None else bv) if i in bv and i in cv]
    return np.array([bv[k] for k in keys], dtype=float), np.array([cv[k] for k in keys], dtype=float)


def _resample_idx(n: int, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(n_resamples, n))


def relative_effect(b: np.ndarray, c: np.ndarray, alpha: float = 0.05) -> Effect:
    """mean(c)/mean(b) - 1 with a paired percentile-bootstrap CI; NaN when mean(b) is 0."""
    if b.size == 0 or b.mean() == 0:
        return _NAN
    idx = _resample_idx(b.size)
    mb, mc = b[idx].mean(axis=1), c[idx].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = mc / mb - 1.0
    boot = boot[np.isfinite(boot)]
    if boot.size < 0.99 * idx.shape[0]:  # base mean hits 0 in resamples: the ratio is unstable
        return Effect(float(c.mean() / b.mean() - 1.0), math.nan, math.nan)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Effect(float(c.mean() / b.mean() - 1.0), float(lo), float(hi))


def quantile_diff(b: np.ndarray, c: np.ndarray, q: float, alpha: float = 0.05) -> Effect:
    if b.size == 0:
        return _NAN
    idx = _resample_idx(b.size, 1000)
    boot = np.percentile(c[idx], q, axis=1) - np.percentile(b[idx], q, axis=1)
    lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2])
    return Effect(float(np.percentile(c, q) - np.percentile(b, q)), float(lo), float(hi))


def _side(spec: MetricSpec, values: np.ndarray, alpha: float) -> Side:
    s = summarize_metric(spec, list(values), alpha)
    return Side(s.n, s.mean, s.low, s.high)


def compare_metric(base: Run, cand: Run, spec: MetricSpec, alpha: float = 0.05) -> MetricComparison:
    b, c = paired_arrays(base, cand, spec.name)
    n = int(b.size)
    if n == 0:
        return MetricComparison(spec.name, spec.kind, spec.higher_is_better, 0, Side(0, None, None, None),
                                Side(0, None, None, None), _NAN, _NAN, math.nan, "none", None, alpha)
    pb = stats.paired_bootstrap(b, c, alpha=alpha, n_resamples=N_RESAMPLES, seed=SEED)
    absolute = Effect(pb.estimate, pb.low, pb.high)
    relative = relative_effect(b, c, alpha)
    binary = spec.kind == "binary" and bool(np.all(np.isin(b, (0.0, 1.0))) and np.all(np.isin(c, (0.0, 1.0))))
    if binary:
        n10 = int(np.sum((b == 1) & (c == 0)))
        n01 = int(np.sum((b == 0) & (c == 1)))
        mc = stats.mcnemar(n10, n01)
        p, test, disc = mc.p_value, f"mcnemar ({'exact' if mc.exact else 'chi2'})", (n10, n01)
    else:
        p, test, disc = pb.p_value, "paired bootstrap", None
    return MetricComparison(spec.name, spec.kind, spec.higher_is_better, n, _side(spec, b, alpha),
                            _side(spec, c, alpha), absolute, relative, float(p), test, disc, alpha)


def metric_specs(base: Run, cand: Run) -> list[MetricSpec]:
    """Metrics both runs have, in the base run's order (error and latency last)."""
    out: list[MetricSpec] = []
    for name, m in base.summary.metrics.items():
        if name in cand.summary.metrics and name not in (ERROR.name, LATENCY.name):
            out.append(MetricSpec(name, m.kind, m.higher_is_better))  # type: ignore[arg-type]
    return [*out, LATENCY, ERROR]


def trust_warnings(base: Run, cand: Run) -> list[str]:
    w: list[str] = []
    if base.summary.dataset_sha256 != cand.summary.dataset_sha256:
        w.append(f"the runs used different datasets ({base.summary.dataset} sha256 {base.summary.dataset_sha256[:12]} vs "
                 f"{cand.summary.dataset} sha256 {cand.summary.dataset_sha256[:12]})")
    bi, ci = {r.id for r in base.results}, {r.id for r in cand.results}
    if bi != ci:
        w.append(f"the runs cover different examples ({len(bi - ci)} only in base, {len(ci - bi)} only in candidate)")
    for run, role in ((base, "base"), (cand, "candidate")):
        if run.summary.n_failed:
            w.append(f"{role} run {run.run_id} has {run.summary.n_failed} failed example(s)")
    return w


def categories(base: Run, cand: Run, specs: Sequence[MetricSpec], alpha: float = 0.05) -> list[CategoryRow]:
    cats: dict[str, list[str]] = {}
    for r in base.results:
        cats.setdefault(r.category, []).append(r.id)
    rows: list[CategoryRow] = []
    for cat, ids in sorted(cats.items()):
        for spec in specs:
            if spec.higher_is_better is None or spec.name == ERROR.name:
                continue
            b, c = paired_arrays(base, cand, spec.name, ids)
            if b.size == 0:
                continue
            diff = float(c.mean() - b.mean())
            if spec.kind == "binary" and np.all(np.isin(b, (0.0, 1.0))) and np.all(np.isin(c, (0.0, 1.0))):
                p = stats.mcnemar(int(np.sum((b == 1) & (c == 0))), int(np.sum((b == 0) & (c == 1)))).p_value
            else:
                p = stats.paired_bootstrap(b, c, alpha=alpha, n_resamples=1000, seed=SEED).p_value
            worse = diff < 0 if spec.higher_is_better else diff > 0
            rows.append(CategoryRow(cat, spec.name, int(b.size), float(b.mean()), float(c.mean()), diff, float(p),
                                    bool(worse and diff != 0), bool(worse and diff != 0 and p < alpha)))
    return rows


def compare(base: Run, cand: Run, alpha: float = 0.05, metrics: Sequence[str] | None = None) -> Report:
    specs = metric_specs(base, cand)
    if metrics:
        unknown = [m for m in metrics if m not in {s.name for s in specs}]
        if unknown:
            raise ValueError(f"metric(s) not in both runs: {', '.join(unknown)}; "
                             f"available: {', '.join(s.name for s in specs)}")
        specs = [s for s in specs if s.name in metrics]
    comps = [compare_metric(base, cand, s, alpha) for s in specs]
    bl, cl = paired_arrays(base, cand, LATENCY.name)
    lat = Latency(base.summary.latency.get("p50"), base.summary.latency.get("p95"),
                  cand.summary.latency.get("p50"), cand.summary.latency.get("p95"),
                  quantile_diff(bl, cl, 50, alpha), quantile_diff(bl, cl, 95, alpha))
    return Report(base.run_id, cand.run_id, base.summary.model, cand.summary.model, alpha, comps, lat,
                  categories(base, cand, specs, alpha), trust_warnings(base, cand))
