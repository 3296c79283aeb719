"""Spanish product-query generator for seed 001 (intent classification), labelled through `tasks`.

Training sets follow the seed's distributions exactly (intents 45/25/10/10/10 %, budgets
50/20/20/10 %); test sets are balanced. Every query carries exactly one intent cue and at most one
budget cue from `simulator.tasks`, so `tasks.classify_intent(query)` recovers its label.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from simulator import tasks

TRAIN_INTENTS: dict[str, float] = {"GIFT": 0.45, "PERSONAL_USE": 0.25, "BUSINESS": 0.10, "COMPARISON": 0.10,
                                   "URGENT": 0.10}
TRAIN_BUDGETS: dict[str, float] = {"mid_range": 0.50, "economic": 0.20, "premium": 0.20, "unspecified": 0.10}
BALANCED_INTENTS = {i: 1 / len(tasks.INTENTS) for i in tasks.INTENTS}
BALANCED_BUDGETS = {b: 1 / len(tasks.BUDGETS) for b in tasks.BUDGETS}

_TEMPLATES: tuple[str, ...] = (
    "{cue}: {product}{rec}{occ}{bud}",
    "Hola, {cue}, estoy mirando {product}{rec}{occ}{bud}",
    "{product_cap}{rec}{occ}, {cue}{bud}",
    "Necesito ayuda: {cue} y pienso en {product}{rec}{occ}{bud}",
    "¿Qué me recomiendas? {cue_cap}, {product}{rec}{occ}{bud}",
)


@dataclass(frozen=True, slots=True)
class IntentExample:
    query: str
    label: tasks.IntentLabel

    def chat(self) -> dict[str, object]:
        """The OpenAI fine-tuning / eval record: system prompt, query, ideal JSON answer."""
        return {"messages": [{"role": "system", "content": tasks.INTENT_SYSTEM_PROMPT},
                             {"role": "user", "content": self.query},
                             {"role": "assistant", "content": self.label.answer_json()}]}


def exact_counts(n: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Largest-remainder rounding: counts summing to n, each within one of n * share."""
    total = sum(shares.values())
    if n < 0 or total <= 0:
        raise ValueError("n must be >= 0 and shares must sum to a positive number")
    raw = {k: n * v / total for k, v in shares.items()}
    counts = {k: int(r) for k, r in raw.items()}
    for k in sorted(raw, key=lambda k: (counts[k] - raw[k], k))[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def make_query(rng: random.Random, intent: str, budget: str) -> IntentExample:
    cue = rng.choice(tasks.INTENT_CUES[intent])
    product = rng.choice(sorted(tasks.PRODUCTS))
    rec = occ = ""
    if intent == "GIFT":
        rec = " " + rng.choice(sorted(tasks.RECIPIENTS))
        occ_cue = rng.choice(sorted(tasks.OCCASIONS))
        occ = f" {occ_cue}" if occ_cue else ""
    bud_cues = tasks.BUDGET_CUES[budget]
    bud = f", {rng.choice(bud_cues)}" if bud_cues else ""
    template = rng.choice(_TEMPLATES)
    query = template.format(cue=cue, cue_cap=_cap(cue), product=product, product_cap=_cap(product), rec=rec, occ=occ,
                            bud=bud)
    label = tasks.classify_intent(query)
    # the generator and the simulator share one lexicon; a mismatch here is a lexicon bug
    assert label is not None and label.intent_type == intent and label.budget_tier == budget, query
    return IntentExample(query, label)


def generate(n: int, seed: int = 0, intents: Mapping[str, float] = TRAIN_INTENTS,
             budgets: Mapping[str, float] = TRAIN_BUDGETS, exclude: set[str] | None = None) -> list[IntentExample]:
    """`n` distinct queries with exact intent and budget counts, shuffled deterministically."""
    rng = random.Random(seed)
    intent_list = [i for i, c in exact_counts(n, intents).items() for _ in range(c)]
    budget_list = [b for b, c in exact_counts(n, budgets).items() for _ in range(c)]
    rng.shuffle(intent_list)
    rng.shuffle(budget_list)
    seen = set(exclude or ())
    out: list[IntentExample] = []
    for intent, budget in zip(intent_list, budget_list):
        for _ in range(1000):
            ex = make_query(rng, intent, budget)
            if ex.query not in seen:
                break
        else:  # pragma: no cover - the template space is far larger than any requested set
            raise ValueError(f"cannot generate {n} distinct queries for {intent}/{budget}")
        seen.add(ex.query)
        out.append(ex)
    return out


def training_set(n: int = 400, seed: int = 1) -> list[IntentExample]:
    return generate(n, seed)


def test_set(n: int = 100, seed: int = 2, exclude: Sequence[IntentExample] = ()) -> list[IntentExample]:
    """Balanced intents and budgets, never repeating a query from `exclude` (the training set)."""
    return generate(n, seed, BALANCED_INTENTS, BALANCED_BUDGETS, exclude={e.query for e in exclude})


def to_jsonl(examples: Sequence[IntentExample]) -> str:
    return "".join(json.dumps(e.chat(), ensure_ascii=False) + "\n" for e in examples)
