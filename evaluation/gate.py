"""The Go / No-Go / Hold gate (DESIGN.md "Offline side" -> Gate), for both stages.

Order of the rules (first that applies wins):
 1. data not trustworthy (archive errors, SRM p < srm_p, an arm without units, units seen
    in more than one arm of the phase) -> HOLD
 2. a guardrail significantly worse (whole interval beyond its tolerance in the bad
    direction) with at least `guardrail_min_units` units with data per arm -> NO-GO, even
    before the minimums, to stop harm early
 3. a criterion's metric without usable data (no values in an arm, too few units, zero
    variance, a guardrail below its minimum data) -> HOLD with the reason
 4. minimum units per arm / days (offline: examples) not reached -> HOLD
 5. every success criterion's whole interval beyond its threshold -> GO;
    a success criterion's whole interval short of its threshold -> NO-GO; otherwise HOLD.
Missing data never passes. Online intervals are confidence sequences by default (valid
however often the gate is re-run; `inference: fixed` for one pre-registered look), at
alpha / k within each family of k criteria (Bonferroni; `multiplicity: none` to disable).
"""

from __future__ import annotations

import math
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import msgspec

from evaluation import analysis as an
from evaluation import stats
from evaluation.criteria import Criteria, Criterion
from gateway import metric_catalog as catalog

if TYPE_CHECKING:
    from gateway.config_store import ConfigStore

Verdict = Literal["GO", "NO-GO", "HOLD"]
MetricVerdictName = Literal["met", "short", "inconclusive", "worse", "ok", "missing", "insufficient"]
Role = Literal["success", "guardrail"]
EXIT_CODES: dict[str, int] = {"GO": 0, "NO-GO": 3, "HOLD": 4}


class MetricVerdict(msgspec.Struct, frozen=True):
    metric: str
    role: Role
    direction: str
    effect: str
    threshold: float  # on the lift: +min_effect / -min_effect for success, tolerance for guardrails
    verdict: MetricVerdictName
    estimate: float | None = None  # the lift (absolute or relative as `effect` says)
    low: float | None = None
    high: float | None = None
    p_value: float | None = None
    control_value: float | None = None
    treatment_value: float | None = None
    n_control: int = 0  # units (online) or examples (offline) with a value
    n_treatment: int = 0
    min_value: float | None = None
    units_needed: int | None = None
    note: str = ""
    alpha: float | None = None  # the level this criterion was judged at (after multiplicity)
    definition: str = ""  # what the metric's value is (gateway.metric_catalog)
    coverage_control: float | None = None  # share of the arm's interactions with this metric
    coverage_treatment: float | None = None


class ArmRecord(msgspec.Struct, frozen=True):
    name: str
    model: str | None
    weight: float | None
    units: int
    interactions: int


class Decision(msgspec.Struct, kw_only=True):
    decision_id: str
    verdict: Verdict
    reasons: list[str]
    stage: str
    experiment: str | None
    route: str | None = None
    phase: int | None = None
    config_version: int | None = None
    control: str
    treatment: str
    arms: list[ArmRecord] = []
    srm_p: float | None = None
    srm_threshold: float | None = None
    metrics: list[MetricVerdict] = []
    criteria_path: str | None = None
    criteria_sha256: str | None = None
    data_first_ts: str | None = None
    data_last_ts: str | None = None
    days: float | None = None
    min_units_per_arm: int = 0
    min_days: float = 0.0
    inference: str = ""  # e.g. "sequential (confidence sequence, expected_units 5000)" or "fixed (Welch t)"
    multiplicity: str = ""  # e.g. "bonferroni: success alpha 0.025 (2), guardrails alpha 0.0167 (3)"
    look: int = 0  # this is the n-th online decision recorded for this experiment and phase
    archive_files: int = 0
    archive_corrupt_lines: int = 0
    archive_corrupt_examples: list[str] = []
    warnings: list[str] = []
    decided_by: str = ""
    decided_at: str = ""
    extra: dict[str, Any] = {}

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.verdict]


def new_decision_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"dec-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(3)}"


def _f(x: float) -> float | None:
    return x if x is not None and math.isfinite(x) else None


# --------------------------------------------------------------------------------------
# Per-criterion verdicts (shared with the offline stage)


def judge_success(c: Criterion, estimate: float, low: float, high: float) -> tuple[MetricVerdictName, float]:
    """met / short / inconclusive for a success criterion given its lift CI."""
    if not all(map(math.isfinite, (estimate, low, high))):
        return "missing", c.min_effect
    if c.direction == "increase":
        thr = c.min_effect
        return ("met" if low > thr else "short" if high < thr else "inconclusive"), thr
    thr = -c.min_effect
    return ("met" if high < thr else "short" if low > thr else "inconclusive"), thr


def judge_guardrail(c: Criterion, estimate: float, low: float, high: float) -> tuple[MetricVerdictName, float]:
    """worse when the whole CI is beyond the tolerance in the bad direction, else ok."""
    if not all(map(math.isfinite, (estimate, low, high))):
        return "missing", c.tolerance
    if c.direction == "decrease":  # lower is better: an increase beyond tolerance is harm
        return ("worse" if low > c.tolerance else "ok"), c.tolerance
    return ("worse" if high < -c.tolerance else "ok"), -c.tolerance


def combine(
    *,
    trust_problems: list[str],
    metrics: list[MetricVerdict],
    minimum_problems: list[str],
) -> tuple[Verdict, list[str]]:
    """Apply the decision order to per-metric verdicts; returns (verdict, reasons)."""
    if trust_problems:
        return "HOLD", list(trust_problems)
    worse = [m for m in metrics if m.role == "guardrail" and m.verdict == "worse"]
    if worse:
        return "NO-GO", [f"guardrail {m.metric!r} significantly worse: {_fmt_ci(m)}" for m in worse]
    missing = [m for m in metrics if m.verdict == "missing"]
    reasons = [f"metric {m.metric!r} has no data ({m.note or 'no values in one or both arms'})" for m in missing]
    reasons += [f"metric {m.metric!r} has too little data for a decision ({m.note})"
                for m in metrics if m.verdict == "insufficient"]
    if reasons:
        return "HOLD", reasons
    if minimum_problems:
        return "HOLD", list(minimum_problems)
    success = [m for m in metrics if m.role == "success"]
    short = [m for m in success if m.verdict == "short"]
    if short:
        return "NO-GO", [f"success criterion {m.metric!r} short of its threshold: {_fmt_ci(m)}" for m in short]
    if success and all(m.verdict == "met" for m in success):
        return "GO", [f"every success criterion met ({', '.join(m.metric for m in success)}); no guardrail worse"]
    if not success:
        return "GO", ["no guardrail significantly worse (no success criteria given)"]
    pending = [m for m in success if m.verdict != "met"]
    return "HOLD", [f"success criterion {m.metric!r} not yet conclusive: {_fmt_ci(m)}" for m in pending]


def _fmt_ci(m: MetricVerdict) -> str:
    def g(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.4g}"

    level = f"{1 - m.alpha:.4g} " if m.alpha is not None else ""
    return (f"lift {g(m.estimate)} {level}CI [{g(m.low)}, {g(m.high)}] vs threshold {m.threshold:+.4g} "
            f"({m.effect})")


# --------------------------------------------------------------------------------------
# Online stage


class CriterionFields(TypedDict):
    """The MetricVerdict fields that come from the criterion (online and offline)."""

    metric: str
    role: Role
    direction: str
    effect: str
    min_value: float | None


class _OnlineCriterionFields(CriterionFields):
    alpha: float
    definition: str


class _ArmFields(TypedDict):
    """The MetricVerdict fields that come from the two arms' values."""

    control_value: float | None
    treatment_value: float | None
    n_control: int
    n_treatment: int
    coverage_control: float | None
    coverage_treatment: float | None


def _metric_verdict(a: an.Analysis, crit: Criteria, c: Criterion, role: Role) -> MetricVerdict:
    res = a.metrics.get(c.metric)
    alpha = crit.family_alpha(role)
    base = _OnlineCriterionFields(metric=c.metric, role=role, direction=c.direction, effect=c.effect,
                            min_value=c.min_value, alpha=alpha,
                            definition=catalog.definition(c.metric).meaning)
    thr0 = c.min_effect if role == "success" else c.tolerance
    if res is None or not res.has_data(crit.control) or not res.has_data(crit.treatment):
        arms_missing = [x for x in (crit.control, crit.treatment) if res is None or not res.has_data(x)]
        return MetricVerdict(**base, threshold=thr0, verdict="missing",
                             note=f"no values in arm(s) {', '.join(arms_missing)}")
    cs, ts = res.arms[crit.control], res.arms[crit.treatment]
    common = _ArmFields(control_value=_f(cs.mean), treatment_value=_f(ts.mean), n_control=cs.units,
                        n_treatment=ts.units, coverage_control=_f(cs.coverage), coverage_treatment=_f(ts.coverage))
    comp = a.compare(c.metric, crit.treatment, c.effect, alpha) if crit.treatment in res.lifts else None
    if comp is None or not math.isfinite(comp.estimate) or not math.isfinite(comp.low):
        if role == "guardrail" and cs.sd == 0 and ts.sd == 0 and cs.mean == ts.mean \
                and min(cs.units, ts.units) >= crit.guardrail_min_units:
            # e.g. no errors at all in either arm: nothing varies, so nothing got worse.
            return MetricVerdict(**base, **common, threshold=thr0, verdict="ok", estimate=0.0,
                                 note=f"no variation: every unit has {cs.mean:g} in both arms")
        why = comp.note if comp is not None and comp.note else "too few units for an interval"
        return MetricVerdict(**base, **common, threshold=thr0, verdict="insufficient", note=why)
    judge = judge_success if role == "success" else judge_guardrail
    verdict, thr = judge(c, comp.estimate, comp.low, comp.high)
    note = ""
    if role == "guardrail" and min(cs.units, ts.units) < crit.guardrail_min_units:
        # Too little data for a guardrail to stop anything (a latency spike on 2 units is
        # not harm) -- and too little to call it ok.
        verdict = "insufficient"
        note = (f"{min(cs.units, ts.units)} units with data in an arm < guardrail_min_units "
                f"{crit.guardrail_min_units}")
    if role == "success" and c.min_value is not None and verdict == "met":
        # Floor on the treatment's own value: its interval must clear the floor too.
        se = ts.sd / math.sqrt(ts.units) if ts.units > 1 and math.isfinite(ts.sd) else math.nan
        if not (math.isfinite(se) and se > 0):
            verdict = "inconclusive"
        else:
            if a.method == "sequential":
                hw = stats.sequential_halfwidth(se, ts.units, alpha, stats.sequential_rho(alpha, a.tuning))
            else:
                hw = stats.z_crit(alpha) * se
            lo, hi = ts.mean - hw, ts.mean + hw
            if c.direction == "increase":
                verdict = "met" if lo >= c.min_value else "short" if hi < c.min_value else "inconclusive"
            else:
                verdict = "met" if hi <= c.min_value else "short" if lo > c.min_value else "inconclusive"
    needed = an.units_needed(res, crit.control, crit.treatment, c.min_effect, c.effect, alpha, crit.power,
                             method=a.method, tuning=a.tuning) if role == "success" else None
    return MetricVerdict(**base, **common, threshold=thr, verdict=verdict, estimate=comp.estimate, low=comp.low,
                         high=comp.high, p_value=_f(comp.p_value), units_needed=needed, note=note)


def count_looks(state_dir: Path, experiment: str | None, phase: int | None) -> int:
    """Online decisions already recorded for this experiment and phase (the looks so far)."""
    n = 0
    for p in (state_dir / "decisions").glob("*.json"):
        try:
            rec = msgspec.json.decode(p.read_bytes())
        except (OSError, msgspec.DecodeError):
            continue
        if isinstance(rec, dict) and rec.get("stage") == "online" and rec.get("experiment") == experiment \
                and rec.get("phase") == phase:
            n += 1
    return n


def inference_text(crit: Criteria) -> str:
    if crit.inference == "sequential":
        return (f"sequential: asymptotic confidence sequence (Waudby-Smith et al.; as gbstats), valid at any "
                f"number of looks, tuned for expected_units {crit.expected_units}")
    return "fixed: Welch t intervals for one pre-registered look (re-running the gate inflates errors)"


def multiplicity_text(crit: Criteria) -> str:
    if crit.multiplicity == "none":
        return f"none: every criterion at alpha {crit.alpha:.4g}"
    return (f"bonferroni within each family: success alpha {crit.family_alpha('success'):.4g} "
            f"({len(crit.success)} criteria), guardrails alpha {crit.family_alpha('guardrail'):.4g} "
            f"({len(crit.guardrails)})")


def decide_online(
    crit: Criteria,
    state_dir: Path,
    *,
    store: ConfigStore | None = None,
    criteria_path: str | None = None,
    criteria_sha256: str | None = None,
    decided_by: str = "",
    analysis: an.Analysis | None = None,
    guardrails_only: bool = False,
    phase: int | None = None,
) -> Decision:
    """Run the analysis for the criteria's experiment and decide. `guardrails_only` is the
    rollout check: trust + guardrails, no minimums or success criteria."""
    assert crit.experiment is not None
    decision_id = new_decision_id()
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        a = analysis or an.analyze(
            state_dir, crit.experiment, phase=phase if phase is not None else crit.phase, control=crit.control,
            metrics=crit.metrics, expected_weights=crit.expected_weights, store=store, alpha=crit.alpha,
            method=crit.inference, tuning=float(crit.expected_units),
        )
    except an.AnalysisError as e:
        return Decision(decision_id=decision_id, verdict="HOLD", reasons=[f"no data: {e}"], stage="online",
                        experiment=crit.experiment, route=crit.route, control=crit.control,
                        treatment=crit.treatment, criteria_path=criteria_path, criteria_sha256=criteria_sha256,
                        decided_by=decided_by, decided_at=now, inference=inference_text(crit),
                        multiplicity=multiplicity_text(crit))
    trust: list[str] = []
    if not a.archive.ok:
        where = "; ".join(f"{e.path}:{e.line}" for e in a.archive.examples[:5])
        trust.append(f"archive has {a.archive.corrupt_lines} unreadable line(s) ({where})")
    for arm in (crit.control, crit.treatment):
        s = a.arm(arm)
        if s is None or s.units == 0:
            trust.append(f"arm {arm!r} has no units in phase {a.phase}")
    if a.srm is None:
        trust.append("sample-ratio mismatch could not be tested (no expected weights)")
    elif not (a.srm.p_value >= crit.srm_p):
        trust.append(f"sample-ratio mismatch: p = {a.srm.p_value:.3g} < {crit.srm_p} (units {a.srm.observed})")
    if a.units_in_multiple_arms:
        trust.append(f"{a.units_in_multiple_arms} unit(s) seen in more than one arm in phase {a.phase}: assignment "
                     "changed without a new phase, the arms are not comparable")
    metrics = [_metric_verdict(a, crit, c, "guardrail") for c in crit.guardrails]
    if not guardrails_only:
        metrics = [_metric_verdict(a, crit, c, "success") for c in crit.success] + metrics
    minimums: list[str] = []
    if not guardrails_only:
        for arm in (crit.control, crit.treatment):
            s = a.arm(arm)
            n = s.units if s else 0
            if n < crit.min_units_per_arm:
                minimums.append(f"arm {arm!r} has {n} units < min_units_per_arm {crit.min_units_per_arm}")
        if a.days < crit.min_days:
            minimums.append(f"{a.days:.2f} days of data < min_days {crit.min_days}")
    verdict, reasons = combine(trust_problems=trust, metrics=metrics, minimum_problems=minimums)
    if guardrails_only and verdict == "GO":
        reasons = ["guardrails ok"]
    version = a.config_versions[-1] if a.config_versions else None
    return Decision(
        decision_id=decision_id, verdict=verdict, reasons=reasons, stage="online", experiment=a.experiment,
        route=crit.route or a.route, phase=a.phase, config_version=version, control=crit.control,
        treatment=crit.treatment,
        arms=[ArmRecord(s.name, ", ".join(s.models) or None, s.expected_weight, s.units, s.interactions) for s in a.arms],
        srm_p=_f(a.srm.p_value) if a.srm else None, srm_threshold=crit.srm_p, metrics=metrics,
        criteria_path=criteria_path, criteria_sha256=criteria_sha256, data_first_ts=a.first_ts,
        data_last_ts=a.last_ts, days=a.days, min_units_per_arm=crit.min_units_per_arm, min_days=crit.min_days,
        inference=inference_text(crit), multiplicity=multiplicity_text(crit),
        look=count_looks(state_dir, a.experiment, a.phase) + 1,
        archive_files=a.archive.files, archive_corrupt_lines=a.archive.corrupt_lines,
        archive_corrupt_examples=[f"{e.path}:{e.line}: {e.error}" for e in a.archive.examples],
        warnings=list(a.warnings), decided_by=decided_by, decided_at=now,
        extra={"guardrails_only": True} if guardrails_only else {},
    )
