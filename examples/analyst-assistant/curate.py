"""Seed 003 phase 2, weekly curation: write `abgate dataset review --decisions` lines for one dataset.

    abgate dataset build --name sigmasight-week-1 --route analyst --since YYYY-MM-DD --out data/week-1 --json
    python examples/analyst-assistant/curate.py DATASET_ID --out decisions.jsonl
    (read / edit decisions.jsonl)
    abgate dataset review DATASET_ID --decisions decisions.jsonl --reviewer you@sigmasight

This is the first pass a reviewer would otherwise do by hand, following the seed's rubric:
  * user edits are the gold answer (the build already put the edit in place): 9/10, accept;
  * answers with a figure and a cited filing (10-K / 10-Q / 8-K): 8/10, accept;
  * answers with a figure but no source: 5/10 "acceptable" (kept, below the export cut of 6);
  * vague answers ("roughly ... last year") or no figure at all: 3/10, reject;
and every example gets a category from the seed's table (categories.py). Edit the file before
applying it: any line may change `action`, `quality`, `category`, or add `gold` for an edit.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from categories import categorize  # noqa: E402

from gateway.state import resolve_state_dir  # noqa: E402
from training.registry import Registry  # noqa: E402

FIGURE = re.compile(r"\$\d[\d.,]*\s*[BMK]\b|\d+(\.\d+)?%")
SOURCE = re.compile(r"\b(10-K|10-Q|8-K)\b")
VAGUE = re.compile(r"\b(roughly|approximately|about|last year)\b", re.I)


def _text(messages: list[dict], role: str) -> str:
    return next((str(m.get("content") or "") for m in reversed(messages) if m.get("role") == role), "")


def decide(example: dict) -> dict:
    question, answer = _text(example["messages"], "user"), _text(example["messages"], "assistant")
    decision: dict = {"example_id": example["id"], "category": categorize(question)}
    if example["signal"] == "edited":
        return decision | {"action": "accept", "quality": 9}
    if not FIGURE.search(answer) or VAGUE.search(answer):
        return decision | {"action": "reject", "quality": 3}
    if SOURCE.search(answer):
        return decision | {"action": "accept", "quality": 8}
    return decision | {"action": "accept", "quality": 5}


def recheck(example: dict) -> dict:
    """An example already accepted from reviewer feedback: the seed's category, its score kept
    (1-4 -> reject), or this script's score when the reviewer gave none."""
    decision = decide(example)
    q = example.get("quality10")
    if q is None:
        return decision
    return decision | {"action": "reject" if q < 5 else "accept", "quality": q}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dataset_id")
    p.add_argument("--out", type=Path, default=Path("decisions.jsonl"))
    p.add_argument("--state-dir", type=Path, default=None, help="default: $ABGATE_HOME or ./.abgate")
    a = p.parse_args(argv)
    with Registry(resolve_state_dir(a.state_dir)) as reg:
        try:
            reg.dataset(a.dataset_id)
        except KeyError as err:
            p.error(str(err.args[0]))
        # pending examples, and those auto-accepted from reviewer feedback: every example goes through
        # the seed's category table and its "1-4 = do not include" rule
        examples = [e for e in reg.examples(dataset_id=a.dataset_id) if e["status"] != "rejected"]
    rows = [decide(e) if e["status"] == "pending" else recheck(e) for e in examples]
    a.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    counts: dict[str, int] = {}
    for r in rows:
        counts[f"{r['action']} {r['quality']}/10"] = counts.get(f"{r['action']} {r['quality']}/10", 0) + 1
    print(f"{a.out}: {len(rows)} decisions (" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
