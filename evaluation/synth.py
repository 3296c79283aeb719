"""Seeded synthetic archives with known answers, for tests, the demo and the benchmark.

Each arm has its own true rates; units are assigned by weight (or by explicit counts to
simulate a broken split), interactions are spread over `days`, and feedback is written
as real `gateway.events` Structs through `gateway.archive.ArchiveWriter`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypedDict

from gateway import events as ev
from gateway.archive import ArchiveWriter


@dataclass(frozen=True, slots=True)
class ArmSpec:
    name: str
    model: str
    weight: float = 0.5
    error_rate: float = 0.01
    latency_ms: float = 800.0
    feedback_rate: float = 0.6  # share of interactions with approved/thumbs/csat feedback
    approved: float = 0.6
    thumbs_up: float = 0.7
    csat: float = 3.8
    edit_rate: float = 0.2
    followup_rate: float = 0.1
    policy_rate: float = 0.01
    custom: dict[str, float] = field(default_factory=dict)  # boolean custom metric -> rate


@dataclass(frozen=True, slots=True)
class Scenario:
    experiment: str = "support-ft-2"
    route: str = "support"
    arms: tuple[ArmSpec, ...] = ()
    units: int = 1000
    interactions_per_unit: int = 3
    days: float = 15.0
    phase: int = 1
    config_version: int = 1
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    seed: int = 0
    unit_counts: dict[str, int] | None = None  # explicit units per arm (broken split)
    skip_metrics: tuple[str, ...] = ()  # never emit these feedback metrics
    eval_interactions: int = 0  # pinned eval traffic (must be ignored)
    anonymous_interactions: int = 0  # no unit (must be ignored)


class _ExperimentFields(TypedDict):
    """The event fields every synthetic event shares."""

    tenant: str
    route: str
    experiment: str
    phase: int
    config_version: int


def _ts(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def generate(state_dir: Path, sc: Scenario) -> int:
    """Write the scenario's events; returns the number of events written."""
    rng = random.Random(sc.seed)
    writer = ArchiveWriter(state_dir, writer=f"synth-{sc.seed}")
    if sc.unit_counts:
        assignment = [a for a in sc.arms for _ in range(sc.unit_counts.get(a.name, 0))]
        rng.shuffle(assignment)
    else:
        weights = [a.weight for a in sc.arms]
        assignment = rng.choices(list(sc.arms), weights=weights, k=sc.units)
    span = timedelta(days=sc.days)
    batch: list[ev.Event] = []
    total = 0
    common = _ExperimentFields(tenant="default", route=sc.route, experiment=sc.experiment, phase=sc.phase,
                               config_version=sc.config_version)

    def flush() -> None:
        nonlocal total, batch
        total += writer.write(sorted(batch, key=lambda e: e.ts), fsync=False)
        batch = []

    def interaction(arm: ArmSpec, unit: str | None, traffic: ev.Traffic, t: datetime) -> str:
        iid = f"ix-{rng.getrandbits(64):016x}"
        failed = rng.random() < arm.error_rate
        batch.append(
            ev.Interaction(
                event_id=ev.new_event_id(), ts=_ts(t), arm=arm.name, interaction_id=iid, unit=unit,
                traffic=traffic, model=arm.model, stream=False, status="upstream_error" if failed else "ok",
                http_status=502 if failed else 200, latency_ms=max(1.0, rng.gauss(arm.latency_ms, arm.latency_ms * 0.3)),
                prompt_tokens=rng.randint(50, 150), completion_tokens=rng.randint(20, 200),
                cost_usd=rng.random() * 1e-4, **common,
            )
        )
        return iid

    def feedback(arm: ArmSpec, iid: str, unit: str | None, metric: str, value: object, t: datetime) -> None:
        if metric in sc.skip_metrics:
            return
        batch.append(
            ev.Feedback(event_id=ev.new_event_id(), ts=_ts(t), arm=arm.name, interaction_id=iid, unit=unit,
                        metric=metric, value=value, **common)
        )

    for u, arm in enumerate(assignment):
        unit = f"u{sc.seed}-{u:08d}"
        for _ in range(sc.interactions_per_unit):
            t = sc.start + span * rng.random()
            iid = interaction(arm, unit, "live", t)
            ft = t + timedelta(seconds=30)
            if rng.random() < arm.feedback_rate:
                feedback(arm, iid, unit, "approved", rng.random() < arm.approved, ft)
                feedback(arm, iid, unit, "thumbs", 1 if rng.random() < arm.thumbs_up else -1, ft)
                csat = min(5, max(1, round(rng.gauss(arm.csat, 0.8))))
                feedback(arm, iid, unit, "csat", csat, ft)
                for name, rate in arm.custom.items():
                    feedback(arm, iid, unit, name, rng.random() < rate, ft)
            if rng.random() < arm.edit_rate:
                feedback(arm, iid, unit, "edited_response", "a corrected answer", ft)
            if rng.random() < arm.followup_rate:
                feedback(arm, iid, unit, "followup", True, ft)
            if rng.random() < arm.policy_rate:
                feedback(arm, iid, unit, "policy_violation", True, ft)
        if len(batch) > 50_000:
            flush()
    for i in range(sc.eval_interactions):
        arm = sc.arms[-1]
        t = sc.start + span * rng.random()
        iid = interaction(arm, f"eval-{i}", "eval", t)
        feedback(arm, iid, f"eval-{i}", "approved", False, t)
    for _ in range(sc.anonymous_interactions):
        arm = sc.arms[0]
        t = sc.start + span * rng.random()
        iid = interaction(arm, None, "live", t)
        feedback(arm, iid, None, "approved", False, t)
    flush()
    return total
