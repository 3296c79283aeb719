"""What an eval run cost: its prompt and completion tokens at the model's per-1M-token prices.

Prices come from the router config's `models` (input_per_mtok / output_per_mtok) when the
model is there, else from OpenAI's list prices for common models (fine-tunes at their
fine-tuned rate), else they are unknown and only the token totals are reported."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from evaluation.offline.runs import ExampleResult

# USD per 1M tokens (input, output), OpenAI list prices; "ft:" = the fine-tuned model's rate
LIST_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60), "ft:gpt-4o-mini": (0.30, 1.20),
    "gpt-4o": (2.50, 10.00), "ft:gpt-4o": (3.75, 15.00),
    "gpt-4.1-mini": (0.40, 1.60), "ft:gpt-4.1-mini": (0.80, 3.20),
    "gpt-4.1-nano": (0.10, 0.40), "ft:gpt-4.1-nano": (0.20, 0.80),
    "gpt-4.1": (2.00, 8.00), "ft:gpt-4.1": (3.00, 12.00),
    "gpt-3.5-turbo": (0.50, 1.50), "ft:gpt-3.5-turbo": (3.00, 6.00),
}


@dataclass(frozen=True)
class RunCost:
    model: str
    prompt_tokens: int
    completion_tokens: int
    input_per_mtok: float | None
    output_per_mtok: float | None
    price_source: str  # config | list price | unknown
    cost_usd: float | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def prices(model: str, config: Any = None) -> tuple[float, float, str] | None:
    models = getattr(config, "models", None) or {}
    info = models.get(model)
    if info is not None and (info.input_per_mtok or info.output_per_mtok):
        return float(info.input_per_mtok), float(info.output_per_mtok), "config"
    ft = model.startswith("ft:")
    base = model[3:].split(":", 1)[0] if ft else model
    best = max((k for k in LIST_PRICES if not k.startswith("ft:") and base.startswith(k)), key=len, default=None)
    if best is None:
        return None
    i, o = LIST_PRICES[("ft:" + best) if ft else best]
    return i, o, "list price"


def run_cost(results: Iterable[ExampleResult], model: str, config: Any = None) -> RunCost:
    rows = list(results)
    pt = sum(r.prompt_tokens or 0 for r in rows)
    ct = sum(r.completion_tokens or 0 for r in rows)
    p = prices(model, config)
    if p is None:
        return RunCost(model, pt, ct, None, None, "unknown", None)
    i, o, src = p
    return RunCost(model, pt, ct, i, o, src, round((pt * i + ct * o) / 1_000_000, 6))


def describe(c: RunCost) -> str:
    tokens = f"{c.prompt_tokens:,} input + {c.completion_tokens:,} output tokens"
    if c.cost_usd is None:
        return f"cost: unknown ({tokens}; no price for {c.model}: set input_per_mtok/output_per_mtok in the config)"
    return (f"cost: ${c.cost_usd:.4f} ({tokens} at ${c.input_per_mtok:g} / ${c.output_per_mtok:g} per 1M, "
            f"{c.price_source})")
