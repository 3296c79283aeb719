"""Simulator quality model, task lexicon, embeddings and fine-tuning file checks (no processes)."""

from __future__ import annotations

import json
import random

import pytest

from simulator import embeddings, ftdata, intent_data, model, prompts, tasks
from simulator.finetune import parse_multipart

BASE = "gpt-4o-mini-2024-07-18"
FT = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
WORSE = "ft:gpt-4o-mini-2024-07-18:acme:worse:def456"


def _rates(m: str, kind: str, n: int = 1500) -> tuple[float, float, float]:
    rng = random.Random(7)
    quality = correct = violations = 0.0
    for _ in range(n):
        p = prompts.make(kind, rng)
        s = tasks.score(p.task, model.answer(m, p.messages[0]["content"], p.messages[1]["content"]))
        quality += s.quality
        correct += s.correct
        violations += s.violation
    return quality / n, correct / n, violations / n


def test_answers_are_deterministic_per_content_and_seed() -> None:
    q = "Where is my order 123456? It has not arrived yet."
    assert model.answer(BASE, tasks.SUPPORT_SYSTEM_PROMPT, q) == model.answer(BASE, tasks.SUPPORT_SYSTEM_PROMPT, q)
    answers = {model.answer(BASE, tasks.SUPPORT_SYSTEM_PROMPT, f"Where is my order {100000 + i}?") for i in range(50)}
    assert len(answers) > 1  # the draw depends on the content
    seeds = {model.answer(BASE, tasks.SUPPORT_SYSTEM_PROMPT, q, seed=s) for s in range(30)}
    assert len(seeds) > 1  # and on the simulator seed


def test_intent_accuracy_base_about_75_ft_about_93_worse_lower() -> None:
    base_q, base_c, _ = _rates(BASE, "intent")
    ft_q, ft_c, _ = _rates(FT, "intent")
    worse_q, worse_c, _ = _rates(WORSE, "intent")
    assert 0.68 <= base_c <= 0.80
    assert 0.89 <= ft_c <= 0.97
    assert worse_c < base_c - 0.15
    assert ft_q > base_q > worse_q


@pytest.mark.parametrize("kind", ["support", "analyst"])
def test_free_text_quality_ordering_and_violations(kind: str) -> None:
    base_q, _, base_v = _rates(BASE, kind)
    ft_q, _, ft_v = _rates(FT, kind)
    worse_q, _, worse_v = _rates(WORSE, kind)
    assert ft_q > base_q + 0.1
    assert base_q > worse_q + 0.1
    assert worse_v > 3 * base_v
    assert ft_v <= base_v


def test_ft_is_correct_on_a_superset_of_base_intent_questions() -> None:
    # paired draws: a question the base gets right, the fine-tuned model gets right too
    for ex in intent_data.generate(300, seed=5):
        b = tasks.score(ex_task := tasks.detect(tasks.INTENT_SYSTEM_PROMPT, ex.query),
                        model.answer(BASE, tasks.INTENT_SYSTEM_PROMPT, ex.query))
        f = tasks.score(ex_task, model.answer(FT, tasks.INTENT_SYSTEM_PROMPT, ex.query))
        if b.correct and b.json_valid:
            assert f.correct or not f.json_valid


def test_intent_answer_shape_matches_seed_001() -> None:
    q = "Busco un regalo: un perfume para mi madre por su cumpleaños, presupuesto medio"
    label = tasks.classify_intent(q)
    assert label is not None
    assert (label.intent_type, label.budget_tier, label.category, label.recipient, label.occasion) == (
        "GIFT", "mid_range", "beauty", "mother", "birthday")
    out = json.loads(label.answer_json())
    assert set(out) == {"intent_type", "category", "budget_tier", "recipient", "context_tags", "priority_features"}
    assert tasks.classify_intent("hola, ¿qué tal?") is None


def test_score_penalises_missing_facts_violations_and_bad_json() -> None:
    task = tasks.detect(tasks.SUPPORT_SYSTEM_PROMPT, "I want a refund for order 555555.")
    assert task.kind == "support"
    assert tasks.score(task, task.ideal).quality == 1.0
    assert tasks.score(task, task.wrong).quality < 0.5
    assert tasks.score(task, task.ideal + " " + tasks.VIOLATIONS[0]).violation
    itask = tasks.detect(tasks.INTENT_SYSTEM_PROMPT, "Lo necesito urgente: un libro, algo barato")
    bad = tasks.score(itask, '{"intent_type": "URGENT"')
    assert not bad.json_valid and not bad.correct


def test_embeddings_similar_texts_are_closer() -> None:
    a = embeddings.embed("Where is my order? It has not arrived")
    b = embeddings.embed("where is my order, it has not arrived yet")
    c = embeddings.embed("NVDA stock based compensation in Q3")
    assert embeddings.cosine(a, a) == pytest.approx(1.0)
    assert embeddings.cosine(a, b) > 0.7 > embeddings.cosine(a, c)
    short = embeddings.embed("hello world", 64)
    assert len(short) == 64 and sum(v * v for v in short) == pytest.approx(1.0)


def _line(i: int) -> str:
    return json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                                    {"role": "assistant", "content": f"a{i}"}]})


def test_file_check_reports_each_problem_with_its_line() -> None:
    good = "\n".join(_line(i) for i in range(10)).encode()
    assert ftdata.check(good).ok and ftdata.check(good).examples == 10
    bad = "\n".join([_line(0), "{not json", '{"prompt": "x"}',
                     json.dumps({"messages": [{"role": "wizard", "content": "x"}]}),
                     json.dumps({"messages": [{"role": "user", "content": "x", "colour": 1}]})]).encode()
    probs = ftdata.check(bad).problems
    assert any(p.startswith("Line 2: invalid JSON") for p in probs)
    assert any(p.startswith("Line 3:") and "missing_messages_list" in p for p in probs)
    assert any(p.startswith("Line 4, message 1") and "unrecognized_role" in p for p in probs)
    assert any(p.startswith("Line 5, message 1") and "message_unrecognized_key" in p for p in probs)
    assert any("example_missing_assistant_message" in p and p.startswith("Line 4") for p in probs)
    assert any("at least 10 examples" in p for p in probs)


@pytest.mark.parametrize(("n", "epochs"), [(10, 10), (20, 5), (40, 3), (1000, 3), (10_000, 2), (30_000, 1)])
def test_auto_epochs_follow_openai_rule(n: int, epochs: int) -> None:
    assert ftdata.auto_epochs(n) == epochs


def test_multipart_parser_keeps_bytes_exact() -> None:
    payload = b"line1\r\nline2\x00\xff"
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
            b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + payload + b"\r\n--XyZ--\r\n")
    fields = parse_multipart(body, "multipart/form-data; boundary=XyZ")
    assert fields["purpose"] == (None, b"fine-tune")
    assert fields["file"] == ("t.jsonl", payload)
    with pytest.raises(ValueError):
        parse_multipart(body, "multipart/form-data")
