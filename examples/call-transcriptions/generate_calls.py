"""Seed 004's `call_transcriptions` table for several tenants, as JSONL and/or CSV.

    python examples/call-transcriptions/generate_calls.py --jsonl calls.jsonl --csv calls.csv \
        [--tenants acme,globex] [--per-tenant 200] [--seed 4]

One row per transcribed exchange (what the customer said, what the agent answered):
  id, tenant_id, call_id, created_at, agent, confidence (speech-to-text, 0-1),
  system_prompt, user_message, assistant_response

Like real transcripts, some rows are unusable: low confidence (garbled, "[inaudible]"),
or a user turn too short to learn from ("Yes.", "Okay, thanks."). Agents sometimes leave
out a key fact; the reviewer scoring step (score_examples.py) rates those lower. Each
tenant's answers name the tenant's brand, so a leak between tenants is visible in the text.
Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from simulator.tasks import SUPPORT_TOPICS

FIELDS = ("id", "tenant_id", "call_id", "created_at", "agent", "confidence", "system_prompt", "user_message",
          "assistant_response")
OPENERS = ("Hi, um, ", "Hello there. ", "Yeah hi, ", "Good morning, ", "Hi, so ", "Hey, ", "Hello, I'm calling because ",
           "")
TAILS = ("", " I've been waiting all week.", " My name is {name}.", " I tried the website first.",
         " It's kind of urgent.", " Thanks.", " The reference is on my email.", " I'm a bit frustrated, honestly.")
SHORT = ("Yes.", "Okay, thanks.", "No, that's all.", "Uh huh.", "Right.", "Sure, go ahead.", "Bye.")
NAMES = ("Alex", "Bea", "Carlos", "Dana", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jade", "Kofi", "Lena", "Marco",
         "Nia", "Oscar", "Priya", "Ravi", "Sofia", "Theo", "Uma")
AGENTS = ("agent-01", "agent-02", "agent-03", "agent-04", "agent-05")
LEADS = ("Thanks for calling {brand}, {name}.", "Thank you for calling {brand}.", "{brand} support, happy to help.",
         "Thanks for your patience, this is {brand} customer service.", "I can help with that at {brand}.")
FIRST = ("I've pulled up {f}.", "I'm looking at {f} right now.", "I checked {f} for you.", "I found {f} here.")
NEXT = ("Just so you know: {f}.", "And {f}, as usual.", "Also, {f}.", "Please note, {f}.")
CLOSE = ("Anything else today?", "Is there anything else I can do?", "Have a good one.", "Thanks for your patience.",
         "You'll get a follow-up by email.", "Take care.")


def _brand(tenant: str) -> str:
    return tenant.replace("-", " ").title()


def row(tenant: str, i: int, rng: random.Random, start: datetime) -> dict[str, object]:
    topic = rng.choice(SUPPORT_TOPICS)
    order = str(rng.randint(100000, 999999))
    name = rng.choice(NAMES)
    call = f"call-{tenant}-{i // 2:05d}"
    if rng.random() < 0.12:
        user = rng.choice(SHORT)
    else:
        user = (rng.choice(OPENERS) + rng.choice(topic.questions).replace("{order}", order)
                + rng.choice(TAILS).format(name=name))
    facts = [f.replace("{order}", order) for f in topic.facts]
    if rng.random() < 0.3:  # the agent forgot one of the key facts
        facts.pop(rng.randint(1, len(facts) - 1))
    brand = _brand(tenant)
    answer = " ".join([rng.choice(LEADS).format(brand=brand, name=name), rng.choice(FIRST).format(f=facts[0]),
                       *(rng.choice(NEXT).format(f=f) for f in facts[1:]), rng.choice(CLOSE)])
    confidence = round(rng.uniform(0.86, 0.99), 3) if rng.random() < 0.75 else round(rng.uniform(0.45, 0.79), 3)
    if confidence < 0.8:  # what a poor transcription looks like
        words = user.split()
        if len(words) > 4:
            words[rng.randrange(1, len(words))] = "[inaudible]"
        user = " ".join(words)
    return {
        "id": f"{call}-t{i % 2 + 1}",
        "tenant_id": tenant,
        "call_id": call,
        "created_at": (start + timedelta(minutes=11 * i)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "agent": rng.choice(AGENTS),
        "confidence": confidence,
        "system_prompt": f"You are the customer service assistant of {brand}.",
        "user_message": user,
        "assistant_response": answer,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Generate seed 004's call transcriptions for several tenants.")
    p.add_argument("--jsonl", type=Path, help="write JSONL here")
    p.add_argument("--csv", type=Path, help="write CSV here")
    p.add_argument("--tenants", default="acme,globex", help="comma-separated tenant ids")
    p.add_argument("--per-tenant", type=int, default=200)
    p.add_argument("--seed", type=int, default=4)
    a = p.parse_args(argv)
    tenants = [t.strip() for t in a.tenants.split(",") if t.strip()]
    if not (a.jsonl or a.csv) or not tenants or a.per_tenant < 1:
        p.error("give --jsonl and/or --csv, at least one tenant and --per-tenant >= 1")
    rng = random.Random(a.seed)
    start = datetime(2025, 10, 1, tzinfo=UTC)
    rows = [row(t, i, rng, start) for t in tenants for i in range(a.per_tenant)]
    rng.shuffle(rows)  # tenants interleaved, as in a shared table
    if a.jsonl:
        a.jsonl.parent.mkdir(parents=True, exist_ok=True)
        a.jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if a.csv:
        a.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(a.csv, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=FIELDS)
            w.writeheader()
            w.writerows(rows)
    print(f"wrote {len(rows)} transcriptions for {', '.join(tenants)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
