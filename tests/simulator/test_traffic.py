"""Simulated user feedback rates follow answer quality; choices are seeded."""

from __future__ import annotations

import random

from simulator import model, prompts, tasks
from simulator.traffic import default_kind, feedback_for

BASE = "gpt-4o-mini-2024-07-18"
FT = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
WORSE = "gpt-4o-mini-worse"


def _rates(m: str, n: int = 1500) -> dict[str, float]:
    counts = {"up": 0, "thumbs": 0, "edit": 0, "followup": 0, "violation": 0, "approved": 0, "approvals": 0,
              "csat_sum": 0, "csat": 0}
    for i in range(n):
        rng = random.Random(f"7:{i}")
        p = prompts.make("support", rng)
        answer = model.answer(m, p.messages[0]["content"], p.messages[1]["content"])
        for metric, value, _source in feedback_for(p.task, answer, rng, category=p.category):
            if metric == "thumbs":
                counts["thumbs"] += 1
                counts["up"] += value == 1
            elif metric == "edited_response":
                counts["edit"] += 1
                assert value == p.task.ideal  # the correction is the right answer
            elif metric == "followup":
                counts["followup"] += value
            elif metric == "policy_violation":
                counts["violation"] += value
            elif metric == "approved":
                counts["approvals"] += 1
                counts["approved"] += value
            elif metric == "csat":
                assert 1 <= value <= 5
                counts["csat_sum"] += value
                counts["csat"] += 1
            elif metric == "review":
                assert {"factuality", "helpfulness", "tone", "policy", "completeness", "overall"} <= set(value)
                assert all(1 <= value[k] <= 5 for k in ("factuality", "overall")) and 1 <= value["quality"] <= 10
    return {"up": counts["up"] / counts["thumbs"], "edit": counts["edit"] / n, "followup": counts["followup"] / n,
            "violation": counts["violation"] / n, "approved": counts["approved"] / counts["approvals"],
            "csat": counts["csat_sum"] / counts["csat"]}


def test_feedback_favours_the_better_model() -> None:
    base, ft, worse = _rates(BASE), _rates(FT), _rates(WORSE)
    assert ft["up"] > base["up"] + 0.08 > worse["up"] + 0.16
    assert ft["edit"] < base["edit"] - 0.05
    assert ft["approved"] > base["approved"] + 0.05
    assert ft["csat"] > base["csat"] + 0.2
    assert ft["followup"] < base["followup"]
    assert worse["violation"] > 3 * max(base["violation"], 0.01)


def test_feedback_is_deterministic_for_a_seed() -> None:
    p = prompts.make("support", random.Random(1))
    a = feedback_for(p.task, p.task.wrong, random.Random("s:1"))
    b = feedback_for(p.task, p.task.wrong, random.Random("s:1"))
    assert a == b


def test_default_task_kind_from_route_name() -> None:
    assert default_kind("support") == "support"
    assert default_kind("intent-classifier") == "intent"
    assert default_kind("sigma-analyst") == "analyst"
    assert default_kind("chat") == "mixed"
    assert tasks.detect("", "hello").kind == "generic"
