"""Token counts for streams whose upstream sent no usage (o200k_base, OpenAI's chat overhead).

Only used off the happy path (upstreams that ignore `stream_options.include_usage`).
The encoding loads once per process on first use (~0.2 s).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _encoding() -> Any:
    import bpe_openai

    return bpe_openai.get_encoding("o200k_base")


def count_text(text: str) -> int:
    return len(_encoding().encode_ordinary(text)) if text else 0


def count_completion(text: str) -> int:
    return count_text(text)


def count_prompt(messages: Any) -> int | None:
    """OpenAI's chat accounting: 3 per message + 1 per name + 3 reply priming."""
    if not isinstance(messages, list):
        return None
    total = 3
    for m in messages:
        if not isinstance(m, dict):
            continue
        total += 3
        for key, value in m.items():
            if isinstance(value, str):
                total += count_text(value)
                if key == "name":
                    total += 1
            elif key == "content" and isinstance(value, list):
                for part in value:
                    if isinstance(part, dict) and isinstance(part.get("text"), str):
                        total += count_text(part["text"])
    return total
