"""The offline gate: criteria (`stage: offline`) over two eval runs -> GO / NO-GO / HOLD.

Same decision order and per-criterion rules as the online gate (`evaluation.gate`):
 1. untrustworthy data -> HOLD: a run missing or unreadable, runs on different datasets
    or examples, failed examples in either run, a criterion's metric with no paired data;
 2. a guardrail significantly worse (whole paired CI beyond its tolerance) -> NO-GO;
 3. fewer paired examples than `min_examples` -> HOLD;
 4. every success criterion's whole CI beyond its threshold -> GO; one wholly short ->
    NO-GO; otherwise HOLD.
Lifts are paired: absolute = mean(candidate - base), relative = mean(candidate) /
mean(base) - 1, both with paired-bootstrap CIs. `min_value` is a floor on the
candidate's own value (Wilson CI for binary metrics, bootstrap otherwise), reported as
its own row: floor CI wholly above -> met, wholly below -> short, else inconclusive.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path

from evaluation.criteria import Criteria, Criterion
from evaluation.gate import ArmRecord, Decision, MetricVerdict, combine, judge_guardrail, judge_success, new_decision_id
from evaluation.offline import compare as cmp
from evaluation.offline import runs
from evaluation.offline.scorers import ERROR, LATENCY, MetricSpec

# Defaults for seed 001 (see criteria_seed001.yaml next to this file).
SEED001_CRITERIA = Path(__file__).with_name("criteria_seed001.yaml")


def _spec(base: runs.Run, cand: runs.Run, metric: str) -> MetricSpec | None:
    if metric == LATENCY.name:
        return LATENCY
    if metric == ERROR.name:
        return ERROR
    if metric not in base.summary.metrics or metric not in cand.summary.metrics:
        return None
    return base.spec(metric)


def _f(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def _verdicts(base: runs.Run, cand: runs.Run, c: Criterion, role: str, alpha: float) -> list[MetricVerdict]:
    common = dict(metric=c.metric, role=role, direction=c.direction, effect=c.effect, min_value=c.min_value)
    thr0 = c.min_effect if role == "success" else c.tolerance
    spec = _spec(base, cand, c.metric)
    if spec is None:
        where = [r.run_id for r in (base, cand) if c.metric not in r.summary.metrics]
        return [MetricVerdict(**common, threshold=thr0, verdict="missing",
                              note=f"no metric {c.metric!r} in run(s) {', '.join(where)}")]
    mc = cmp.compare_metric(base, cand, spec, alpha)
    vals = dict(control_value=_f(mc.base.mean), treatment_value=_f(mc.candidate.mean), n_control=mc.n_pairs,
                n_treatment=mc.n_pairs, p_value=_f(mc.p_value))
    if mc.n_pairs == 0:
        return [MetricVerdict(**common, **vals, threshold=thr0, verdict="missing", note="no paired examples")]
    eff = mc.relative if c.effect == "relative" else mc.absolute
    if not eff.finite:
        why = "base mean is 0, relative lift undefined" if c.effect == "relative" else "too few examples for a CI"
        return [MetricVerdict(**common, **vals, threshold=thr0, verdict="missing", note=why)]
    judge = judge_success if role == "success" else judge_guardrail
    verdict, thr = judge(c, eff.estimate, eff.low, eff.high)
    out = [MetricVerdict(**common, **vals, threshold=thr, verdict=verdict, estimate=eff.estimate, low=eff.low,
                         high=eff.high, note=mc.test)]
    if role == "success" and c.min_value is not None:
        lo, hi, est = mc.candidate.low, mc.candidate.high, mc.candidate.mean
        if lo is None or hi is None or est is None:
            fv = "missing"
        elif c.direction == "increase":
            fv = "met" if lo >= c.min_value else "short" if hi < c.min_value else "inconclusive"
        else:
            fv = "met" if hi <= c.min_value else "short" if lo > c.min_value else "inconclusive"
        method = "Wilson" if spec.kind == "binary" else "bootstrap"
        out.append(MetricVerdict(
            metric=c.metric, role=role, direction=c.direction, effect="value", min_value=c.min_value,
            threshold=c.min_value, verdict=fv, estimate=est, low=lo, high=hi, treatment_value=est,
            n_treatment=mc.candidate.n,
            note=f"floor: candidate {'>=' if c.direction == 'increase' else '<='} {c.min_value:g} ({method} CI)"))
    return out


def decide(crit: Criteria, state_dir: Path, *, criteria_path: str | None = None, criteria_sha256: str | None = None,
           decided_by: str = "") -> Decision:
    """Decide from the runs named by `crit.baseline` / `crit.candidate` (ids under
    `<state>/evals` or run directories). Does not write the record (see evaluation.decisions)."""
    decision_id = new_decision_id()
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    base_d = dict(decision_id=decision_id, stage="offline", experiment=crit.experiment, route=crit.route,
                  control=crit.control, treatment=crit.treatment, criteria_path=criteria_path,
                  criteria_sha256=criteria_sha256, decided_by=decided_by, decided_at=now,
                  min_units_per_arm=crit.min_examples)
    loaded: dict[str, runs.Run] = {}
    problems: list[str] = []
    for role, ref in (("baseline", crit.baseline), ("candidate", crit.candidate)):
        try:
            loaded[role] = runs.load(state_dir, str(ref))
        except runs.RunError as e:
            problems.append(f"{role} run unavailable: {e}")
    if problems:
        return Decision(verdict="HOLD", reasons=problems, **base_d)
    base, cand = loaded["baseline"], loaded["candidate"]
    trust = cmp.trust_warnings(base, cand)
    metrics = [v for c in crit.success for v in _verdicts(base, cand, c, "success", crit.alpha)]
    metrics += [v for c in crit.guardrails for v in _verdicts(base, cand, c, "guardrail", crit.alpha)]
    paired = len({r.id for r in base.results} & {r.id for r in cand.results})
    minimums = [f"{paired} paired examples < min_examples {crit.min_examples}"] if paired < crit.min_examples else []
    verdict, reasons = combine(trust_problems=trust, metrics=metrics, minimum_problems=minimums)
    specs = [s for s in cmp.metric_specs(base, cand) if s.name in set(crit.metrics)]
    regressions = [r for r in cmp.categories(base, cand, specs, crit.alpha) if r.regressed]
    return Decision(
        verdict=verdict, reasons=reasons, **base_d,
        arms=[ArmRecord(r.run_id, r.summary.model, None, r.summary.n_examples, r.summary.n_ok) for r in (base, cand)],
        metrics=metrics,
        data_first_ts=min(base.summary.started_at, cand.summary.started_at),
        data_last_ts=max(base.summary.finished_at, cand.summary.finished_at),
        warnings=[*base.summary.warnings, *cand.summary.warnings],
        extra={
            "baseline_run": str(base.path), "candidate_run": str(cand.path),
            "baseline_model": base.summary.model, "candidate_model": cand.summary.model,
            "dataset": cand.summary.dataset, "dataset_sha256": cand.summary.dataset_sha256,
            "paired_examples": paired, "min_examples": crit.min_examples,
            "category_regressions": [
                {"category": r.category, "metric": r.metric, "n": r.n, "base": r.base_mean,
                 "candidate": r.candidate_mean, "diff": r.diff, "p_value": r.p_value, "significant": r.significant}
                for r in regressions],
        },
    )
