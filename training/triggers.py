"""Retrain triggers (seed 003): new quality examples, systematic errors, system prompt change,
new question categories.

"New quality examples" counts the registry's quality examples since the last training and the
archive's quality interactions since then that no dataset holds yet (an edit or a thumbs up
without a follow-up: what the next `dataset build` would take), so a retrain shows as due
before anyone builds a dataset."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from training.registry import Registry
from training.sources import ArchiveFilter, Candidate, from_archive
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
    min_prompt_requests: int = 20,
    min_new_category: int = 5,
    today: datetime | None = None,
) -> list[Trigger]:
    runs = [r for r in reg.runs(tenant) if r["status"] != "failed" and r["status"] != "cancelled"]
    last = runs[-1] if runs else None
    since = last["created_at"] if last else ""
    all_examples = reg.examples(tenant=tenant)
    new = [e for e in all_examples if e["status"] in ("accepted", "pending")
           if e["created_at"] > since and (e["quality10"] is None or e["quality10"] >= min_quality10)
           and (e["quality10"] is not None or e["validated"])]
    in_datasets = {e["source_id"] for e in all_examples if e["source_id"]}
    now = today or datetime.now(UTC)
    cut = (now - timedelta(days=window_days)).strftime("%Y-%m-%d")
    prev_cut = (now - timedelta(days=2 * window_days)).strftime("%Y-%m-%d")
    first_day = min(prev_cut, since[:10]) if since else None
    cands, _ = from_archive(state_dir, ArchiveFilter(since=first_day, route=route, tenant=tenant))
    fresh = [c for c in cands if (c.ts or "") > since and c.source_id not in in_datasets and _quality_signal(c)]
    n_new = len(new) + len(fresh)
    out = [Trigger("new quality examples", n_new >= min_new_examples,
                   f"{n_new} new quality examples since "
                   f"{'the last training (' + since + ')' if last else 'ever (no training yet)'}: "
                   f"{len(new)} in datasets, {len(fresh)} quality interactions not yet curated; "
                   f"threshold {min_new_examples}")]
    cands = [c for c in cands if (c.ts or "")[:10] >= prev_cut]
    cats = {e["source_id"]: e["category"] for e in all_examples if e["source_id"]}
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
    out.append(_prompt_trigger(last["system_prompt_sha"] if last else None, prompts, min_prompt_requests))
    out.append(_category_trigger(last, all_examples, cands, cats, since, min_new_category))
    return out


def _quality_signal(c: Candidate) -> bool:
    """What `dataset build` takes by default from the archive: an edit or a thumbs up, no follow-up."""
    fb = c.feedback
    if fb.get("followup") is True:
        return False
    if isinstance(fb.get("edited_response"), str) and fb["edited_response"].strip():
        return True
    thumbs = fb.get("thumbs")
    return isinstance(thumbs, int | float) and not isinstance(thumbs, bool) and thumbs > 0


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _prompt_trigger(trained_sha: str | None, prompts: Counter[str], min_requests: int) -> Trigger:
    name = "system prompt changed"
    if trained_sha is None or not prompts:
        return Trigger(name, False, "unknown: " + ("no training run with a system prompt" if trained_sha is None
                                                   else "no recent traffic with a system prompt"))
    total = sum(prompts.values())
    other = sum(n for p, n in prompts.items() if _sha(p) != trained_sha)
    if _sha(prompts.most_common(1)[0][0]) != trained_sha:
        return Trigger(name, True, "the live system prompt differs from the one trained on")
    if other >= min_requests:  # a new prompt being rolled out, before it is the majority
        return Trigger(name, True, f"{other} of {total} recent requests ({other / total:.0%}) use a system prompt "
                                   f"not trained on (threshold {min_requests})")
    return Trigger(name, False, "same system prompt as the last training" + (
        f" ({other} recent request(s) with another prompt, under {min_requests})" if other else ""))


def _category_trigger(last: dict[str, Any] | None, examples: list[dict[str, Any]], cands: list[Candidate],
                      cats: dict[str, str], since: str, min_new: int) -> Trigger:
    name = "new question categories"
    if last is None:
        return Trigger(name, False, "unknown: no training run yet")
    trained = {str(e["category"]) for e in examples if e["category"] and e["status"] != "rejected"
               and (e["dataset_id"] == last["dataset_id"] if last["dataset_id"] else e["created_at"] <= since)}
    seen: Counter[str] = Counter()
    for e in examples:
        if e["created_at"] > since and e["category"] and e["status"] != "rejected":
            seen[str(e["category"])] += 1
    counted = {e["source_id"] for e in examples if e["created_at"] > since}
    for c in cands:
        review = c.feedback.get("review") if isinstance(c.feedback.get("review"), dict) else None
        cat = (review or {}).get("category") or cats.get(c.source_id)
        if cat and (c.ts or "") > since and c.source_id not in counted:
            seen[str(cat)] += 1
    new = {k: v for k, v in seen.items() if k not in trained and k != "uncategorized" and v >= min_new}
    if new:
        return Trigger(name, True, "not in the last training: " + ", ".join(
            f"{k} ({v})" for k, v in sorted(new.items(), key=lambda kv: -kv[1])))
    return Trigger(name, False, f"no category with {min_new}+ new examples that the last training lacked "
                                f"({len(trained)} trained categor{'y' if len(trained) == 1 else 'ies'})")


def as_dicts(triggers: list[Trigger]) -> list[dict[str, Any]]:
    return [t.__dict__ for t in triggers]
