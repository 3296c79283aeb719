"""Per-model answer behaviour: deterministic, seeded by request content, better for `ft:` models.

Every random choice is a hash of (seed, question, purpose) — not of the model — so one question gets
the same draw under every model and a better model is correct on a superset of the questions its
worse sibling gets right (paired comparisons then behave like real paired evaluations).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from simulator import tasks


@dataclass(frozen=True, slots=True)
class Skill:
    correct: float       # probability of a fully correct answer (intent) / each key fact (free text)
    json_invalid: float  # probability an intent answer is not valid JSON
    violation: float     # probability of a policy-violating sentence
    detail: float        # share of the ideal answer's elaboration kept (length)


BASE = Skill(correct=0.75, json_invalid=0.02, violation=0.03, detail=0.75)
FINE_TUNED = Skill(correct=0.93, json_invalid=0.003, violation=0.01, detail=1.0)
WORSE = Skill(correct=0.50, json_invalid=0.10, violation=0.20, detail=0.45)
# gpt-6-luna, OpenAI's named replacement for the models retiring on 2027-01-14: a better base model,
# and as good as a fine-tune when the prompt carries a few worked examples (in-context learning)
LUNA = Skill(correct=0.78, json_invalid=0.01, violation=0.02, detail=0.8)
FEW_SHOT = Skill(correct=0.95, json_invalid=0.002, violation=0.008, detail=1.0)
FEW_SHOT_MIN = 2  # user/assistant example pairs before the question


def skill(model: str, shots: int = 0) -> Skill:
    low = model.lower()
    if low.startswith("gpt-6-luna"):
        return FEW_SHOT if shots >= FEW_SHOT_MIN else LUNA
    if low.startswith("ft:"):
        # ft:<base>:<org>:<suffix>:<id>: the id is random hex and may spell "bad"; ignore it
        low = low.rsplit(":", 1)[0]
    if "worse" in low or "bad" in low:
        return WORSE
    if low.startswith("ft:"):
        return FINE_TUNED
    return BASE


def draw(seed: int, key: str, purpose: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, key, purpose)."""
    h = hashlib.blake2b(f"{seed}\x1f{purpose}\x1f{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h) / 2**64


def answer(model: str, system_prompt: str, user: str, seed: int = 0, shots: int = 0) -> str:
    task = tasks.detect(system_prompt, user)
    sk = skill(model, shots)
    if task.kind == "intent":
        return _intent_answer(task, sk, seed)
    text = _free_text(task, sk, seed)
    if draw(seed, task.key, "violation") < sk.violation:
        text += " " + tasks.VIOLATIONS[int(draw(seed, task.key, "which-violation") * len(tasks.VIOLATIONS))]
    return text


def _intent_answer(task: tasks.Task, sk: Skill, seed: int) -> str:
    assert task.label is not None
    out = task.label.answer()
    if draw(seed, task.key, "correct") >= sk.correct:
        # wrong on the intent or on the budget tier (or both), picked deterministically
        which = draw(seed, task.key, "which-field")
        if which < 0.6:
            out["intent_type"] = _other(tasks.INTENTS, str(out["intent_type"]), draw(seed, task.key, "alt-intent"))
        if which >= 0.4:
            out["budget_tier"] = _other(tasks.BUDGETS, str(out["budget_tier"]), draw(seed, task.key, "alt-budget"))
    text = json.dumps(out, ensure_ascii=False, separators=(",", ":"))
    if draw(seed, task.key, "json") < sk.json_invalid:
        return "Claro, aquí tienes la clasificación: " + text[: len(text) // 2]
    return text


def _other(options: tuple[str, ...], current: str, u: float) -> str:
    rest = [o for o in options if o != current]
    return rest[int(u * len(rest))]


def _free_text(task: tasks.Task, sk: Skill, seed: int) -> str:
    if task.kind == "generic":
        sentences = task.ideal.split(". ")
        keep = max(1, round(len(sentences) * sk.detail))
        return ". ".join(sentences[:keep]).rstrip(".") + "."
    facts = [f for i, f in enumerate(task.facts) if draw(seed, task.key, f"fact{i}") < sk.correct]
    if task.kind == "analyst":
        if len(facts) == len(task.facts):
            return task.ideal if sk.detail >= 1.0 else task.ideal.split(". ")[0] + "."
        return task.wrong + (" " + " ".join(f"({f})" for f in facts) if facts else "")
    if not facts:
        return task.wrong
    text = tasks.support_answer(tuple(facts))
    return text if sk.detail >= 1.0 or len(facts) < len(task.facts) else text.replace(" Is there anything else I can help with?", "")
