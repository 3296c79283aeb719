"""Prompt pools for simulated users: support, analyst and intent tasks, each with its scoring Task."""

from __future__ import annotations

import random
from dataclasses import dataclass

from simulator import intent_data, tasks

KINDS = ("support", "analyst", "intent")


@dataclass(frozen=True, slots=True)
class Prompt:
    kind: str
    category: str
    messages: tuple[dict[str, str], ...]
    task: tasks.Task


def support(rng: random.Random) -> Prompt:
    topic = rng.choice(tasks.SUPPORT_TOPICS)
    order = str(rng.randint(100000, 999999))
    user = rng.choice(topic.questions).replace("{order}", order)
    return Prompt("support", topic.name, ({"role": "system", "content": tasks.SUPPORT_SYSTEM_PROMPT},
                                          {"role": "user", "content": user}), tasks.detect(tasks.SUPPORT_SYSTEM_PROMPT, user))


def analyst(rng: random.Random) -> Prompt:
    ticker = rng.choice(tasks.TICKERS)
    metric = rng.choice(sorted(tasks.ANALYST_METRICS))
    quarter = rng.choice(tasks.QUARTERS)
    user = rng.choice(("What was {t}'s {m} in {q}?", "Quick one: {t}'s {m} in {q} please, with the source.",
                       "Can you pull {t}'s {m} in {q} for my model?")).format(t=ticker, m=metric, q=quarter)
    return Prompt("analyst", metric, ({"role": "system", "content": tasks.ANALYST_SYSTEM_PROMPT},
                                      {"role": "user", "content": user}), tasks.detect(tasks.ANALYST_SYSTEM_PROMPT, user))


def intent(rng: random.Random) -> Prompt:
    i = rng.choices(list(intent_data.TRAIN_INTENTS), weights=list(intent_data.TRAIN_INTENTS.values()))[0]
    b = rng.choices(list(intent_data.TRAIN_BUDGETS), weights=list(intent_data.TRAIN_BUDGETS.values()))[0]
    ex = intent_data.make_query(rng, i, b)
    return Prompt("intent", i, ({"role": "system", "content": tasks.INTENT_SYSTEM_PROMPT},
                                {"role": "user", "content": ex.query}),
                  tasks.detect(tasks.INTENT_SYSTEM_PROMPT, ex.query))


_MAKERS = {"support": support, "analyst": analyst, "intent": intent}


def make(kind: str, rng: random.Random) -> Prompt:
    """A prompt of `kind` (support | analyst | intent | mixed)."""
    if kind == "mixed":
        kind = rng.choice(KINDS)
    try:
        return _MAKERS[kind](rng)
    except KeyError:
        raise ValueError(f"unknown task kind {kind!r}; expected one of {', '.join((*KINDS, 'mixed'))}") from None
