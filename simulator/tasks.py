"""The shared task lexicon: how generated queries carry their right answer, and how answers are scored.

Both the query generators (intent data, traffic prompts) and the simulator's model use this module,
so the simulator can recover the label of a generated query deterministically (keyword cues) and the
traffic generator can judge an answer's quality from its content alone (key facts, forbidden phrases).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

# ---------------------------------------------------------------- seed 001: product intent (Spanish)

INTENTS = ("GIFT", "PERSONAL_USE", "BUSINESS", "COMPARISON", "URGENT")
BUDGETS = ("mid_range", "economic", "premium", "unspecified")

# Each cue names exactly one intent; the generator puts exactly one cue in a query.
INTENT_CUES: dict[str, tuple[str, ...]] = {
    "GIFT": ("quiero regalar", "busco un regalo", "es para regalar", "un detalle especial"),
    "PERSONAL_USE": ("para uso personal", "para usarlo yo mismo", "quiero darme un capricho", "para mi día a día"),
    "BUSINESS": ("para mi empresa", "para la oficina", "para mi negocio", "para mi equipo de trabajo"),
    "COMPARISON": ("quiero comparar", "cuál es mejor", "diferencias entre modelos", "comparativa de"),
    "URGENT": ("lo necesito urgente", "para mañana sin falta", "entrega inmediata", "lo antes posible"),
}
BUDGET_CUES: dict[str, tuple[str, ...]] = {
    "mid_range": ("presupuesto medio", "precio razonable", "gama media"),
    "economic": ("algo barato", "económico", "presupuesto ajustado"),
    "premium": ("de gama alta", "sin mirar el precio", "lo más exclusivo"),
    "unspecified": (),
}
# product noun -> category
PRODUCTS: dict[str, str] = {
    "auriculares": "electronics", "un portátil": "electronics", "un móvil": "electronics",
    "una tablet": "electronics", "una cafetera": "home", "una lámpara": "home", "un juego de sábanas": "home",
    "una chaqueta": "fashion", "unas zapatillas": "fashion", "un bolso": "fashion",
    "una bicicleta": "sports", "una esterilla de yoga": "sports", "un perfume": "beauty",
    "un set de cuidado facial": "beauty", "un libro": "books", "un juego de mesa": "toys",
}
CATEGORIES = tuple(sorted(set(PRODUCTS.values())))
RECIPIENTS: dict[str, str] = {
    "para mi madre": "mother", "para mi padre": "father", "para mi pareja": "partner",
    "para mi hijo": "son", "para mi hija": "daughter", "para un amigo": "friend", "para mi jefe": "boss",
}
OCCASIONS: dict[str, str] = {
    "por su cumpleaños": "birthday", "por navidad": "christmas", "por nuestro aniversario": "anniversary",
    "por su jubilación": "retirement", "": "",
}
INTENT_FEATURES: dict[str, tuple[str, ...]] = {
    "GIFT": ("thoughtful", "gift_wrapping", "memorable"),
    "PERSONAL_USE": ("comfort", "durability", "value_for_money"),
    "BUSINESS": ("bulk_pricing", "invoice", "reliability"),
    "COMPARISON": ("specifications", "reviews", "price_comparison"),
    "URGENT": ("fast_delivery", "in_stock", "express_shipping"),
}
INTENT_SYSTEM_PROMPT = (
    "You are a Product Intent Classifier. Analyze user queries and return structured intent with type "
    "(GIFT/PERSONAL_USE/BUSINESS/COMPARISON/URGENT), budget tier, category, recipient, context tags, and "
    "priority features. Return only valid JSON."
)


@dataclass(frozen=True, slots=True)
class IntentLabel:
    intent_type: str
    budget_tier: str
    category: str
    recipient: str
    occasion: str

    def answer(self) -> dict[str, object]:
        """The ideal assistant output (the seed 001 JSON shape)."""
        tags = [self.intent_type.lower()]
        if self.occasion:
            tags.append(self.occasion)
        if self.category != "unspecified":
            tags.append(self.category)
        return {
            "intent_type": self.intent_type, "category": self.category, "budget_tier": self.budget_tier,
            "recipient": self.recipient, "context_tags": tags,
            "priority_features": list(INTENT_FEATURES[self.intent_type]),
        }

    def answer_json(self) -> str:
        return json.dumps(self.answer(), ensure_ascii=False, separators=(",", ":"))


def _find(text: str, table: dict[str, str]) -> str | None:
    # longest cue first so "un juego de mesa" is not shadowed by a shorter overlapping cue
    for cue in sorted(table, key=len, reverse=True):
        if cue and cue in text:
            return table[cue]
    return None


_INTENT_BY_CUE = {cue: intent for intent, cues in INTENT_CUES.items() for cue in cues}
# Phrasings real users write that the generator never uses (seed 001's own example query is
# "Busco algo especial para mi madre en su cumpleaños, presupuesto medio"): understood, not generated.
INTENT_ALIASES: dict[str, str] = {
    "algo especial": "GIFT", "regalo": "GIFT", "regalar": "GIFT", "sorpresa": "GIFT",
    "para mí": "PERSONAL_USE", "para casa": "PERSONAL_USE",
    "empresa": "BUSINESS", "oficina": "BUSINESS", "negocio": "BUSINESS",
    "comparar": "COMPARISON", "mejor opción": "COMPARISON", " o ": "COMPARISON",
    "urgente": "URGENT", "hoy mismo": "URGENT", "rápido": "URGENT",
}
OCCASION_ALIASES: dict[str, str] = {"cumpleaños": "birthday", "navidad": "christmas", "aniversario": "anniversary",
                                    "jubilación": "retirement"}
RECIPIENT_ALIASES: dict[str, str] = {"madre": "mother", "mamá": "mother", "padre": "father", "papá": "father",
                                     "pareja": "partner", "novia": "partner", "novio": "partner", "hijo": "son",
                                     "hija": "daughter", "amigo": "friend", "amiga": "friend", "jefe": "boss"}
_BUDGET_BY_CUE = {cue: tier for tier, cues in BUDGET_CUES.items() for cue in cues}


def classify_intent(query: str) -> IntentLabel | None:
    """Recover the label a generated query carries; None when it has no intent cue."""
    text = query.lower()
    intent = _find(text, _INTENT_BY_CUE)
    if intent is None:
        return None
    return IntentLabel(
        intent_type=intent,
        budget_tier=_find(text, _BUDGET_BY_CUE) or "unspecified",
        category=_find(text, PRODUCTS) or "unspecified",
        recipient=(_find(text, RECIPIENTS) or "unspecified") if intent == "GIFT" else "self",
        occasion=_find(text, OCCASIONS) or "",
    )


def understand_intent(query: str) -> IntentLabel:
    """Any query under the intent prompt gets a label (so the answer is always the JSON shape):
    the generator's cues first, then everyday phrasings, else a personal-use reading."""
    label = classify_intent(query)
    if label is not None:
        return label
    text = query.lower()
    intent = _find(text, INTENT_ALIASES) or "PERSONAL_USE"
    return IntentLabel(
        intent_type=intent,
        budget_tier=_find(text, _BUDGET_BY_CUE) or "unspecified",
        category=_find(text, PRODUCTS) or "unspecified",
        recipient=(_find(text, RECIPIENTS) or _find(text, RECIPIENT_ALIASES) or "unspecified")
        if intent == "GIFT" else "self",
        occasion=_find(text, OCCASIONS) or _find(text, OCCASION_ALIASES) or "",
    )


def is_intent_task(system_prompt: str) -> bool:
    s = system_prompt.lower()
    return "intent" in s and ("classif" in s or "json" in s)


# ---------------------------------------------------------------- seed 002: order support (English)

@dataclass(frozen=True, slots=True)
class SupportTopic:
    name: str
    cues: tuple[str, ...]
    questions: tuple[str, ...]   # "{order}" is replaced by an order number
    facts: tuple[str, ...]       # key facts a good answer states ("{order}" allowed)
    filler: str                  # what a weak answer says instead


SUPPORT_TOPICS: tuple[SupportTopic, ...] = (
    SupportTopic("order_status", ("where is my order", "has not arrived", "track my order"),
                 ("Where is my order {order}? It has not arrived yet.", "Can you track my order {order}?"),
                 ("order {order}", "tracking link", "3-5 business days"),
                 "Orders usually arrive eventually."),
    SupportTopic("refund", ("refund", "money back"),
                 ("I want a refund for order {order}.", "How do I get my money back for order {order}?"),
                 ("order {order}", "refund within 5-7 business days", "original payment method"),
                 "Refunds are possible in some cases."),
    SupportTopic("cancel", ("cancel",),
                 ("Please cancel order {order}.", "Can I still cancel order {order}?"),
                 ("order {order}", "cancelled before shipping", "confirmation email"),
                 "Cancellation depends on the situation."),
    SupportTopic("damaged", ("damaged", "broken"),
                 ("Order {order} arrived damaged.", "The item in order {order} is broken."),
                 ("order {order}", "photo of the damage", "free replacement"),
                 "Sorry to hear about the problem."),
    SupportTopic("address", ("change the address", "shipping address"),
                 ("I need to change the shipping address of order {order}.",
                  "Can you change the address for order {order}?"),
                 ("order {order}", "address updated", "before the order ships"),
                 "Addresses can sometimes be changed."),
)
SUPPORT_SYSTEM_PROMPT = ("You are Order Support for an online shop. Answer the customer's question about "
                         "their order politely, accurately and according to company policy.")
ORDER_RE = re.compile(r"#?(\d{5,8})")

# -------------------------------------------------------------- seed 003: financial analyst (English)

TICKERS = ("NVDA", "AAPL", "MSFT", "AMZN", "GOOGL", "META", "TSLA", "AMD")
ANALYST_METRICS: dict[str, str] = {"SBC": "stock-based compensation", "revenue": "revenue",
                                   "free cash flow": "free cash flow", "R&D": "R&D expense",
                                   "gross margin": "gross margin"}
QUARTERS = ("Q1", "Q2", "Q3", "Q4")
ANALYST_SYSTEM_PROMPT = ("You are SigmaSight, a financial analyst assistant. Answer questions about public "
                         "company financials precisely, citing the figure, period and source filing.")
ANALYST_RE = re.compile(r"\b(" + "|".join(TICKERS) + r")'s (" + "|".join(re.escape(m) for m in ANALYST_METRICS)
                        + r") in (Q[1-4])\b")


def analyst_figure(ticker: str, metric: str, quarter: str) -> str:
    """The 'true' figure for a (ticker, metric, quarter), stable across runs."""
    h = int.from_bytes(hashlib.blake2b(f"{ticker}|{metric}|{quarter}".encode(), digest_size=4).digest())
    if metric == "gross margin":
        return f"{40 + h % 400 / 10:.1f}%"
    return f"${(h % 9000 + 500) / 10:.1f}B" if metric in ("revenue", "free cash flow") else f"${(h % 3000 + 100)}M"


# ------------------------------------------------------------------------------- policy violations

# Phrases a compliant answer never contains; "worse" models say them more often.
VIOLATIONS = (
    "I have refunded you in full right away without any verification.",
    "Please send me your full card number and CVV so I can check.",
    "This is guaranteed investment advice: buy now.",
)


def has_violation(text: str) -> bool:
    return any(v.lower() in text.lower() for v in VIOLATIONS)


# ------------------------------------------------------------------------------------ task routing

@dataclass(frozen=True, slots=True)
class Task:
    """What a prompt asks for, with the ideal answer and the key facts a good answer must state."""

    kind: str                 # intent | support | analyst | generic
    key: str                  # stable identity of the question (for deterministic draws)
    ideal: str
    facts: tuple[str, ...] = ()
    wrong: str = ""           # a plausible wrong answer
    label: IntentLabel | None = None


def detect(system_prompt: str, user: str) -> Task:
    """Find the task a prompt carries; generic when nothing in the lexicon matches."""
    if is_intent_task(system_prompt):
        label = understand_intent(user)
        return Task("intent", user, label.answer_json(), label=label)
    low = user.lower()
    m = ANALYST_RE.search(user)
    if m:
        ticker, metric, quarter = m.groups()
        fig = analyst_figure(ticker, metric, quarter)
        name = ANALYST_METRICS[metric]
        ideal = (f"{ticker}'s {name} in {quarter} was {fig}, as reported in the company's {quarter} 10-Q filing. "
                 f"This figure comes from the cash flow statement and is in line with prior quarters.")
        wrong_fig = analyst_figure(ticker, metric, "Q1" if quarter != "Q1" else "Q2")
        return Task("analyst", m.group(0), ideal, facts=(ticker, quarter, fig, "10-Q"),
                    wrong=f"{ticker}'s {name} was roughly {wrong_fig} last year.")
    for topic in SUPPORT_TOPICS:
        if any(c in low for c in topic.cues):
            om = ORDER_RE.search(user)
            order = om.group(1) if om else "unknown"
            facts = tuple(f.replace("{order}", order) for f in topic.facts)
            ideal = support_answer(facts)
            return Task("support", f"{topic.name}|{order}", ideal, facts=facts, wrong=topic.filler)
    return Task("generic", user, generic_answer(user), facts=())


def support_answer(facts: tuple[str, ...]) -> str:
    return ("Thank you for reaching out. " + " ".join(f"Regarding {f}: this is confirmed." if i == 0 else
            f"Please note: {f}." for i, f in enumerate(facts)) + " Is there anything else I can help with?")


def generic_answer(user: str) -> str:
    words = re.findall(r"\w+", user.lower())[:8]
    topic = " ".join(words) or "your question"
    return (f"Here is a clear answer about {topic}. The main point is addressed first, followed by the "
            f"relevant details, caveats and a short summary you can act on.")


# ---------------------------------------------------------------------------------- answer scoring

@dataclass(frozen=True, slots=True)
class Score:
    quality: float        # 0..1
    correct: bool
    violation: bool
    json_valid: bool


def score(task: Task, answer: str) -> Score:
    """Judge an answer by content alone (used by the traffic generator's simulated users)."""
    violation = has_violation(answer)
    if task.kind == "intent":
        assert task.label is not None
        try:
            got = json.loads(answer)
            valid = isinstance(got, dict)
        except ValueError:
            return Score(0.0, False, violation, False)
        want = task.label.answer()
        fields = ("intent_type", "budget_tier", "category", "recipient")
        hit = sum(1 for f in fields if valid and got.get(f) == want[f]) / len(fields)
        correct = valid and got.get("intent_type") == want["intent_type"] and got.get("budget_tier") == want["budget_tier"]
        return Score(hit * (0.5 if violation else 1.0), correct, violation, valid)
    if task.kind == "generic":
        ratio = len(answer) / max(1, len(task.ideal))
        q = max(0.0, min(1.0, ratio)) * (0.3 if violation else 1.0)
        return Score(q, q >= 0.8 and not violation, violation, True)
    low = answer.lower()
    covered = sum(1 for f in task.facts if f.lower() in low) / max(1, len(task.facts))
    ratio = len(answer) / max(1, len(task.ideal))
    length_ok = 0.5 <= ratio <= 2.0
    q = covered * (1.0 if length_ok else 0.7) * (0.3 if violation else 1.0)
    return Score(q, covered == 1.0 and not violation, violation, True)
