"""Known-answer tests: token counts, epochs, cost, dedup, split leakage, validation, curation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import build as bd
from training import dedup
from training import tokens as tk
from training.registry import MIGRATIONS, Registry
from training.sources import Candidate
from training.validate import validate_file, validate_lines

SYS = {"role": "system", "content": "You are a helpful assistant."}


def test_token_counts_known_answers() -> None:
    # o200k_base: "hello world" -> [24912, 2375]; "You are a helpful assistant." -> 6 tokens
    assert tk.count_text("hello world") == 2
    assert tk.count_text("You are a helpful assistant.") == 6
    user = {"role": "user", "content": "hello world"}
    # 3 per message + role token + content tokens, 3 reply priming
    assert tk.count_messages([user]) == 3 + 1 + 2 + 3
    assert tk.count_messages([SYS, user]) == (3 + 1 + 6) + (3 + 1 + 2) + 3
    # a name costs its tokens plus one
    assert tk.count_messages([{**user, "name": "bob"}]) == 3 + 1 + 2 + 1 + 1 + 3


def test_token_counts_match_tiktoken(tmp_path, monkeypatch) -> None:
    """Cross-check against tiktoken, fed offline from the encoding file bpe-openai ships (tiktoken
    would download it): its cache is `$TIKTOKEN_CACHE_DIR/<sha1 of the URL>`."""
    import gzip
    import hashlib
    from importlib import resources

    import tiktoken
    import tiktoken_ext.openai_public as public

    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    data = gzip.decompress((resources.files("bpe_openai") / "data" / "o200k_base.tiktoken.gz").read_bytes())
    (tmp_path / hashlib.sha1(url.encode()).hexdigest()).write_bytes(data)
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    enc = tiktoken.Encoding(**public.o200k_base())  # reads the cache, verifies the file's sha256
    texts = ("hello world", "Busco algo especial para mi madre en su cumpleaños", "NVDA SBC Q3 FY2025: $1.40B",
             "¿Dónde está mi pedido #123456? 🚚", "def f(x):\n    return x ** 2\n")
    for text in texts:
        assert tk.count_text(text) == len(enc.encode(text))


def test_auto_epochs_rule() -> None:
    assert tk.auto_epochs(10) == 10  # 30 < 100 -> min(25, 100 // 10)
    assert tk.auto_epochs(3) == 25  # min(25, 33)
    assert tk.auto_epochs(34) == 3  # 102 >= 100
    assert tk.auto_epochs(33) == 3  # 99 < 100 -> min(25, 100 // 33) == 3
    assert tk.auto_epochs(400) == 3
    assert tk.auto_epochs(10_000) == 2  # 30,000 > 25,000 -> 25,000 // 10,000
    assert tk.auto_epochs(30_000) == 1


def test_cost_estimate_seed_003_example() -> None:
    # 100 examples x 500 tokens x 3 epochs = 150,000 tokens at $3.00 / 1M = $0.45
    est = tk.estimate([500] * 100, "gpt-4o-mini-2024-07-18", epochs=3)
    assert est.billed_tokens == 150_000
    assert est.cost_usd == pytest.approx(0.45)
    assert tk.estimate([500] * 100, "gpt-4o-2024-08-06", epochs=3).cost_usd == pytest.approx(3.75)
    # over-limit examples are billed at the limit
    capped = tk.estimate([70_000, 1_000], "gpt-4o-mini-2024-07-18", epochs=1)
    assert capped.billed_tokens == 65_536 + 1_000 and capped.truncated == 1
    assert tk.training_price("ft:gpt-4o-mini-2024-07-18:acme::x") == 3.00


def test_dedup_exact_and_near() -> None:
    texts = [
        "How do I reset my password on the mobile app today please",
        "how do i reset my password on the mobile app today please!!",  # exact after normalisation
        "How do I reset my password on the mobile app today please now",  # near
        "What is the refund policy for damaged items shipped abroad",
    ]
    kept, removed = dedup.remove_duplicates(texts, 0.7)
    assert kept == [0, 3]
    assert {(r["index"], r["duplicate_of"], r["kind"]) for r in removed} == {(1, 0, "exact"), (2, 0, "near")}
    kept_exact_only, _ = dedup.remove_duplicates(texts, None)
    assert kept_exact_only == [0, 2, 3]


def test_split_is_deterministic_and_never_leaks_near_duplicates() -> None:
    base = [f"customer {i} asks about order {i * 37} delivery status and tracking number" for i in range(60)]
    texts = []
    for t in base:  # every text comes with two near-duplicate variants
        texts += [t, t + " please", t + " thanks a lot"]
    fractions = {"train": 0.8, "validation": 0.1, "heldout": 0.1}
    a = dedup.split(texts, fractions, seed="s1")
    assert a == dedup.split(texts, fractions, seed="s1")
    for i in range(0, len(texts), 3):
        assert len({a[i], a[i + 1], a[i + 2]}) == 1, f"cluster {i // 3} split across {a[i:i + 3]}"
    counts = {k: a.count(k) for k in fractions}
    assert abs(counts["train"] - 144) <= 3 and counts["validation"] >= 15 and counts["heldout"] >= 15


def _cand(i: int, fb: dict, user: str | None = None, answer: str | None = None, **fields) -> Candidate:
    return Candidate(
        source_id=f"i{i}", tenant="acme",
        messages=[SYS, {"role": "user", "content": user or f"question number {i} about topic {i * 11} in detail"}],
        response=answer or f"answer number {i} covering topic {i * 11} with all the facts", feedback=fb,
        ts=f"2025-01-{10 + i % 10:02d}T00:00:00Z", fields=fields)


def test_signal_ranking_and_gold_answer() -> None:
    assert bd.signal_of({"edited_response": "fixed", "thumbs": -1}) == "edited"
    assert bd.signal_of({"thumbs": 1}) == "thumbs_up"
    assert bd.signal_of({"thumbs": 1, "followup": True}) == "followup"
    assert bd.signal_of({}) == "no_followup"
    assert bd.signal_of({"thumbs": -1}) == "thumbs_down"
    cands = [_cand(1, {"thumbs": 1}), _cand(2, {"edited_response": "the corrected answer for topic 22 in full"}),
             _cand(3, {"thumbs": -1}), _cand(4, {"followup": True}), _cand(5, {})]
    res = bd.build(cands, bd.BuildOptions(min_signal="thumbs_up", dedup_threshold=None))
    assert [e["source_id"] for e in res.examples] == ["i2", "i1"]  # edits rank above thumbs up
    edited = res.examples[0]
    assert edited["messages"][-1] == {"role": "assistant", "content": "the corrected answer for topic 22 in full"}
    assert edited["gold"] == "the corrected answer for topic 22 in full"
    assert res.report["filtered_out"] == {"signal below thumbs_up": 3}


def test_filters_quality_rubric_confidence_length_and_used() -> None:
    good_review = {"overall": 5, "factuality": 4, "helpfulness": 5, "tone": 4, "policy": 5, "completeness": 4,
                   "quality": 8, "category": "sbc_breakdown"}
    bad_review = {**good_review, "tone": 3}
    cands = [
        _cand(1, {"thumbs": 1, "review": good_review, "approved": True}),
        _cand(2, {"thumbs": 1, "review": bad_review, "approved": True}),
        _cand(3, {"thumbs": 1, "approved": True}),  # no review: missing data never passes
    ]
    res = bd.build(cands, bd.BuildOptions(rubric_min=4, approved_only=True, dedup_threshold=None))
    assert [e["source_id"] for e in res.examples] == ["i1"]
    assert res.examples[0]["category"] == "sbc_breakdown" and res.examples[0]["quality10"] == 8
    assert res.examples[0]["validated"] is True
    q = bd.build(cands, bd.BuildOptions(min_quality10=7, dedup_threshold=None))
    assert sorted(e["source_id"] for e in q.examples) == ["i1", "i2"]  # newest first among equals
    assert bd.build(cands, bd.BuildOptions(min_quality=0.85, dedup_threshold=None)).examples == []
    files = [_cand(1, {}, confidence=0.9, quality=0.9), _cand(2, {}, confidence=0.7, quality=0.95),
             _cand(3, {}, user="short?", confidence=0.95)]
    r = bd.build(files, bd.BuildOptions(min_confidence=0.8, min_chars=20, dedup_threshold=None))
    assert [e["source_id"] for e in r.examples] == ["i1"]
    assert r.examples[0]["quality"] == 0.9 and r.examples[0]["quality10"] == 9
    skipped = bd.build(files, bd.BuildOptions(dedup_threshold=None), used={"i1"})
    assert "i1" not in {e["source_id"] for e in skipped.examples}


def test_build_max_and_near_duplicate_report() -> None:
    cands = [_cand(i, {"thumbs": 1}) for i in range(8)]
    cands.append(_cand(20, {"thumbs": 1}, user=cands[0].messages[1]["content"], answer=cands[0].response + " ok"))
    res = bd.build(cands, bd.BuildOptions(max_examples=5, dedup_threshold=0.7))
    assert len(res.examples) == 5 and res.report["over_max"] == 3
    assert res.report["duplicates"]["near"] == 1
    assert res.report["duplicates"]["pairs"][0]["duplicate_of"] == "i0"


def _line(user: str, answer: str, system: str = "You are support.") -> str:
    return json.dumps({"messages": [{"role": "system", "content": system}, {"role": "user", "content": user},
                                    {"role": "assistant", "content": answer}]})


def test_validate_reports_every_rule_with_line_numbers(tmp_path: Path) -> None:
    lines = [_line(f"question {i} about orders number {i * 13}", f"answer {i} with detail {i * 17}") for i in range(12)]
    lines[1] = "{not json"
    lines[2] = json.dumps([1, 2])
    lines[3] = json.dumps({"msgs": []})
    lines[4] = json.dumps({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]})
    lines[5] = json.dumps({"messages": [{"role": "user", "content": "hi", "foo": 1},
                                        {"role": "assistant", "content": "x"}]})
    lines[6] = json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]})
    lines[7] = json.dumps({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}]})
    lines[8] = json.dumps({"messages": [{"role": "user", "content": "only a question"}]})
    lines[9] = json.dumps({"messages": [{"role": "user", "content": "q"},
                                        {"role": "assistant", "content": "x", "weight": 2}]})
    lines[10] = _line("question 10", "answer", system="A different prompt.")
    f = tmp_path / "bad.jsonl"
    f.write_text("\n".join(lines) + "\n")
    rep = validate_file(f)
    got = {(p.line, p.code) for p in rep.errors}
    for expected in [(2, "invalid_json"), (3, "data_type"), (4, "missing_messages_list"), (5, "message_missing_key"),
                     (6, "message_unrecognized_key"), (7, "unrecognized_role"), (8, "missing_content"),
                     (9, "example_missing_assistant_message"), (10, "invalid_weight")]:
        assert expected in got, (expected, sorted(got))
    assert any(p.code == "inconsistent_system_prompt" for p in rep.errors)
    assert not rep.ok


def test_validate_minimums_limits_and_warnings() -> None:
    good = [_line(f"question {i} about orders number {i * 13}", f"answer {i} with detail {i * 17}") for i in range(12)]
    rep = validate_lines(good)
    assert rep.ok and any(p.code == "few_examples" for p in rep.warnings)
    assert validate_lines(good[:9]).errors[0].code == "too_few_examples"
    assert not validate_lines(good, min_examples=500).ok
    dup = validate_lines([*good, good[0]])
    assert any(p.code == "duplicate" and p.line == 13 and "line 1" in p.message for p in dup.warnings)
    huge = validate_lines([*good, _line("x " * 70_000, "y")])
    assert any(p.code == "token_limit" and p.line == 13 for p in huge.errors)
    assert {c.name for c in rep.checklist} >= {"no duplicate or near-duplicate examples", "balanced across categories"}


def test_registry_migrations_and_review(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    assert reg.schema_version == len(MIGRATIONS)
    ex = {"source_id": "i1", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
          "content_sha": "x", "category": "c", "split": "train"}
    ds = reg.create_dataset(tenant="acme", name="d", source="test", examples=[ex])
    (e,) = reg.examples(dataset_id=ds)
    reviewed = reg.review_example(e["id"], action="edit", reviewer="ana", gold="better", quality10=9)
    assert reviewed["messages"][-1]["content"] == "better" and reviewed["validated_by"] == "ana"
    assert reviewed["quality"] == 0.9 and reviewed["validated_at"]
    assert reg.used_source_ids("acme") == {"i1"}
    reg.review_example(e["id"], action="reject", reviewer="ana")
    assert reg.used_source_ids("acme") == set()
    with pytest.raises(ValueError):
        reg.review_example(e["id"], action="edit", reviewer="ana")
    reg.close()
    assert Registry(tmp_path).schema_version == len(MIGRATIONS)  # reopening does not re-migrate
