"""The offline gate: criteria (`stage: offline`) over two eval runs -> GO / NO-GO / HOLD.

Same decision order and per-criterion rules as the online gate (`evaluation.gate`):
 1. untrustworthy data -> HOLD: a run missing or unreadable, runs on different datasets
    or examples, failed examples in either run, a criterion's metric with no paired data;
 2. a guardrail significantly worse (whole paired CI beyond its tolerance) -> NO-GO;
 3. fewer paired examples than `min_examples` -> HOLD;
 4. every success criterion's whole CI beyond its threshold -> GO; one wholly short ->
    NO-GO; otherwise HOLD.
`decide_on: point` (seed 001's semantics) judges success criteria and floors on the point
estimate instead (estimate >= threshold -> met, else short); guardrails keep the CI rule.
Either way each criterion's note and the record's `extra.verdicts` show both readings.
Lifts are paired: absolute = mean(candidate - base), relative = mean(candidate) /
mean(base) - 1, both with paired-bootstrap CIs. `min_value` is a floor on the
candidate's own value (Wilson CI for binary metrics, bootstrap otherwise), reported as
its own row: floor CI wholly above -> met, wholly below -> short, else inconclusive.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TypedDict

import msgspec

from evaluation.criteria import Criteria, Criterion
from evaluation.gate import (
    ArmRecord,
    CriterionFields,
    Decision,
    MetricVerdict,
    MetricVerdictName,
    Role,
    combine,
    judge_guardrail,
    judge_success,
    new_decision_id,
)
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


def _point(direction: str, estimate: float, threshold: float) -> MetricVerdictName:
    return "met" if (estimate >= threshold if direction == "increase" else estimate <= threshold) else "short"


def _both(v: MetricVerdict, ci: MetricVerdictName, point: MetricVerdictName, mode: str, note: str) -> MetricVerdict:
    """The verdict of the criteria's mode, with the other mode's reading in the note."""
    chosen, other, other_name = (point, ci, "CI") if mode == "point" else (ci, point, "point estimate")
    extra = f"{other_name}: {other}"
    return msgspec.structs.replace(v, verdict=chosen, note=f"{note}; {extra}" if note else extra)


class _PairFields(TypedDict):
    """The MetricVerdict fields that come from the paired comparison of the two runs."""

    control_value: float | None
    treatment_value: float | None
    n_control: int
    n_treatment: int
    p_value: float | None


class _DecisionFields(TypedDict):
    """The Decision fields known before the runs are loaded."""

    decision_id: str
    stage: str
    experiment: str | None
    route: str | None
    control: str
    treatment: str
    criteria_path: str | None
    criteria_sha256: str | None
    decided_by: str
    decided_at: str
    min_units_per_arm: int


def _verdicts(base: runs.Run, cand: runs.Run, c: Criterion, role: Role, alpha: float,
              mode: str = "ci") -> list[MetricVerdict]:
    common = CriterionFields(metric=c.metric, role=role, direction=c.direction, effect=c.effect,
                              min_value=c.min_value)
    thr0 = c.min_effect if role == "success" else c.tolerance
    spec = _spec(base, cand, c.metric)
    if spec is None:
        where = [r.run_id for r in (base, cand) if c.metric not in r.summary.metrics]
        return [MetricVerdict(**common, threshold=thr0, verdict="missing",
                              note=f"no metric {c.metric!r} in run(s) {', '.join(where)}")]
    mc = cmp.compare_metric(base, cand, spec, alpha)
    vals = _PairFields(control_value=_f(mc.base.mean), treatment_value=_f(mc.candidate.mean), n_control=mc.n_pairs,
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
    if role == "success" and verdict != "missing":
        out[0] = _both(out[0], verdict, _point(c.direction, eff.estimate, thr), mode, mc.test)
    if role == "success" and c.min_value is not None:
        lo, hi, est = mc.candidate.low, mc.candidate.high, mc.candidate.mean
        fv: MetricVerdictName
        if lo is None or hi is None or est is None:
            fv = "missing"
        elif c.direction == "increase":
            fv = "met" if lo >= c.min_value else "short" if hi < c.min_value else "inconclusive"
        else:
            fv = "met" if hi <= c.min_value else "short" if lo > c.min_value else "inconclusive"
        method = "Wilson" if spec.kind == "binary" else "bootstrap"
        floor = MetricVerdict(
            metric=c.metric, role=role, direction=c.direction, effect="value", min_value=c.min_value,
            threshold=c.min_value, verdict=fv, estimate=est, low=lo, high=hi, treatment_value=est,
            n_treatment=mc.candidate.n,
            note=f"floor: candidate {'>=' if c.direction == 'increase' else '<='} {c.min_value:g} ({method} CI)")
        if est is not None and fv != "missing":
            floor = _both(floor, fv, _point(c.direction, est, c.min_value), mode, floor.note)
        out.append(floor)
    return out


def _readings(m: MetricVerdict, mode: str) -> dict[str, object]:
    """Both readings of one success row, for the record: {metric, effect, point, ci, decided_on}."""
    other = m.note.rsplit(": ", 1)[-1] if m.verdict != "missing" and ": " in m.note else None
    point, ci = (m.verdict, other) if mode == "point" else (other, m.verdict)
    return {"metric": m.metric, "effect": m.effect, "estimate": m.estimate, "low": m.low, "high": m.high,
            "threshold": m.threshold, "point": point, "ci": ci, "decided_on": mode}


def decide(crit: Criteria, state_dir: Path, *, criteria_path: str | None = None, criteria_sha256: str | None = None,
           decided_by: str = "") -> Decision:
    """Decide from the runs named by `crit.baseline` / `crit.candidate` (ids under
    `<state>/evals` or run directories). Does not write the record (see evaluation.decisions)."""
    decision_id = new_decision_id()
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    base_d = _DecisionFields(decision_id=decision_id, stage="offline", experiment=crit.experiment, route=crit.route,
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
    metrics = [v for c in crit.success for v in _verdicts(base, cand, c, "success", crit.alpha, crit.decide_on)]
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
            "criteria_mode": crit.decide_on,
            "verdicts": [_readings(m, crit.decide_on) for m in metrics if m.role == "success"],
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


def targets(crit: Criteria, base: runs.RunSummary) -> list[str]:
    """Seed 001's "expected improvements needed": what the candidate must reach, from this baseline."""
    out = []
    for c in crit.success:
        m = base.metrics.get(c.metric)
        if m is None or m.mean is None:
            out.append(f"{c.metric}: not in the baseline run")
            continue
        up = c.direction == "increase"
        if c.effect == "relative":
            need = m.mean * (1 + c.min_effect if up else 1 - c.min_effect)
            how = f"baseline {m.mean:.4g} x {1 + c.min_effect if up else 1 - c.min_effect:g}"
        else:
            need = m.mean + c.min_effect if up else m.mean - c.min_effect
            how = f"baseline {m.mean:.4g} {'+' if up else '-'} {c.min_effect:g}"
        parts = [f"{'>' if up and c.min_effect == 0 else '>=' if up else '<='} {need:.4g} ({how})"]
        if c.min_value is not None:
            parts.append(f"{'>=' if up else '<='} {c.min_value:g} (absolute floor)")
            need = max(need, c.min_value) if up else min(need, c.min_value)
        rule = ("as point estimates" if crit.decide_on == "point"
                else "with the whole 95% CI there (decide_on: ci)")
        out.append(f"{c.metric}: candidate needs {' and '.join(parts)} -> at least {need:.4g} {rule}"
                   if up else f"{c.metric}: candidate needs {' and '.join(parts)} -> at most {need:.4g} {rule}")
    return out
