"""Dataset build: rank candidates by feedback signal, filter, de-duplicate, split, report.

Signal ranking (seed 003): edits > thumbs up > no follow-up > thumbs down > follow-up. An
edit makes the edited text the gold answer and outranks any negative signal (the edit is
the fix); otherwise a negative signal outweighs a thumbs up.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from gateway import metric_catalog as catalog
from training import dedup
from training.registry import content_sha, replace_answer
from training.sources import Candidate
from training.validate import example_text, structured_fields, system_prompt

SIGNAL_RANK = {"edited": 5, "thumbs_up": 4, "no_followup": 3, "thumbs_down": 2, "followup": 1}
RUBRIC_KEYS = ("factuality", "helpfulness", "tone", "policy", "completeness")


@dataclass(frozen=True)
class BuildOptions:
    min_signal: str = "no_followup"
    min_quality10: float | None = None  # 1-10 scale
    min_quality: float | None = None  # 0-1 scale
    rubric_min: float | None = None  # overall and every rubric score >= this
    approved_only: bool = False
    min_confidence: float | None = None
    min_chars: int | None = None  # user message and answer both longer than this
    max_examples: int | None = None
    tenant: str | None = None
    skip_used: bool = True
    dedup_threshold: float | None = 0.8
    split_threshold: float = 0.5
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "heldout": 0.1})
    seed: str = "abgate"
    # seed 003's SQL `AND had_followup = FALSE`: an answer that needed a follow-up is left out,
    # even when it was edited (False keeps edits with a follow-up, the old behaviour)
    drop_followups: bool = True
    # seed 003: scores 1-4 are "do not include"; an example the reviewer scored below this is
    # never auto-accepted from feedback (None disables)
    min_accept_quality10: float | None = 5.0


@dataclass
class BuildResult:
    examples: list[dict[str, Any]]
    report: dict[str, Any]


def signal_of(fb: dict[str, Any]) -> str:
    """Feedback values read as `gateway.metric_catalog.feedback_outcome` reads them."""
    if isinstance(fb.get("edited_response"), str) and fb["edited_response"].strip():
        return "edited"
    t = _num(fb["thumbs"]) if fb.get("thumbs") is not None else None
    thumbs = catalog.feedback_outcome("thumbs", t)[0] if t is not None and t != 0 else None
    if thumbs == "negative":
        return "thumbs_down"
    if fb.get("followup") is not None and catalog.feedback_outcome("followup", fb["followup"])[0] == "positive":
        return "followup"
    if thumbs == "positive":
        return "thumbs_up"
    return "no_followup"


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _review(c: Candidate) -> dict[str, Any]:
    review = c.feedback.get("review")
    out: dict[str, Any] = dict(review) if isinstance(review, dict) else {}
    extra = (c.feedback_meta.get("review") or {}).get("extra")
    if isinstance(extra, dict):
        out = {**extra, **out}
    return out


def annotate(c: Candidate) -> dict[str, Any]:
    """Everything the filters need, in one flat record."""
    review = _review(c)
    f = c.fields
    q10 = _num(review.get("quality")) if review.get("quality") is not None else None
    for key in ("quality10", "quality_1_10", "score"):
        if q10 is None and f.get(key) not in (None, ""):
            q10 = _num(f[key])
    q01 = None
    for key in ("quality", "quality_score"):
        if q01 is None and f.get(key) not in (None, ""):
            q01 = _num(f[key])
    if q01 is not None and q01 > 1 and q10 is None:  # a 1-10 value under a 0-1 name
        q10, q01 = q01, None
    if q10 is None and q01 is not None:
        q10 = q01 * 10
    if q01 is None and q10 is not None:
        q01 = q10 / 10
    confidence = _num(f.get("confidence")) if f.get("confidence") not in (None, "") else _num(
        c.feedback.get("confidence"))
    gold = c.feedback.get("edited_response") if signal_of(c.feedback) == "edited" else None
    answer = gold if gold else c.response
    # a tool-calling answer keeps its calls (an edit is a text correction and replaces them)
    final = dict(c.answer) if c.answer is not None and not gold else {"role": "assistant", "content": answer}
    messages = [*c.messages, final]
    category = review.get("category") or f.get("category") or _structured_category(messages) or "uncategorized"
    approved = c.feedback.get("approved")
    reviewer = review.get("reviewer") or f.get("validated_by")
    # seed 002: `quality_reviewed=false` means nobody reviewed it, whatever scores the row carries
    unreviewed = _falsy(f.get("quality_reviewed"))
    if unreviewed:
        review = {}
    validated = bool(not unreviewed and (approved is True or review or _truthy(f.get("validated"))))
    meta = c.feedback_meta.get("review") or c.feedback_meta.get("approved") or {}
    return {
        "candidate": c,
        "source_id": c.source_id,
        "tenant_id": c.tenant,
        "messages": messages,
        "tools": c.tools,
        "response": c.response,
        "gold": gold,
        "signal": signal_of(c.feedback),
        "quality10": q10,
        "quality": q01,
        "review": review,
        "quality_reviewed": not unreviewed,
        "followup": c.feedback.get("followup") is True or _truthy(f.get("had_followup")),
        "approved": approved is True or _truthy(f.get("approved")),
        "confidence": confidence,
        "category": str(category),
        "validated": validated,
        "validated_by": (reviewer or ("feedback" if validated else None)) if validated else None,
        "validated_at": (f.get("validated_at") or meta.get("ts") or c.ts) if validated else None,
        "status": "accepted" if validated else "pending",
        "ts": c.ts or "",
    }


def _truthy(v: Any) -> bool:
    return v is True or (isinstance(v, str) and v.strip().lower() in ("true", "yes", "1"))


def _falsy(v: Any) -> bool:
    return v is False or (isinstance(v, str) and v.strip().lower() in ("false", "no", "0"))


def _structured_category(messages: list[dict[str, Any]]) -> str | None:
    fields = structured_fields(messages)
    v = fields.get("intent_type") or fields.get("category")
    return str(v) if v else None


def _last_user(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        content = m.get("content")
        if m.get("role") == "user" and isinstance(content, str):
            return content
    return ""


def _reject_reason(r: dict[str, Any], o: BuildOptions, used: set[str], used_content: set[str]) -> str | None:
    if o.tenant is not None and r["tenant_id"] != o.tenant:
        return "other tenant"
    if o.skip_used and r["source_id"] in used:
        return "used in an earlier dataset"
    if o.skip_used and used_content and content_keys(r["messages"], r["response"]) & used_content:
        return "same content as an earlier dataset's example"
    if SIGNAL_RANK[r["signal"]] < SIGNAL_RANK[o.min_signal]:
        return f"signal below {o.min_signal}"
    if o.drop_followups and r["followup"]:
        return "had a follow-up"
    if o.approved_only and not r["approved"]:
        return "not approved"
    if (o.min_accept_quality10 is not None and r["review"] and r["quality10"] is not None
            and r["quality10"] < o.min_accept_quality10):
        return f"reviewer scored below {o.min_accept_quality10:g}/10 (do not include)"
    if o.min_quality10 is not None and (r["quality10"] is None or r["quality10"] < o.min_quality10):
        return f"quality below {o.min_quality10:g}/10"
    if o.min_quality is not None and (r["quality"] is None or r["quality"] < o.min_quality):
        return f"quality score below {o.min_quality:g}"
    if o.rubric_min is not None:
        if not r["quality_reviewed"]:
            return "quality_reviewed is false"
        rv = r["review"]
        scores = [_num(rv.get(k)) for k in ("overall", *RUBRIC_KEYS)]
        if any(s is None or s < o.rubric_min for s in scores):
            return f"rubric: overall and every score must be >= {o.rubric_min:g}"
    if o.min_confidence is not None and (r["confidence"] is None or r["confidence"] < o.min_confidence):
        return f"confidence below {o.min_confidence:g}"
    if o.min_chars is not None:
        last = r["messages"][-1]
        answer = last.get("content") or (json.dumps(last["tool_calls"]) if last.get("tool_calls") else "")
        if len(_last_user(r["messages"]).strip()) <= o.min_chars or len(answer.strip()) <= o.min_chars:
            return f"message not longer than {o.min_chars} chars"
    return None


def content_keys(messages: list[dict[str, Any]], original: str | None = None) -> set[str]:
    """Content identities of an example: its conversation as built, and with the original answer
    (so an edited earlier example still matches the same interaction seen again)."""
    keys = {content_sha(messages)}
    if original is not None:
        keys.add(content_sha(replace_answer(messages, original)))
    return keys


def build(candidates: list[Candidate], options: BuildOptions, used: set[str] | None = None,
          used_content: set[str] | None = None) -> BuildResult:
    """`used`: source ids already in datasets; `used_content`: their content keys (`content_keys`)."""
    used = used or set()
    used_content = used_content or set()
    if options.min_signal not in SIGNAL_RANK:
        raise ValueError(f"min signal must be one of {', '.join(SIGNAL_RANK)}, got {options.min_signal!r}")
    records = [annotate(c) for c in candidates]
    dropped: Counter[str] = Counter()
    kept: list[dict[str, Any]] = []
    for r in records:
        reason = _reject_reason(r, options, used, used_content)
        if reason:
            dropped[reason] += 1
        else:
            kept.append(r)
    # best first, so de-duplication keeps the most valuable copy and max N keeps the best
    # (seed 004: `--max N` keeps the most confident rows, so confidence ranks before recency)
    kept.sort(key=lambda r: (-SIGNAL_RANK[r["signal"]], -(r["quality10"] or -1), -(r["confidence"] or -1),
                             _neg(r["ts"]), r["source_id"]))
    texts = [example_text(r["messages"]) for r in kept]
    # one MinHash per text, shared by near-dedup and the leak-free split
    hashes = dedup.sketches(texts)
    keep_idx, removed = dedup.remove_duplicates(texts, options.dedup_threshold, hashes)
    dup_report = [
        {"source_id": kept[d["index"]]["source_id"], "duplicate_of": kept[d["duplicate_of"]]["source_id"],
         "kind": d["kind"], "similarity": d["similarity"]}
        for d in removed
    ]
    final = [kept[i] for i in keep_idx]
    capped = 0
    if options.max_examples is not None and len(final) > options.max_examples:
        capped = len(final) - options.max_examples
        final = final[: options.max_examples]
    final_idx = keep_idx[: len(final)]
    splits = dedup.split([texts[i] for i in final_idx], options.fractions, seed=options.seed,
                         threshold=options.split_threshold,
                         hashes=[hashes[i] for i in final_idx])
    examples = []
    for r, s in zip(final, splits, strict=True):
        ex = {k: v for k, v in r.items()
              if k not in ("candidate", "review", "approved", "ts", "quality_reviewed", "followup")}
        ex["split"] = s
        ex["content_sha"] = content_sha(r["messages"])
        examples.append(ex)
    cats = Counter(e["category"] for e in examples)
    prompts = Counter(system_prompt(e["messages"]) or "" for e in examples)
    report = {
        "candidates": len(candidates),
        "filtered_out": dict(dropped),
        "duplicates": {"exact": sum(1 for d in removed if d["kind"] == "exact"),
                       "near": sum(1 for d in removed if d["kind"] == "near"), "pairs": dup_report[:200]},
        "over_max": capped,
        "examples": len(examples),
        "signals": dict(Counter(e["signal"] for e in examples)),
        "categories": {k: {"count": v, "share": round(v / len(examples), 4)} for k, v in cats.most_common()},
        "splits": dict(Counter(e["split"] for e in examples)),
        "system_prompts": len(prompts),
        "data_requirements": data_requirements(records, len(examples)),
        "options": {k: v for k, v in asdict(options).items()},
    }
    return BuildResult(examples=examples, report=report)


APPROVAL_RATE_MIN = 0.90  # seed 002 data requirement: approval rate > 90%
APPROVAL_PLATEAU = 0.85  # seed 002 "when to fine-tune": approval rate plateaued < 85%
IDEAL_EXAMPLES = 1000  # seed 002: 1,000+ samples ideal (500 minimum: `dataset validate --min-examples 500`)


def data_requirements(records: list[dict[str, Any]], kept: int) -> list[dict[str, Any]]:
    """Seed 002's data requirements, checked on the candidate pool: [{name, status, detail}]."""
    rated = [r for r in records if "approved" in r["candidate"].feedback or "approved" in r["candidate"].fields]
    out: list[dict[str, Any]] = []
    if rated:
        rate = sum(1 for r in rated if r["approved"]) / len(rated)
        out.append({"name": "approval rate > 90% of the pool", "status": "pass" if rate > APPROVAL_RATE_MIN else "warn",
                    "value": round(rate, 4), "detail": f"{rate:.1%} of {len(rated)} rated samples approved"})
        out.append({"name": "approval rate plateaued < 85% (signal to fine-tune)",
                    "status": "yes" if rate < APPROVAL_PLATEAU else "no", "value": round(rate, 4),
                    "detail": f"{rate:.1%} {'<' if rate < APPROVAL_PLATEAU else '>='} 85%: "
                              + ("fine-tuning is called for" if rate < APPROVAL_PLATEAU
                                 else "the base model is approved often enough")})
    else:
        out.append({"name": "approval rate > 90% of the pool", "status": "unknown", "value": None,
                    "detail": "no sample carries an `approved` flag"})
    out.append({"name": "1,000+ examples (ideal)", "status": "pass" if kept >= IDEAL_EXAMPLES else "warn",
                "value": kept, "detail": f"{kept} examples kept; 1,000+ is ideal, 500 the minimum"})
    return out


def _neg(ts: str) -> str:
    # newest first among equals: invert the characters of the RFC 3339 stamp
    return "".join(chr(0x10FFFF - ord(ch)) for ch in ts)


def prompt_sha(examples: list[dict[str, Any]]) -> str | None:
    """sha256 of the most common system prompt (None when there is none)."""
    prompts = Counter(system_prompt(e["messages"]) for e in examples)
    top = next((p for p, _ in prompts.most_common() if p), None)
    return hashlib.sha256(top.encode()).hexdigest() if top else None


def to_openai_line(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """One chat fine-tuning line; `tools` (chat-format function definitions) when the example has them."""
    return json.dumps({"messages": messages, **({"tools": tools} if tools else {})}, ensure_ascii=False)
