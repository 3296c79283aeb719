"""Exact offline token counts for chat fine-tuning, OpenAI's `auto` epochs rule, and training cost.

Counting follows OpenAI's cookbook (`num_tokens_from_messages`): 3 tokens per message, every
string value of the message encoded, 1 more per `name`, 3 for the reply priming. `bpe_openai`
ships the encodings, so counts are exact without network (tiktoken downloads them first).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from gateway.config import RouterConfig

TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3
DEFAULT_TOKEN_LIMIT = 65_536

# USD per 1M training tokens; `models.<id>.training_per_mtok` in the router config overrides.
# Longest prefix wins, so gpt-4o-mini is not priced as gpt-4o.
DEFAULT_TRAINING_PRICES: dict[str, float] = {
    "gpt-4o-mini": 3.00,
    "gpt-4o": 25.00,
    "gpt-4.1-nano": 1.50,
    "gpt-4.1-mini": 5.00,
    "gpt-4.1": 25.00,
    "gpt-3.5-turbo": 8.00,
}
DEFAULT_TOKEN_LIMITS: dict[str, int] = {
    "gpt-4o-mini-2024-07-18": 65_536,
    "gpt-4o-2024-08-06": 65_536,
    "gpt-3.5-turbo": 16_385,
}


def base_of(model: str) -> str:
    """`ft:gpt-4o-mini-2024-07-18:org:suffix:id` -> `gpt-4o-mini-2024-07-18`."""
    if model.startswith("ft:"):
        return model.split(":")[1]
    return model


def encoding_name(model: str) -> str:
    base = base_of(model)
    if base.startswith(("gpt-3.5", "gpt-4-", "gpt-4")) and not base.startswith(("gpt-4o", "gpt-4.1", "gpt-4.5")):
        return "cl100k_base"
    return "o200k_base"


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    import bpe_openai

    return bpe_openai.get_encoding(name)


def count_text(text: str, model: str = "gpt-4o-mini-2024-07-18") -> int:
    return len(_encoding(encoding_name(model)).encode(text, disallowed_special=()))


def count_messages(messages: list[dict[str, Any]], model: str = "gpt-4o-mini-2024-07-18") -> int:
    enc = _encoding(encoding_name(model))
    n = 0
    for message in messages:
        n += TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "weight":
                continue  # a training control, not sent to the model
            if not isinstance(value, str):
                # tool_calls / function_call / content parts: count their JSON text
                value = json.dumps(value, ensure_ascii=False)
            n += len(enc.encode(value, disallowed_special=()))
            if key == "name":
                n += TOKENS_PER_NAME
    return n + REPLY_PRIMING


def token_limit(model: str, config: RouterConfig | None = None) -> int:
    base = base_of(model)
    if config is not None:
        info = config.models.get(model) or config.models.get(base)
        if info is not None and info.token_limit:
            return info.token_limit
    return DEFAULT_TOKEN_LIMITS.get(base, DEFAULT_TOKEN_LIMIT)


def training_price(model: str, config: RouterConfig | None = None) -> float | None:
    """USD per 1M training tokens for this base model, or None when unknown."""
    base = base_of(model)
    if config is not None:
        info = config.models.get(model) or config.models.get(base)
        if info is not None and info.training_per_mtok is not None:
            return info.training_per_mtok
    best = max((p for p in DEFAULT_TRAINING_PRICES if base.startswith(p)), key=len, default=None)
    return DEFAULT_TRAINING_PRICES[best] if best else None


def auto_epochs(n_examples: int) -> int:
    """The epochs OpenAI picks for `n_epochs: auto` (target 100..25,000 example passes)."""
    if n_examples <= 0:
        return 0
    if n_examples * 3 < 100:
        return min(25, 100 // n_examples)
    if n_examples * 3 > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


@dataclass(frozen=True)
class CostEstimate:
    examples: int
    tokens: int  # sum of per-example tokens, each capped at the limit
    truncated: int  # examples over the limit
    epochs: int
    billed_tokens: int
    price_per_mtok: float | None
    cost_usd: float | None


def estimate(
    token_counts: list[int],
    model: str,
    *,
    epochs: int | None = None,
    config: RouterConfig | None = None,
) -> CostEstimate:
    limit = token_limit(model, config)
    capped = sum(min(limit, t) for t in token_counts)
    n_epochs = epochs if epochs is not None else auto_epochs(len(token_counts))
    billed = capped * n_epochs
    price = training_price(model, config)
    return CostEstimate(
        examples=len(token_counts),
        tokens=capped,
        truncated=sum(1 for t in token_counts if t > limit),
        epochs=n_epochs,
        billed_tokens=billed,
        price_per_mtok=price,
        cost_usd=None if price is None else billed * price / 1_000_000,
    )


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank-free linear interpolation (numpy's default), without numpy."""
    if not values:
        return math.nan
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)
