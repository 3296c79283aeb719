"""What every metric means, written once: its values, how it is aggregated and analysed.

Used by the feedback API (which values are accepted), the Prometheus metrics (which
outcomes a value counts as), the online analysis (per-unit mean or ratio), the decision
record and the docs. The gateway owns it because the gateway validates feedback and must
not import evaluation; evaluation and training import it from here.

Two aggregations, both with units (not interactions) as the independent observations:

- ``unit_mean``: each unit's value is the mean over its interactions (interaction
  metrics: error, latency, tokens, cost) or its share of interactions with the event
  (count metrics: edited_response, followup, policy_violation: no event = 0 for that
  interaction, but an arm with no event of the metric at all has no data). Compared with
  Welch's t-test on the per-unit values; relative lifts by the delta method.
- ``ratio``: sum of values / number of interactions with that feedback, per arm (thumbs,
  approved, csat, review.<field>, custom metrics): a ratio of per-unit sums with
  unit-level delta-method variances. "units" counts units with at least one value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Aggregation = Literal["unit_mean", "ratio"]
Source = Literal["interaction", "feedback"]
ValueType = Literal["thumbs", "boolean", "text", "score", "review", "number"]


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    source: Source
    aggregation: Aggregation
    value_type: ValueType
    count: bool  # feedback whose absence on an interaction means 0 (an event-count metric)
    meaning: str  # one line: what a unit's / arm's value is


INTERACTION_METRICS: tuple[MetricDef, ...] = (
    MetricDef("error", "interaction", "unit_mean", "number", False, "share of the unit's interactions that failed"),
    MetricDef("latency_ms", "interaction", "unit_mean", "number", False, "the unit's mean latency (ms)"),
    MetricDef("ttft_ms", "interaction", "unit_mean", "number", False, "the unit's mean time to first token (ms)"),
    MetricDef("prompt_tokens", "interaction", "unit_mean", "number", False, "the unit's mean prompt tokens"),
    MetricDef("completion_tokens", "interaction", "unit_mean", "number", False, "the unit's mean completion tokens"),
    MetricDef("cost_usd", "interaction", "unit_mean", "number", False, "the unit's mean cost per interaction (USD)"),
)

FEEDBACK_METRICS: tuple[MetricDef, ...] = (
    MetricDef("thumbs", "feedback", "ratio", "thumbs", False, "share of thumbs-rated interactions rated +1"),
    MetricDef("approved", "feedback", "ratio", "boolean", False, "share of reviewed interactions approved"),
    MetricDef("csat", "feedback", "ratio", "score", False, "mean csat (1-5) over interactions with a csat"),
    MetricDef("review", "feedback", "ratio", "review", False,
              "review.<field>: mean score over interactions with a review"),
    MetricDef("edited_response", "feedback", "unit_mean", "text", True,
              "share of the unit's interactions whose answer was edited"),
    MetricDef("followup", "feedback", "unit_mean", "boolean", True,
              "share of the unit's interactions with a follow-up"),
    MetricDef("policy_violation", "feedback", "unit_mean", "boolean", True,
              "share of the unit's interactions flagged as a policy violation"),
)

CATALOG: dict[str, MetricDef] = {m.name: m for m in (*INTERACTION_METRICS, *FEEDBACK_METRICS)}
BUILTIN_FEEDBACK: tuple[str, ...] = tuple(m.name for m in FEEDBACK_METRICS)
INTERACTION_NAMES: tuple[str, ...] = tuple(m.name for m in INTERACTION_METRICS)
COUNT_METRICS: tuple[str, ...] = tuple(m.name for m in FEEDBACK_METRICS if m.count)
REVIEW_SCORES: tuple[str, ...] = ("factuality", "helpfulness", "tone", "policy", "completeness", "overall")
REVIEW_FIELDS: tuple[str, ...] = (*REVIEW_SCORES, "quality")
THUMBS_VALUES: tuple[int, ...] = (1, -1)  # the only values the API accepts; +1 counts as 1, -1 as 0


def definition(name: str) -> MetricDef:
    """The definition of a metric as the analysis sees it (review.<field> and custom
    metrics are ratio metrics over the interactions that have them)."""
    if name in CATALOG:
        return CATALOG[name]
    if name.startswith("review."):
        return MetricDef(name, "feedback", "ratio", "score", False,
                         f"mean {name.split('.', 1)[1]} over interactions with a review")
    return MetricDef(name, "feedback", "ratio", "number", False, f"mean {name} over interactions with it")


def aggregation(name: str) -> Aggregation:
    return definition(name).aggregation


_OUTCOMES: dict[str, tuple[str, ...]] = {
    "thumbs": ("positive", "negative"), "boolean": ("positive", "negative"), "text": ("positive",),
    "score": ("value",), "review": ("value",), "number": ("value",),
}


def outcomes(name: str) -> tuple[str, ...]:
    """The `abgate_feedback_total` outcomes a built-in feedback metric can produce."""
    return _OUTCOMES[definition(name).value_type]


def feedback_outcome(metric: str, value: Any) -> tuple[str, float | None]:
    """Map a feedback value to (outcome label, number added to the value sum).

    positive/negative: thumbs +1/-1, booleans true/false ("the flag is set", e.g. a policy
    violation is `positive`), an edit was submitted (`edited_response`); value: numeric
    feedback (csat, float custom metrics, review -> its `overall`); neutral: anything else.
    The analysis reads values the same way (evaluation/analysis.py `_VALUE_SQL`).
    """
    if isinstance(value, bool):
        return ("positive" if value else "negative"), (1.0 if value else 0.0)
    if metric == "thumbs" and isinstance(value, int | float):
        return ("positive" if value > 0 else "negative"), (1.0 if value > 0 else 0.0)
    if isinstance(value, int | float):
        return "value", float(value)
    if metric == "edited_response" and isinstance(value, str):
        return "positive", 1.0
    if isinstance(value, Mapping):
        overall = value.get("overall")
        if isinstance(overall, int | float) and not isinstance(overall, bool):
            return "value", float(overall)
    return "neutral", None
