"""Validation of an OpenAI chat fine-tuning JSONL file before any upload.

Rules follow OpenAI's cookbook data-prep checks (data_type, missing_messages_list,
message_missing_key, message_unrecognized_key, unrecognized_role, missing_content,
example_missing_assistant_message), plus assistant `weight` 0/1, the per-example token
limit, the example minimum, one consistent system prompt and seed 003's checklist.
Every problem names its 1-based line number.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training import tokens as tk

ALLOWED_KEYS = frozenset({"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight"})
ROLES = frozenset({"system", "user", "assistant", "tool", "function"})
TOP_LEVEL_KEYS = frozenset({"messages", "tools", "functions", "parallel_tool_calls"})
OPENAI_MIN_EXAMPLES = 10
RECOMMENDED_MIN_EXAMPLES = 50


@dataclass(frozen=True)
class Problem:
    line: int | None  # None = about the whole file
    code: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "file"
        return f"{where}: [{self.code}] {self.message}"


@dataclass(frozen=True)
class CheckItem:
    name: str
    status: str  # pass | warn | fail | unknown
    detail: str


@dataclass
class Report:
    path: str
    examples: int = 0
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    token_counts: list[int] = field(default_factory=list)
    system_prompts: Counter[str] = field(default_factory=Counter)
    checklist: list[CheckItem] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "ok": self.ok,
            "examples": self.examples,
            "errors": [p.__dict__ for p in self.errors],
            "warnings": [p.__dict__ for p in self.warnings],
            "checklist": [c.__dict__ for c in self.checklist],
            "system_prompts": len(self.system_prompts),
        }


def system_prompt(messages: list[dict[str, Any]]) -> str | None:
    for m in messages:
        if isinstance(m, dict) and m.get("role") == "system" and isinstance(m.get("content"), str):
            return str(m["content"])
    return None


def _check_content(m: dict[str, Any]) -> bool:
    content = m.get("content")
    if isinstance(content, str):
        return bool(content)
    if isinstance(content, list):  # content parts
        return bool(content) and all(isinstance(p, dict) and "type" in p for p in content)
    # an assistant turn may carry only a tool/function call
    return content in (None, "") and m.get("role") == "assistant" and bool(m.get("tool_calls") or m.get("function_call"))


def check_example(obj: Any, line: int) -> list[Problem]:
    """The format errors of one parsed line (cookbook order)."""
    if not isinstance(obj, dict):
        return [Problem(line, "data_type", f"each line must be a JSON object, got {type(obj).__name__}")]
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return [Problem(line, "missing_messages_list", "`messages` must be a non-empty list")]
    out: list[Problem] = []
    for key in obj:
        if key not in TOP_LEVEL_KEYS:
            out.append(Problem(line, "unrecognized_key", f"unknown top-level key {key!r}"))
    for i, m in enumerate(messages):
        at = f"messages[{i}]"
        if not isinstance(m, dict):
            out.append(Problem(line, "message_missing_key", f"{at} must be an object with role and content"))
            continue
        if "role" not in m or ("content" not in m and not (m.get("tool_calls") or m.get("function_call"))):
            missing = "role" if "role" not in m else "content"
            out.append(Problem(line, "message_missing_key", f"{at} has no {missing!r}"))
            continue
        extra = sorted(k for k in m if k not in ALLOWED_KEYS)
        if extra:
            out.append(Problem(line, "message_unrecognized_key", f"{at} has unknown key(s) {', '.join(extra)}"))
        if m["role"] not in ROLES:
            out.append(Problem(line, "unrecognized_role", f"{at} role {m['role']!r} is not one of {sorted(ROLES)}"))
        if not _check_content(m):
            out.append(Problem(line, "missing_content", f"{at} content must be a non-empty string"))
        if "weight" in m:
            if m.get("role") != "assistant":
                out.append(Problem(line, "invalid_weight", f"{at} `weight` is only allowed on assistant messages"))
            elif m["weight"] not in (0, 1) or isinstance(m["weight"], bool):
                out.append(Problem(line, "invalid_weight", f"{at} `weight` must be 0 or 1, got {m['weight']!r}"))
    if not any(isinstance(m, dict) and m.get("role") == "assistant" for m in messages):
        out.append(Problem(line, "example_missing_assistant_message", "no assistant message to learn from"))
    out.extend(check_tools(obj, line))
    return out


def _tool_names(tools: Any, line: int, out: list[Problem]) -> set[str] | None:
    if tools is None:
        return None
    if not isinstance(tools, list) or not tools:
        out.append(Problem(line, "invalid_tools", "`tools` must be a non-empty list of function definitions"))
        return None
    names: set[str] = set()
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict) \
                or not isinstance(fn.get("name"), str) or not fn["name"]:
            out.append(Problem(line, "invalid_tools", f"tools[{i}] must be {{\"type\": \"function\", "
                                                      f"\"function\": {{\"name\": ..., \"parameters\": {{...}}}}}}"))
            continue
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            out.append(Problem(line, "invalid_tools", f"tools[{i}].function.parameters must be a JSON schema object"))
        names.add(fn["name"])
    return names


def check_tools(obj: dict[str, Any], line: int) -> list[Problem]:
    """Tool-call examples: well-formed `tools`, `tool_calls` (id, type function, name, JSON arguments),
    every call to a declared tool, every tool message answering an earlier call."""
    out: list[Problem] = []
    names = _tool_names(obj.get("tools"), line, out)
    calls: set[str] = set()
    for i, m in enumerate(obj.get("messages") or []):
        if not isinstance(m, dict):
            continue
        at = f"messages[{i}]"
        tcs = m.get("tool_calls")
        if tcs is not None:
            if m.get("role") != "assistant" or not isinstance(tcs, list) or not tcs:
                out.append(Problem(line, "invalid_tool_call", f"{at}.tool_calls must be a non-empty list on an "
                                                              "assistant message"))
                continue
            for j, tc in enumerate(tcs):
                fn = tc.get("function") if isinstance(tc, dict) else None
                where = f"{at}.tool_calls[{j}]"
                if not isinstance(tc, dict) or not isinstance(tc.get("id"), str) or not tc["id"] \
                        or tc.get("type") != "function" or not isinstance(fn, dict) \
                        or not isinstance(fn.get("name"), str) or not fn["name"]:
                    out.append(Problem(line, "invalid_tool_call",
                                       f"{where} needs an id, type \"function\" and function.name"))
                    continue
                args = fn.get("arguments")
                try:
                    if not isinstance(args, str):
                        raise ValueError
                    json.loads(args)
                except ValueError:
                    out.append(Problem(line, "invalid_tool_call", f"{where}.function.arguments must be a JSON "
                                                                  "string, e.g. \"{\\\"id\\\": 7}\""))
                if names and fn["name"] not in names:
                    out.append(Problem(line, "unknown_tool", f"{where} calls {fn['name']!r}, which `tools` does "
                                                             f"not define ({', '.join(sorted(names)) or 'none'})"))
                calls.add(tc["id"])
        if m.get("role") == "tool":
            tid = m.get("tool_call_id")
            if not isinstance(tid, str) or tid not in calls:
                out.append(Problem(line, "orphan_tool_message", f"{at} answers tool_call_id {tid!r}, which no "
                                                                "earlier assistant tool call has"))
    return out


def _norm(messages: list[Any]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).lower().encode()).hexdigest()


def validate_lines(
    lines: list[str],
    *,
    path: str = "<data>",
    model: str = "gpt-4o-mini-2024-07-18",
    min_examples: int = OPENAI_MIN_EXAMPLES,
    allow_mixed_system_prompts: bool = False,
    near_dup_threshold: float | None = 0.9,
    config: Any = None,
) -> Report:
    rep = Report(path=path)
    limit = tk.token_limit(model, config)
    seen: dict[str, int] = {}
    prompt_lines: dict[str | None, list[int]] = {}
    for no, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text:
            if no != len(lines):
                rep.errors.append(Problem(no, "blank_line", "blank line (every line must be one JSON object)"))
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            rep.errors.append(Problem(no, "invalid_json", f"not valid JSON: {err.msg} at column {err.colno}"))
            continue
        rep.examples += 1
        problems = check_example(obj, no)
        rep.errors.extend(p for p in problems if p.code != "unrecognized_key")
        rep.warnings.extend(p for p in problems if p.code == "unrecognized_key")
        if problems and any(p.code in ("data_type", "missing_messages_list") for p in problems):
            continue
        messages = obj["messages"]
        good = [m for m in messages if isinstance(m, dict)]
        n_tokens = tk.count_messages(good, model)
        rep.token_counts.append(n_tokens)
        if n_tokens > limit:
            rep.errors.append(Problem(
                no, "token_limit", f"{n_tokens} tokens exceeds the {limit}-token limit of {model}; it would be truncated"))
        sp = system_prompt(good)
        rep.system_prompts[sp or ""] += 1
        prompt_lines.setdefault(sp, []).append(no)
        key = _norm(messages)
        if key in seen:
            rep.warnings.append(Problem(no, "duplicate", f"exact duplicate of line {seen[key]}"))
        else:
            seen[key] = no
        rep.rows.append({"line": no, "messages": good})
    if rep.examples < min_examples:
        rep.errors.append(Problem(None, "too_few_examples",
                                  f"{rep.examples} examples; at least {min_examples} are required"))
    elif rep.examples < RECOMMENDED_MIN_EXAMPLES:
        rep.warnings.append(Problem(None, "few_examples",
                                    f"{rep.examples} examples; {RECOMMENDED_MIN_EXAMPLES}+ are recommended"))
    if len(prompt_lines) > 1:
        main_prompt = max(prompt_lines, key=lambda k: len(prompt_lines[k]))
        for sp, nos in prompt_lines.items():
            if sp == main_prompt:
                continue
            shown = ", ".join(map(str, nos[:20])) + (" ..." if len(nos) > 20 else "")
            what = "no system prompt" if sp is None else f"another system prompt ({sp[:40]!r})"
            main_what = "no system prompt" if main_prompt is None else "the main one"
            p = Problem(nos[0], "inconsistent_system_prompt",
                        f"{len(nos)} example(s) have {what}, unlike the {len(prompt_lines[main_prompt])} with "
                        f"{main_what} (lines {shown})")
            (rep.warnings if allow_mixed_system_prompts else rep.errors).append(p)
    near = _near_duplicates(rep.rows, near_dup_threshold) if near_dup_threshold else []
    for a, b, sim in near:
        rep.warnings.append(Problem(b, "near_duplicate", f"near-duplicate of line {a} (similarity {sim:.2f})"))
    rep.checklist = checklist(rep, near)
    return rep


def _near_duplicates(rows: list[dict[str, Any]], threshold: float) -> list[tuple[int, int, float]]:
    from training.dedup import near_duplicate_pairs

    texts = [example_text(r["messages"]) for r in rows]
    pairs = near_duplicate_pairs(texts, threshold)
    return [(rows[i]["line"], rows[j]["line"], s) for i, j, s in pairs]


def example_text(messages: list[dict[str, Any]]) -> str:
    """The non-system text of a conversation, for duplicate detection."""
    parts = []
    for m in messages:
        if m.get("role") != "system":
            c = m.get("content")
            parts.append(c if isinstance(c, str) else json.dumps(c, ensure_ascii=False))
    return "\n".join(parts)


REVIEW_WINDOW_DAYS = 14


def with_registry(rep: Report, known: dict[str, dict[str, Any]], *, now: str, where: str) -> Report:
    """Redo the checklist with what the registry knows about the file's lines (matched by content):
    review dates ("reviewed in the past 2 weeks") and categories (an exported file carries neither).
    `known`: content_sha -> example; `now`: RFC 3339; `where`: the registry, for the hint."""
    from datetime import datetime, timedelta

    from training.registry import content_sha

    matched = [known[s] for s in (content_sha(r["messages"]) for r in rep.rows) if s in known]
    if not matched:
        rep.checklist = checklist(rep, _near_from(rep), review_hint=(
            f"no line of this file is in the registry at {where}: export it with `abgate dataset export`, "
            "or pass the registry's --state-dir"))
        return rep
    cut = (datetime.fromisoformat(now.replace("Z", "+00:00")) - timedelta(days=REVIEW_WINDOW_DAYS)).isoformat()
    dates = [e["validated_at"] for e in matched if e["validated_at"]]
    recent = [d for d in dates if d.replace("Z", "+00:00") >= cut]
    n = len(rep.rows)
    detail = (f"{len(recent)} of {n} reviewed in the past {REVIEW_WINDOW_DAYS} days"
              + (f" (oldest review {min(dates)[:10]})" if dates else "")
              + (f"; {n - len(matched)} line(s) not in the registry" if len(matched) < n else ""))
    cats = Counter(str(e["category"]) for e in matched if e["category"])
    rep.checklist = checklist(rep, _near_from(rep), reviewed_recent=len(recent) == n, review_detail=detail,
                              categories=cats or None)
    return rep


def _near_from(rep: Report) -> list[tuple[int, int, float]]:
    return [(0, p.line or 0, 0.0) for p in rep.warnings if p.code == "near_duplicate"]


def checklist(rep: Report, near: list[tuple[int, int, float]], *, reviewed_recent: bool | None = None,
              categories: Counter[str] | None = None, review_detail: str = "",
              review_hint: str = "run `abgate dataset validate` where the registry is (--state-dir) on a file "
                                 "from `abgate dataset export`") -> list[CheckItem]:
    """Seed 003's pre-training checklist, from what the file (and optionally the registry) tells."""
    n = rep.examples
    items = [
        CheckItem("at least 50 approved examples (100+ preferred)",
                  "pass" if n >= 100 else "warn" if n >= 50 else "fail", f"{n} examples"),
        CheckItem("examples reviewed in the past 2 weeks",
                  "unknown" if reviewed_recent is None else "pass" if reviewed_recent else "warn",
                  review_hint if reviewed_recent is None else review_detail),
    ]
    dups = sum(1 for p in rep.warnings if p.code == "duplicate")
    items.append(CheckItem("no duplicate or near-duplicate examples", "pass" if not dups and not near else "warn",
                           f"{dups} exact, {len(near)} near-duplicate"))
    cats = categories if categories is not None else Counter(
        c for c in (category_of(r["messages"]) for r in rep.rows) if c)
    if not cats:
        items.append(CheckItem("balanced across categories", "unknown", "no categories in the data"))
    else:
        share = max(cats.values()) / sum(cats.values())
        items.append(CheckItem("balanced across categories", "pass" if share <= 0.5 or len(cats) == 1 else "warn",
                               f"{len(cats)} categories, largest {share:.0%}"))
    prompts = len(rep.system_prompts)
    items.append(CheckItem("system prompt is finalized (one consistent prompt)", "pass" if prompts <= 1 else "fail",
                           f"{prompts} distinct system prompt(s)"))
    return items


def category_of(messages: list[dict[str, Any]]) -> str | None:
    """A category the data itself carries: `intent_type`/`category` of a JSON assistant answer (seed 001)."""
    fields = structured_fields(messages)
    value = fields.get("intent_type") or fields.get("category")
    return str(value) if value is not None else None


def structured_fields(messages: list[dict[str, Any]]) -> dict[str, Any]:
    for m in reversed(messages):
        if m.get("role") == "assistant" and isinstance(m.get("content"), str):
            try:
                obj = json.loads(m["content"])
            except (json.JSONDecodeError, ValueError):
                return {}
            return obj if isinstance(obj, dict) else {}
    return {}


def validate_file(path: Path, **kw: Any) -> Report:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        rep = Report(path=str(path))
        rep.errors.append(Problem(None, "missing_file", f"{path}: no such file"))
        return rep
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        rep = Report(path=str(path))
        rep.errors.append(Problem(line, "encoding", f"not UTF-8 (byte offset {err.start})"))
        return rep
    return validate_lines(text.removesuffix("\n").split("\n"), path=str(path), **kw)
