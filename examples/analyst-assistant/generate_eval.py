"""Seed 003 phase 4: a held-out evaluation set that was NOT used in training.

    python examples/analyst-assistant/generate_eval.py --exclude data/train.jsonl --out data/eval.jsonl

Each line is OpenAI chat JSONL plus the fields `abgate eval run` scores with: the reference answer
(last assistant message), `key_facts` (ticker, quarter, figure, source filing) and `category` (the
seed's table). Questions and figures come from the simulator's ground truth (`simulator.tasks`);
with real data, write the same format from your own reviewed answers.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from categories import categorize  # noqa: E402

from simulator import tasks  # noqa: E402


def _questions_in(path: Path) -> set[str]:
    out = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            msgs = json.loads(line)["messages"]
            out |= {m["content"] for m in msgs if m.get("role") == "user"}
    return out


def _keys(questions: set[str]) -> set[str]:
    """The (ticker, metric, quarter) a question asks about: rephrasings of a trained question leak too."""
    return {m.group(0) for q in questions if (m := tasks.ANALYST_RE.search(q))}


def generate(n: int, seed: int, exclude: set[str]) -> list[dict]:
    rng = random.Random(seed)
    taken = _keys(exclude)
    pool = [(t, m, q) for t in tasks.TICKERS for m in sorted(tasks.ANALYST_METRICS) for q in tasks.QUARTERS
            if f"{t}'s {m} in {q}" not in taken]
    if len(pool) < n:
        raise ValueError(f"only {len(pool)} questions are not in the training data; asked for {n}")
    rows = []
    for i, (t, m, q) in enumerate(rng.sample(pool, n), 1):
        user = f"What was {t}'s {m} in {q}?"
        task = tasks.detect(tasks.ANALYST_SYSTEM_PROMPT, user)
        rows.append({"id": f"heldout-{i:03d}", "category": categorize(user), "key_facts": list(task.facts),
                     "messages": [{"role": "system", "content": tasks.ANALYST_SYSTEM_PROMPT},
                                  {"role": "user", "content": user},
                                  {"role": "assistant", "content": task.ideal}]})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("data/eval.jsonl"))
    p.add_argument("--exclude", type=Path, action="append", default=[], help="training JSONL (repeatable)")
    p.add_argument("-n", type=int, default=40)
    p.add_argument("--seed", type=int, default=3)
    a = p.parse_args(argv)
    exclude: set[str] = set()
    for f in a.exclude:
        exclude |= _questions_in(f)
    try:
        rows = generate(a.n, a.seed, exclude)
    except ValueError as err:
        p.error(str(err))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    print(f"{a.out}: {len(rows)} held-out examples, none of their questions in {len(exclude)} training questions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
