"""Gate criteria files (YAML) for both stages; schema as DESIGN.md "Gate criteria".

online:  experiment + control/treatment arms, metrics from the archive.
offline: baseline/candidate eval runs (run id or path under <state>/evals), metrics from
         the eval summaries; `min_value` is an absolute floor on the candidate
         (seed 001: accuracy >= 0.85), `min_examples` the offline analogue of min units.

Thresholds: `min_effect` (success) and `tolerance` (guardrails) are measured on the
lift named by `effect`: absolute = treatment - control, relative = (t - c) / c.

Online decisions are safe to re-run every day by default: `inference: sequential`
(confidence sequences tuned for `expected_units`), Bonferroni within the success family
and within the guardrail family, and minimum data before anything is decided.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

from gateway.config import yaml_error_message

Direction = Literal["increase", "decrease"]
Effect = Literal["absolute", "relative"]
Inference = Literal["sequential", "fixed"]
Multiplicity = Literal["bonferroni", "none"]

DEFAULT_MIN_UNITS_PER_ARM = 100
DEFAULT_MIN_DAYS = 7.0  # a full week: weekday/weekend cycles
DEFAULT_GUARDRAIL_MIN_UNITS = 30  # units with data per arm before a guardrail may stop anything
DEFAULT_EXPECTED_UNITS = 5000  # gbstats' default sequential tuning parameter


class CriteriaError(ValueError):
    """An invalid criteria file; `field` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        self.field, self.message = field, message
        super().__init__(f"{field}: {message}" if field else message)


class Criterion(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    metric: str
    direction: Direction
    effect: Effect = "absolute"
    min_effect: float = 0.0  # success: the lift must be at least this (whole CI)
    tolerance: float = 0.0  # guardrail: worsening allowed before it counts as worse
    min_value: float | None = None  # absolute floor on the treatment/candidate value


class Criteria(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    stage: Literal["online", "offline"] = "online"
    experiment: str | None = None
    route: str | None = None  # where --apply acts; default: the route running `experiment`
    phase: int | None = None  # default: the latest phase in the archive
    control: str = "control"
    treatment: str = "treatment"
    alpha: float = 0.05
    power: float = 0.8
    # sequential: valid at any number of looks (re-run the gate daily); fixed: one
    # pre-registered look at the planned end (Welch t intervals)
    inference: Inference = "sequential"
    expected_units: int = DEFAULT_EXPECTED_UNITS  # total units in both arms at the planned end
    multiplicity: Multiplicity = "bonferroni"  # within success and within guardrails
    min_units_per_arm: int = DEFAULT_MIN_UNITS_PER_ARM
    min_days: float = DEFAULT_MIN_DAYS
    guardrail_min_units: int = DEFAULT_GUARDRAIL_MIN_UNITS
    srm_p: float = 0.001
    expected_weights: dict[str, float] | None = None
    success: tuple[Criterion, ...] = ()
    guardrails: tuple[Criterion, ...] = ()
    # offline stage
    baseline: str | None = None
    candidate: str | None = None
    min_examples: int = 0
    # offline stage: how success criteria and floors are judged. "ci" (default): the whole
    # confidence interval must clear the threshold. "point": the point estimate must (seed
    # 001's reading of ">= 10% improvement, >= 85% accuracy"); guardrails stay CI-based.
    decide_on: Literal["ci", "point"] = "ci"

    def family_alpha(self, role: str) -> float:
        """Per-criterion alpha: Bonferroni within the success family and within the
        guardrail family, so adding a guardrail does not inflate false NO-GO."""
        k = len(self.success) if role == "success" else len(self.guardrails)
        return self.alpha / k if self.multiplicity == "bonferroni" and k > 1 else self.alpha

    @property
    def metrics(self) -> list[str]:
        seen: dict[str, None] = {}
        for c in (*self.success, *self.guardrails):
            seen.setdefault(c.metric, None)
        return list(seen)


def _field_of(err: msgspec.ValidationError) -> str:
    msg = str(err)
    if "`$." in msg:
        return msg.split("`$.", 1)[1].rstrip("`").replace("[", ".").replace("]", "")
    if "`$[" in msg:
        return msg.split("`$", 1)[1].rstrip("`")
    return ""


def validate(raw: Any) -> Criteria:
    if not isinstance(raw, dict):
        raise CriteriaError("", "criteria must be a YAML mapping")
    try:
        crit = msgspec.convert(raw, Criteria, strict=False)
    except msgspec.ValidationError as e:
        raise CriteriaError(_field_of(e), str(e).split(" - at ", 1)[0]) from None
    if not 0 < crit.alpha < 1:
        raise CriteriaError("alpha", f"must be between 0 and 1, got {crit.alpha}")
    if not 0 < crit.power < 1:
        raise CriteriaError("power", f"must be between 0 and 1, got {crit.power}")
    if not 0 <= crit.srm_p < 1:
        raise CriteriaError("srm_p", f"must be in [0, 1), got {crit.srm_p}")
    for name in ("min_units_per_arm", "min_days", "min_examples", "guardrail_min_units"):
        if getattr(crit, name) < 0:
            raise CriteriaError(name, "minimums must be >= 0")
    if crit.expected_units < 2:
        raise CriteriaError("expected_units", f"must be >= 2 (total units expected in both arms), got {crit.expected_units}")
    if crit.control == crit.treatment:
        raise CriteriaError("treatment", "control and treatment must be different arms")
    if crit.decide_on != "ci" and crit.stage != "offline":
        raise CriteriaError("decide_on", "only the offline stage can decide on point estimates")
    if crit.stage == "offline":
        for name in ("baseline", "candidate"):
            if not getattr(crit, name):
                raise CriteriaError(name, "required for stage: offline (an eval run id or path)")
    if not crit.success and not crit.guardrails:
        raise CriteriaError("success", "at least one success criterion or guardrail is required")
    for section in ("success", "guardrails"):
        for i, c in enumerate(getattr(crit, section)):
            if c.min_effect < 0:
                raise CriteriaError(f"{section}.{i}.min_effect", "must be >= 0 (direction says which way)")
            if c.tolerance < 0:
                raise CriteriaError(f"{section}.{i}.tolerance", "must be >= 0")
    if crit.expected_weights is not None:
        if any(w < 0 for w in crit.expected_weights.values()) or sum(crit.expected_weights.values()) <= 0:
            raise CriteriaError("expected_weights", "weights must be >= 0 and sum to a positive number")
    return crit


def parse(text: str) -> Criteria:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CriteriaError("", yaml_error_message(e)) from None
    return validate(raw)


def load(path: Path) -> tuple[Criteria, str]:
    """The criteria and the sha256 of the file's bytes (recorded in every decision)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CriteriaError("", f"cannot read criteria file {path}: {e.strerror}") from None
    return parse(data.decode("utf-8")), hashlib.sha256(data).hexdigest()
