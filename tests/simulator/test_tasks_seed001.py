"""Seed 001 in the simulator and the example's data: the seed's own example query gets the JSON
answer; the test set carries edge and ambiguous cases with unchanged labels."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

from simulator import model, tasks

SEED_QUERY = "Busco algo especial para mi madre en su cumpleaños, presupuesto medio"
ROOT = Path(__file__).resolve().parents[2]


def test_the_seed_example_query_is_answered_with_its_json() -> None:
    label = tasks.understand_intent(SEED_QUERY)
    assert label.answer() == {"intent_type": "GIFT", "category": "unspecified", "budget_tier": "mid_range",
                              "recipient": "mother", "context_tags": ["gift", "birthday"],
                              "priority_features": ["thoughtful", "gift_wrapping", "memorable"]}
    out = json.loads(model.answer("ft:gpt-4o-mini-2024-07-18:acme:intent:x", tasks.INTENT_SYSTEM_PROMPT, SEED_QUERY))
    assert set(out) == {"intent_type", "category", "budget_tier", "recipient", "context_tags", "priority_features"}
    # any query under the intent prompt gets the JSON shape, even one without a known cue
    assert tasks.detect(tasks.INTENT_SYSTEM_PROMPT, "Hola, ¿qué tal?").kind == "intent"


def test_generated_queries_keep_their_labels() -> None:
    # the generator's cues still decide: the aliases never change a generated query's label
    from simulator import intent_data

    for e in intent_data.generate(200, seed=5):
        assert tasks.understand_intent(e.query) == e.label


def test_the_test_set_has_edge_and_ambiguous_cases(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen001", ROOT / "examples/intent-classification/generate_data.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    gen.generate(tmp_path, train=400, validation=10, test=100, gate_test=0, seed=1)
    rows = [json.loads(x) for x in (tmp_path / "test.jsonl").read_text().splitlines()]
    cases = Counter(r["case"].split(":")[0] for r in rows)
    assert cases["edge"] >= 10 and cases["ambiguous"] >= 6 and cases["standard"] >= 60
    assert Counter(r["category"] for r in rows) == {i: 20 for i in tasks.INTENTS}  # still balanced
    for r in rows:
        assert tasks.classify_intent(r["messages"][1]["content"]).answer() == json.loads(r["messages"][-1]["content"])
