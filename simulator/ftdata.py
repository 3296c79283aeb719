"""Validation of uploaded fine-tuning files, the way OpenAI checks chat fine-tuning JSONL."""

from __future__ import annotations

import json
from dataclasses import dataclass

from simulator.generate import approx_tokens

ROLES = {"system", "user", "assistant", "tool", "function", "developer"}
MESSAGE_KEYS = {"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight", "refusal"}
MIN_EXAMPLES = 10
MAX_EXAMPLE_TOKENS = 65_536


@dataclass(frozen=True, slots=True)
class FileCheck:
    examples: int
    tokens: int                      # billed tokens per epoch
    problems: tuple[str, ...]        # each names its line

    @property
    def ok(self) -> bool:
        return not self.problems


def check(content: bytes) -> FileCheck:
    problems: list[str] = []
    examples = 0
    tokens = 0
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as err:
        return FileCheck(0, 0, (f"File is not valid UTF-8 (byte {err.start}).",))
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        examples += 1
        try:
            ex = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"Line {n}: invalid JSON ({err.msg}).")
            continue
        if not isinstance(ex, dict):
            problems.append(f"Line {n}: each line must be a JSON object (data_type).")
            continue
        msgs = ex.get("messages")
        if not isinstance(msgs, list) or not msgs:
            problems.append(f"Line {n}: missing 'messages' list (missing_messages_list).")
            continue
        ex_tokens = 3
        has_assistant = False
        for i, m in enumerate(msgs, start=1):
            where = f"Line {n}, message {i}"
            if not isinstance(m, dict):
                problems.append(f"{where}: message must be an object (message_missing_key).")
                continue
            if "role" not in m or ("content" not in m and "tool_calls" not in m and "function_call" not in m):
                problems.append(f"{where}: message is missing 'role' or 'content' (message_missing_key).")
            extra = sorted(set(m) - MESSAGE_KEYS)
            if extra:
                problems.append(f"{where}: unrecognized key(s) {', '.join(extra)} (message_unrecognized_key).")
            role = m.get("role")
            if role is not None and role not in ROLES:
                problems.append(f"{where}: unrecognized role '{role}' (unrecognized_role).")
            body = m.get("content")
            if "content" in m and body is not None and not isinstance(body, (str, list)):
                problems.append(f"{where}: content must be a string (missing_content).")
            if "weight" in m and m["weight"] not in (0, 1):
                problems.append(f"{where}: weight must be 0 or 1.")
            if role == "assistant":
                has_assistant = True
            ex_tokens += 3 + (approx_tokens(body) if isinstance(body, str) else 0)
        if not has_assistant:
            problems.append(f"Line {n}: example has no assistant message (example_missing_assistant_message).")
        tokens += min(ex_tokens, MAX_EXAMPLE_TOKENS)
    if examples < MIN_EXAMPLES:
        problems.append(f"Training file has {examples} example(s), but must have at least {MIN_EXAMPLES} examples.")
    return FileCheck(examples, tokens, tuple(problems))


def auto_epochs(n: int) -> int:
    """OpenAI's `auto` n_epochs: 3, more for tiny sets, fewer for huge ones."""
    if n <= 0:
        return 3
    if n * 3 < 100:
        return min(25, 100 // n)
    if n * 3 > 25_000:
        return max(1, 25_000 // n)
    return 3


def auto_batch_size(n: int) -> int:
    return max(1, min(256, round(n * 0.002)))
