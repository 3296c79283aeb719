"""Held-out eval sets: OpenAI chat JSONL whose last assistant message is the reference.

Optional per-line fields: `id`, `category`, `key_facts` (list of strings), `metadata`
(an object; `metadata.category` / `metadata.key_facts` / `metadata.id` are read too).
A bad line refuses the whole file with every problem and its line number: evaluating
on a silently shortened set would be data loss dressed up as a result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

MAX_PROBLEMS_SHOWN = 20


class DatasetError(ValueError):
    """Problems in an eval dataset, each as (line number, message)."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.path, self.problems = path, problems
        shown = "; ".join(f"line {ln}: {msg}" if ln else msg for ln, msg in problems[:MAX_PROBLEMS_SHOWN])
        more = f" (+{len(problems) - MAX_PROBLEMS_SHOWN} more)" if len(problems) > MAX_PROBLEMS_SHOWN else ""
        super().__init__(f"{path}: {len(problems)} problem(s): {shown}{more}")


@dataclass(frozen=True, slots=True)
class EvalExample:
    id: str
    line: int
    prompt: tuple[dict[str, Any], ...]  # the messages sent to the model
    reference: str  # the last assistant message's content
    category: str
    key_facts: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def last_user(self) -> str:
        for m in reversed(self.prompt):
            if m.get("role") == "user" and isinstance(m.get("content"), str):
                return str(m["content"])
        return ""


@dataclass(frozen=True, slots=True)
class Dataset:
    path: str
    sha256: str
    examples: tuple[EvalExample, ...]


UNCATEGORIZED = "uncategorized"


def _lookup(obj: dict[str, Any], reference: str, key: str) -> Any:
    """`a.b` in the line object, or `reference.a.b` inside the reference parsed as JSON."""
    parts = key.split(".")
    cur: Any = obj
    if parts[0] == "reference":
        try:
            cur = json.loads(reference)
        except ValueError:
            return None
        parts = parts[1:]
    for p in parts:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _category(obj: dict[str, Any], reference: str, category_key: str | None) -> str:
    keys = [category_key] if category_key else ["category", "metadata.category"]
    for k in keys:
        v = _lookup(obj, reference, k)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v):
            return str(v)
    return UNCATEGORIZED


def _content_id(prompt: list[dict[str, Any]]) -> str:
    canon = json.dumps(prompt, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def parse_line(obj: Any, line: int, category_key: str | None) -> tuple[EvalExample | None, list[str]]:
    if not isinstance(obj, dict):
        return None, [f"expected a JSON object, got {type(obj).__name__}"]
    msgs = obj.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return None, ["missing or empty `messages` list"]
    problems = [f"messages[{i}] must be an object with a string `role`" for i, m in enumerate(msgs)
                if not isinstance(m, dict) or not isinstance(m.get("role"), str)]
    if problems:
        return None, problems
    last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
    if last is None:
        return None, ["no assistant message (its content is the reference answer)"]
    ref = msgs[last].get("content")
    if not isinstance(ref, str):
        return None, [f"messages[{last}] (the reference) must have string `content`"]
    prompt = [dict(m) for m in msgs[:last]]
    if not any(m["role"] in ("user", "tool", "function") for m in prompt):
        return None, ["no user message before the reference assistant message"]
    meta = obj.get("metadata", {})
    if not isinstance(meta, dict):
        return None, ["`metadata` must be an object"]
    facts = obj.get("key_facts", meta.get("key_facts"))
    if facts is not None and (not isinstance(facts, list) or not all(isinstance(f, (str, int, float)) for f in facts)):
        return None, ["`key_facts` must be a list of strings"]
    ex_id = obj.get("id", meta.get("id"))
    if ex_id is not None and not isinstance(ex_id, (str, int)):
        return None, ["`id` must be a string or integer"]
    return EvalExample(
        id=str(ex_id) if ex_id is not None else _content_id(prompt),
        line=line,
        prompt=tuple(prompt),
        reference=ref,
        category=_category(obj, ref, category_key),
        key_facts=tuple(str(f) for f in facts) if facts is not None else None,
        metadata=meta,
    ), []


def load(path: str | Path, *, category_key: str | None = None, limit: int | None = None) -> Dataset:
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise DatasetError(str(p), [(0, f"cannot read: {e.strerror}")]) from None
    problems: list[tuple[int, str]] = []
    examples: list[EvalExample] = []
    seen: dict[str, int] = {}
    for ln, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as e:
            problems.append((ln, f"invalid UTF-8 at byte {e.start}"))
            continue
        except ValueError as e:
            problems.append((ln, f"invalid JSON: {e}"))
            continue
        ex, errs = parse_line(obj, ln, category_key)
        problems += [(ln, m) for m in errs]
        if ex is None:
            continue
        if ex.id in seen:
            if "id" in obj or "id" in ex.metadata:
                problems.append((ln, f"duplicate id {ex.id!r} (first on line {seen[ex.id]})"))
                continue
            # identical prompts without ids: keep both, paired by occurrence
            n = sum(1 for k in seen if k == ex.id or k.startswith(ex.id + "#"))
            ex = replace(ex, id=f"{ex.id}#{n + 1}")
        seen[ex.id] = ln
        examples.append(ex)
    if problems:
        raise DatasetError(str(p), problems)
    if not examples:
        raise DatasetError(str(p), [(0, "no examples (the file is empty)")])
    if limit is not None:
        examples = examples[:limit]
    return Dataset(str(p), hashlib.sha256(data).hexdigest(), tuple(examples))
