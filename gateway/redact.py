"""Content capture per route: full, redacted (emails, phone and card numbers masked) or off."""

from __future__ import annotations

import re
from typing import Any

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"\b(?:\d[ -]?){13,19}\b")
_PHONE = re.compile(r"(?<!\w)\+?\d[\d ().-]{7,}\d(?!\w)")


def redact_text(text: str) -> str:
    text = _EMAIL.sub("[email]", text)
    text = _CARD.sub("[card]", text)
    return _PHONE.sub("[phone]", text)


_TEXT_KEYS = frozenset({"content", "text", "response", "arguments", "output", "instructions", "input"})


def _redact_messages(messages: Any) -> Any:
    if isinstance(messages, str):
        return redact_text(messages)
    if isinstance(messages, list):
        return [_redact_messages(m) for m in messages]
    if isinstance(messages, dict):
        return {k: (_redact_messages(v) if k in _TEXT_KEYS else v) for k, v in messages.items()}
    return messages


def capture(mode: str, messages: Any, response: str | None) -> tuple[Any, str | None]:
    """What an interaction event keeps of the conversation under the route's capture mode."""
    if mode == "off":
        return None, None
    if mode == "redacted":
        return _redact_messages(messages), redact_text(response) if response is not None else None
    return messages, response


def capture_json(mode: str, value: Any) -> Any:
    """Another captured part of an interaction (tool calls, choices, Responses items)."""
    if value is None or mode == "off":
        return None
    if mode == "redacted":
        return _redact_messages(value)
    return value
