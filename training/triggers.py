"""Retrain triggers (seed 003): new quality examples, systematic errors, system prompt change."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from training.registry import Registry
from training.sources import ArchiveFilter, from_archive
from training.validate import system_prompt


@dataclass(frozen=True)
class Trigger:
    name: str
    fired: bool
    detail: str


def _day(ts: str) -> str:
    return ts[:10]


def evaluate(
    state_dir: Path,
    reg: Registry,
    *,
    tenant: str | None = None,
    route: str | None = None,
    min_new_examples: int = 50,
    min_quality10: float = 7.0,
    window_days: int = 7,
    min_rate_increase: float = 0.05,
    min_interactions: int = 20,
    today: datetime | None = None,
) -> list[Trigger]:
    runs = [r for r in reg.runs(tenant) if r["status"] != "failed" and r["status"] != "cancelled"]
    last = runs[-1] if runs else None
    since = last["created_at"] if last else ""
    new = [e for e in reg.examples(tenant=tenant, status=("accepted", "pending"))
           if e["created_at"] > since and (e["quality10"] is None or e["quality10"] >= min_quality10)
           and (e["quality10"] is not None or e["validated"])]
    out = [Trigger("new quality examples", len(new) >= min_new_examples,
                   f"{len(new)} new quality examples since "
                   f"{'the last training (' + since + ')' if last else 'ever (no training yet)'}; "
                   f"threshold {min_new_examples}")]
    now = today or datetime.now(UTC)
    cut = (now - timedelta(days=window_days)).strftime("%Y-%m-%d")
    prev_cut = (now - timedelta(days=2 * window_days)).strftime("%Y-%m-%d")
    cands, _ = from_archive(state_dir, ArchiveFilter(since=prev_cut, route=route, tenant=tenant))
    cats = {e["source_id"]: e["category"] for e in reg.examples(tenant=tenant) if e["source_id"]}
    stats: dict[str, dict[str, list[int]]] = {}
    prompts: Counter[str] = Counter()
    for c in cands:
        review = c.feedback.get("review") if isinstance(c.feedback.get("review"), dict) else {}
        cat = str((review or {}).get("category") or cats.get(c.source_id) or c.route or "uncategorized")
        bad = int(c.feedback.get("thumbs") in (-1, -1.0) or bool(c.feedback.get("edited_response")))
        window = "recent" if _day(c.ts or "") >= cut else "previous"
        s = stats.setdefault(cat, {"recent": [0, 0], "previous": [0, 0]})
        s[window][0] += bad
        s[window][1] += 1
        if window == "recent":
            sp = system_prompt(c.messages)
            if sp:
                prompts[sp] += 1
    rising = []
    for cat, s in sorted(stats.items()):
        (rb, rn), (pb, pn) = s["recent"], s["previous"]
        if rn >= min_interactions and pn >= min_interactions:
            delta = rb / rn - pb / pn
            if delta >= min_rate_increase:
                rising.append(f"{cat}: {pb / pn:.0%} -> {rb / rn:.0%}")
    out.append(Trigger("systematic errors", bool(rising),
                       "; ".join(rising) if rising else
                       f"no category's thumbs-down/edit rate rose by {min_rate_increase:.0%}+ "
                       f"(last {window_days} days vs the {window_days} before, >= {min_interactions} each)"))
    trained_sha = last["system_prompt_sha"] if last else None
    current = prompts.most_common(1)[0][0] if prompts else None
    current_sha = hashlib.sha256(current.encode()).hexdigest() if current else None
    if trained_sha is None or current_sha is None:
        out.append(Trigger("system prompt changed", False,
                           "unknown: " + ("no training run with a system prompt" if trained_sha is None
                                          else "no recent traffic with a system prompt")))
    else:
        out.append(Trigger("system prompt changed", trained_sha != current_sha,
                           "the live system prompt differs from the one trained on" if trained_sha != current_sha
                           else "same system prompt as the last training"))
    return out


def as_dicts(triggers: list[Trigger]) -> list[dict[str, Any]]:
    return [t.__dict__ for t in triggers]
