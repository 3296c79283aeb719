"""Seed 001 step 1: generate the Spanish product-intent datasets (OpenAI chat JSONL).

    python examples/intent-classification/generate_data.py --out data/intent

writes
  train.jsonl       400+ examples, intents GIFT 45% / PERSONAL_USE 25% / BUSINESS 10% /
                    COMPARISON 10% / URGENT 10%, budgets mid_range 50% / economic 20% /
                    premium 20% / unspecified 10% (exact counts, largest-remainder rounding)
  validation.jsonl  the same distributions, uploaded as the fine-tuning validation file
  test.jsonl        100 examples balanced across intents and budgets, never a training query;
                    each line carries `category` (the intent) for per-category eval tables and
                    `case`: standard, or (every 5th line) an edge case (shouting, noisy chat
                    style, a long rambling query) or an ambiguous one (a negated or hedged
                    mention of another intent) with the same ideal label
  gate_test.jsonl   400 more balanced examples (disjoint from all the above) for the offline gate:
                    abgate only says GO when the whole 95% CI clears "accuracy >= 85%", and 100
                    examples can show that only when the observed accuracy is about 94% or more

The queries come from the simulator's lexicon (`simulator.intent_data`), so the simulator can
answer them with model-dependent accuracy; against the real API they are ordinary Spanish
product queries with their ideal JSON answers.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from simulator import intent_data, tasks


def _write(path: Path, rows: list[dict[str, object]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def distribution(examples: list[intent_data.IntentExample]) -> dict[str, dict[str, int]]:
    return {"intent_type": dict(Counter(e.label.intent_type for e in examples)),
            "budget_tier": dict(Counter(e.label.budget_tier for e in examples))}


# (case, rewrite): the rewritten query must keep its label (the simulator and the generator
# share one lexicon); a distractor names another intent without using one of its cues
EDGE_CASES: tuple[tuple[str, object], ...] = (
    ("edge:shouting", lambda q: q.upper() + "!!!"),
    ("edge:noisy", lambda q: "hola 👋 una pregunta... " + q[:1].lower() + q[1:] + " gracias!!"),
    ("edge:long", lambda q: q + ". Lo he mirado en varias tiendas y no termino de decidirme, cualquier idea me sirve"),
    ("ambiguous:negated", lambda q: "No es urgente, pero " + q[:1].lower() + q[1:]),
    ("ambiguous:hedged", lambda q: "No sé si comparar más opciones; " + q[:1].lower() + q[1:]),
)


def with_cases(examples: list[intent_data.IntentExample]) -> list[tuple[str, intent_data.IntentExample]]:
    """Every 5th example rewritten as an edge or ambiguous case (label kept), the rest standard."""
    out: list[tuple[str, intent_data.IntentExample]] = []
    for i, e in enumerate(examples):
        if i % 5 == 4:
            case, rewrite = EDGE_CASES[(i // 5) % len(EDGE_CASES)]
            query = rewrite(e.query)  # type: ignore[operator]
            if tasks.classify_intent(query) == e.label:
                out.append((case, intent_data.IntentExample(query, e.label)))
                continue
        out.append(("standard", e))
    return out


def generate(out: Path, *, train: int, validation: int, test: int, gate_test: int, seed: int) -> dict[str, object]:
    if train < 400:
        raise ValueError(f"--train must be at least 400 (seed 001), got {train}")
    if test < 5 or validation < 0 or gate_test < 0:
        raise ValueError("--test must be >= 5, --validation and --gate-test >= 0")
    tr = intent_data.generate(train, seed)
    va = intent_data.generate(validation, seed + 1000, exclude={e.query for e in tr}) if validation else []
    te = intent_data.test_set(test, seed + 2000, exclude=[*tr, *va])
    gt = intent_data.test_set(gate_test, seed + 3000, exclude=[*tr, *va, *te]) if gate_test else []
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "train.jsonl", [e.chat() for e in tr])
    _write(out / "validation.jsonl", [e.chat() for e in va])
    # `category` and `id` are eval-only fields: `abgate eval` reports per-intent regressions with them
    _write(out / "test.jsonl", [{"id": f"test-{i:03d}", "category": e.label.intent_type, "case": case, **e.chat()}
                                for i, (case, e) in enumerate(with_cases(te), 1)])
    _write(out / "gate_test.jsonl", [{"id": f"gate-{i:03d}", "category": e.label.intent_type, **e.chat()}
                                     for i, e in enumerate(gt, 1)])
    return {"train": {"examples": len(tr), **distribution(tr)},
            "validation": {"examples": len(va), **distribution(va)},
            "test": {"examples": len(te), **distribution(te)},
            "gate_test": {"examples": len(gt), **distribution(gt)}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("data/intent"), help="output directory")
    p.add_argument("--train", type=int, default=400)
    p.add_argument("--validation", type=int, default=50)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--gate-test", type=int, default=400, help="balanced examples for the offline gate (0: none)")
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    try:
        summary = generate(a.out, train=a.train, validation=a.validation, test=a.test, gate_test=a.gate_test,
                           seed=a.seed)
    except ValueError as err:
        p.error(str(err))
    for name, s in summary.items():
        print(f"{a.out / (name + '.jsonl')}: {s['examples']} examples")
        for key in ("intent_type", "budget_tier"):
            counts = s[key]  # type: ignore[index]
            print(f"  {key}: " + ", ".join(f"{k} {v} ({v / s['examples']:.0%})" for k, v in  # type: ignore[index]
                                           sorted(counts.items(), key=lambda kv: -kv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
