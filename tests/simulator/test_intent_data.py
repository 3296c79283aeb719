"""Seed 001 Spanish intent data generator: exact distributions, distinct queries, recoverable labels."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from simulator import intent_data, tasks


def test_training_set_has_the_seed_distributions_exactly() -> None:
    train = intent_data.training_set(400, seed=1)
    assert len(train) == 400
    assert Counter(e.label.intent_type for e in train) == {"GIFT": 180, "PERSONAL_USE": 100, "BUSINESS": 40,
                                                           "COMPARISON": 40, "URGENT": 40}
    assert Counter(e.label.budget_tier for e in train) == {"mid_range": 200, "economic": 80, "premium": 80,
                                                           "unspecified": 40}
    assert len({e.query for e in train}) == 400


def test_test_set_is_balanced_and_disjoint_from_training() -> None:
    train = intent_data.training_set(400, seed=1)
    test = intent_data.test_set(100, seed=2, exclude=train)
    assert set(Counter(e.label.intent_type for e in test).values()) == {20}
    assert set(Counter(e.label.budget_tier for e in test).values()) == {25}
    assert not {e.query for e in test} & {e.query for e in train}


def test_generation_is_deterministic_and_seed_dependent() -> None:
    assert [e.query for e in intent_data.generate(50, seed=3)] == [e.query for e in intent_data.generate(50, seed=3)]
    assert [e.query for e in intent_data.generate(50, seed=3)] != [e.query for e in intent_data.generate(50, seed=4)]


def test_every_label_is_recoverable_from_its_query() -> None:
    for ex in intent_data.generate(500, seed=9):
        assert tasks.classify_intent(ex.query) == ex.label
        if ex.label.intent_type == "GIFT":
            assert ex.label.recipient != "unspecified"


def test_jsonl_is_openai_chat_format() -> None:
    text = intent_data.to_jsonl(intent_data.generate(12, seed=1))
    lines = text.splitlines()
    assert len(lines) == 12
    for line in lines:
        rec = json.loads(line)
        roles = [m["role"] for m in rec["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert json.loads(rec["messages"][2]["content"])["intent_type"] in tasks.INTENTS


@pytest.mark.parametrize(("n", "shares", "want"), [
    (7, {"a": 0.5, "b": 0.5}, {"a": 4, "b": 3}),
    (10, {"a": 1, "b": 1, "c": 1}, {"a": 4, "b": 3, "c": 3}),
    (0, {"a": 1.0}, {"a": 0}),
])
def test_exact_counts_sum_to_n(n: int, shares: dict[str, float], want: dict[str, int]) -> None:
    assert intent_data.exact_counts(n, shares) == want
