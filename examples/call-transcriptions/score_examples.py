"""Seed 004's "Quality Scoring" step: rate a dataset's examples 0.00-1.00 and write review decisions.

    python examples/call-transcriptions/score_examples.py DATASET_ID --out decisions.jsonl \
        [--state-dir .abgate] [--threshold 0.85]
    abgate dataset review DATASET_ID --decisions decisions.jsonl --reviewer alice

Stands in for your reviewers. It reads the dataset's examples from the abgate registry and
scores each answer by how many of the question's key facts it states (the simulator's
support rubric, `simulator.tasks.score`), with a little seeded reviewer noise. Examples at
or above --threshold are accepted (-> validated, validated_by/at set by `dataset review`);
the others are rejected with their score kept, like the seed's
`UPDATE ... SET validated = true WHERE quality_score >= 0.85`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from simulator import tasks
from training.registry import Registry


def quality_score(messages: list[dict[str, str]], rng: random.Random) -> float:
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
    answer = messages[-1]["content"]
    s = tasks.score(tasks.detect(system, user), answer)
    return round(min(1.0, max(0.0, 0.25 + 0.72 * s.quality + rng.gauss(0, 0.015))), 2)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Score a dataset's examples 0-1 and write `dataset review` decisions.")
    p.add_argument("dataset_id")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--state-dir", type=Path, default=Path(".abgate"))
    p.add_argument("--threshold", type=float, default=0.85)
    a = p.parse_args(argv)
    with Registry(a.state_dir) as reg:
        try:
            reg.dataset(a.dataset_id)
        except KeyError:
            p.error(f"no dataset {a.dataset_id!r} in {a.state_dir}")
        examples = reg.examples(dataset_id=a.dataset_id)
    lines, accepted = [], 0
    for e in examples:
        rng = random.Random(e["source_id"] or e["id"])  # the same example always gets the same score
        q = quality_score(e["messages"], rng)
        ok = q >= a.threshold
        accepted += ok
        lines.append(json.dumps({"example_id": e["id"], "action": "accept" if ok else "reject", "quality_score": q}))
    a.out.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    print(f"scored {len(lines)} examples: {accepted} at or above {a.threshold}, {len(lines) - accepted} below",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
