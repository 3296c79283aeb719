"""Seed 002's `agent_training_samples` table, exported as JSONL (a stand-in for your Supabase export).

    python examples/order-support/generate_samples.py --out samples.jsonl [--n 1400] [--seed 2]

One row per agent answer a human looked at:
  {"id", "created_at", "category", "messages": [system, user, assistant], "approved": bool,
   "quality_reviewed": bool, "review": {factuality, helpfulness, tone, policy, completeness,
   overall, reviewer}}   # `review` only when quality_reviewed is true (1-5 rubric)

Answers come in three qualities (good / missing a key fact / vague or policy-violating) and
the approvals and rubric scores follow the quality, so the seed's filter (approved, human
reviewed, overall and every rubric score >= 4) keeps the good ones. Conversations are
composed from many phrasings, names, products and order numbers, so the near-duplicate
filter of `abgate dataset build` keeps most of them (real exports are that varied too).
Deterministic for a given --seed.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

# The same system prompt and key facts the simulator's support task uses, so the fine-tuned
# model is judged by the same standard the training data was written to.
SYSTEM_PROMPT = ("You are Order Support for an online shop. Answer the customer's question about "
                 "their order politely, accurately and according to company policy.")

NAMES = ("Ana", "Ben", "Chloe", "Diego", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam", "Maya",
         "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sam", "Tara", "Umar", "Vera", "Wes", "Xena", "Yusuf", "Zoe")
PRODUCTS = ("a blue rain jacket", "two coffee mugs", "a standing desk", "wireless earbuds", "a yoga mat",
            "a cast-iron pan", "running shoes", "a desk lamp", "a board game", "a phone case", "a wool scarf",
            "a kettle", "a backpack", "bed sheets", "a bluetooth speaker", "a water bottle", "a winter coat",
            "a set of knives", "garden gloves", "a children's bike")
CARRIERS = ("UPS", "DHL", "FedEx", "the postal service", "our courier partner")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
CONTEXT = ("I ordered it last {day}.", "It was supposed to be a gift for my sister.", "This is my second message about it.",
           "I paid with my credit card.", "I really need it before the weekend.", "The app shows no update at all.",
           "I have been a customer for years.", "My neighbour got hers already.", "I'm travelling next week.",
           "I used the express option at checkout.", "Nobody answered the phone line.", "", "", "")

# topic -> (user questions, key facts a good answer states, a vague answer, extra helpful sentences)
TOPICS: dict[str, dict[str, tuple[str, ...]]] = {
    "order_status": {
        "ask": ("Where is my order {order}? It has not arrived yet.", "Can you track my order {order}, please?",
                "Hi, my order {order} with {product} has not arrived. Where is it?",
                "I'd like to track my order {order}, it still has not arrived."),
        "facts": ("order {order}", "tracking link", "3-5 business days"),
        "extra": ("The parcel is with {carrier} right now.", "You will get an email as soon as it is out for delivery.",
                  "I have also flagged the parcel so {carrier} prioritises it."),
    },
    "refund": {
        "ask": ("I want a refund for order {order}.", "How do I get my money back for order {order}?",
                "Please refund order {order}, {product} was not what I expected.",
                "Can I get a refund on order {order}? I returned {product}."),
        "facts": ("order {order}", "refund within 5-7 business days", "original payment method"),
        "extra": ("I can see the return of {product} was registered.", "You will receive a confirmation email today.",
                  "No restocking fee applies to this order."),
    },
    "cancel": {
        "ask": ("Please cancel order {order}.", "Can I still cancel order {order}?",
                "I ordered {product} by mistake, please cancel order {order}.",
                "Is it too late to cancel order {order} for {product}?"),
        "facts": ("order {order}", "cancelled before shipping", "confirmation email"),
        "extra": ("Nothing will be charged for {product}.", "Any pre-authorisation on your card will drop off shortly.",
                  "You are welcome to reorder whenever you like."),
    },
    "damaged": {
        "ask": ("Order {order} arrived damaged.", "The item in order {order} is broken.",
                "{product} from order {order} arrived damaged, the box was crushed.",
                "My order {order} came broken, {product} is unusable."),
        "facts": ("order {order}", "photo of the damage", "free replacement"),
        "extra": ("You do not need to send {product} back.", "I have reported the damage to {carrier}.",
                  "The replacement ships with priority handling."),
    },
    "address": {
        "ask": ("I need to change the shipping address of order {order}.", "Can you change the address for order {order}?",
                "I moved last {day}, can you change the shipping address of order {order}?",
                "Please change the address on order {order}, {product} should go to my office."),
        "facts": ("order {order}", "address updated", "before the order ships"),
        "extra": ("{carrier} will use the new address automatically.", "The delivery estimate stays the same.",
                  "You will see the new address in your account within minutes."),
    },
}
GREETINGS = ("Hi {name}, thanks for contacting us.", "Hello {name}, thank you for reaching out.",
             "Thanks for your message, {name}.", "Good day {name}, I'm happy to help.", "Hi {name}, I understand.",
             "Hello {name}, I'm sorry for the trouble.")
FACT_LINES = (
    ("I checked {f0} for you.", "I have looked into {f0}.", "I found {f0} in our system.", "Regarding {f0}: I am on it."),
    ("Please note: {f}.", "Good news: {f}.", "To confirm, {f}.", "Here is what happens next: {f}."),
)
CLOSINGS = ("Is there anything else I can help with?", "Let me know if you have any other questions.",
            "Have a great day!", "We appreciate your patience.", "Thanks again for shopping with us.",
            "Feel free to reply here if anything changes.")
VAGUE = ("Orders usually arrive eventually.", "Refunds are possible in some cases.",
         "Cancellation depends on the situation.", "Sorry to hear about the problem.",
         "Addresses can sometimes be changed.")
VIOLATION = "I have refunded you in full right away without any verification."


def _slots(rng: random.Random) -> dict[str, str]:
    return {"order": str(rng.randint(100000, 999999)), "name": rng.choice(NAMES), "product": rng.choice(PRODUCTS),
            "carrier": rng.choice(CARRIERS), "day": rng.choice(DAYS)}


def _answer(rng: random.Random, topic: dict[str, tuple[str, ...]], s: dict[str, str], quality: str) -> str:
    facts = [f.format(**s) for f in topic["facts"]]
    parts = [rng.choice(GREETINGS)]
    if quality == "bad":
        parts.append(rng.choice(VAGUE))
        if rng.random() < 0.4:
            parts.append(VIOLATION)
    else:
        if quality == "mediocre":  # drops one of the facts after the order number
            facts.pop(rng.randint(1, len(facts) - 1))
        parts.append(rng.choice(FACT_LINES[0]).format(f0=facts[0]))
        parts += [rng.choice(FACT_LINES[1]).format(f=f) for f in facts[1:]]
        parts += rng.sample(topic["extra"], k=rng.randint(1, 2))
    parts.append(rng.choice(CLOSINGS))
    return " ".join(parts).format(**s)


def _score(rng: random.Random, quality: str) -> int:
    if quality == "good":
        return 3 if rng.random() < 0.02 else rng.choice((4, 5, 5))
    if quality == "mediocre":
        return rng.choice((3, 3, 4))
    return rng.choice((1, 2, 2, 3))


def sample(i: int, rng: random.Random, start: datetime) -> dict[str, object]:
    name = rng.choice(sorted(TOPICS))
    topic = TOPICS[name]
    s = _slots(rng)
    user = rng.choice(topic["ask"])
    ctx = rng.choice(CONTEXT)
    user = (user + " " + ctx).strip().format(**s)
    quality = rng.choices(("good", "mediocre", "bad"), weights=(0.7, 0.2, 0.1))[0]
    answer = _answer(rng, topic, s, quality)
    approved = rng.random() < {"good": 0.95, "mediocre": 0.4, "bad": 0.05}[quality]
    reviewed = rng.random() < 0.85
    row: dict[str, object] = {
        "id": f"sample-{i:06d}",
        "created_at": (start + timedelta(minutes=37 * i)).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "category": name,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user},
                     {"role": "assistant", "content": answer}],
        "approved": approved,
        "quality_reviewed": reviewed,
    }
    if reviewed:
        review: dict[str, object] = {k: _score(rng, quality) for k in
                                     ("factuality", "helpfulness", "tone", "policy", "completeness")}
        if VIOLATION in answer:
            review["policy"] = 1
        review["overall"] = min(5, round(sum(review.values()) / 5))  # type: ignore[arg-type]
        review["reviewer"] = f"reviewer-{rng.randint(1, 4)}"
        row["review"] = review
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSONL file to write")
    p.add_argument("--n", type=int, default=1400, help="rows (default 1400: about 700 pass the seed's filter)")
    p.add_argument("--seed", type=int, default=2)
    a = p.parse_args(argv)
    if a.n < 1:
        p.error("--n must be >= 1")
    rng = random.Random(a.seed)
    start = datetime(2025, 9, 1, tzinfo=UTC)
    rows = [sample(i, rng, start) for i in range(a.n)]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    approved = sum(1 for r in rows if r["approved"])
    reviewed = sum(1 for r in rows if r["quality_reviewed"])
    print(f"wrote {len(rows)} samples to {a.out} ({approved} approved, {reviewed} human-reviewed)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
