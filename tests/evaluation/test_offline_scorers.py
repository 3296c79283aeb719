"""Known answers for the offline scorers (and the custom-scorer plug-in path)."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
import respx

from evaluation.offline import scorers as sc
from evaluation.offline.dataset import EvalExample

REF = {"intent_type": "GIFT", "category": "home", "budget_tier": "mid_range", "recipient": "mother"}


def ex(reference: str, *, key_facts: tuple[str, ...] | None = None, user: str = "q") -> EvalExample:
    return EvalExample(id="x", line=1, prompt=({"role": "user", "content": user},), reference=reference,
                       category="c", key_facts=key_facts)


def one(scorer: sc.Scorer, reference: str, output: str, **kw) -> dict:
    e = ex(reference, **kw)
    scorer.prepare([e])
    return scorer.score_all([(e, output)])[0]


def test_exact_match_compares_json_as_values_and_text_modulo_whitespace() -> None:
    s = sc.ExactMatch()
    assert one(s, json.dumps(REF), json.dumps(dict(reversed(list(REF.items()))), indent=2)) == {"exact_match": 1.0}
    assert one(s, json.dumps(REF), json.dumps({**REF, "budget_tier": "premium"})) == {"exact_match": 0.0}
    assert one(s, "Hello  world.\n", " Hello world.") == {"exact_match": 1.0}
    assert one(s, "Hello world.", "Hello world!") == {"exact_match": 0.0}


def test_json_valid_only_applies_to_json_references() -> None:
    s = sc.JsonValid()
    assert one(s, json.dumps(REF), json.dumps(REF)) == {"json_valid": 1.0}
    assert one(s, json.dumps(REF), "Claro: " + json.dumps(REF)[:20]) == {"json_valid": 0.0}
    assert one(s, json.dumps(REF), "[1, 2]") == {"json_valid": 0.0}  # wrong JSON type
    assert one(s, "a prose answer", "anything") == {"json_valid": None}


def test_field_accuracy_per_field_and_all_fields() -> None:
    s = sc.FieldAccuracy()
    good = one(s, json.dumps(REF), json.dumps(REF))
    assert good == {"field.intent_type": 1.0, "field.budget_tier": 1.0, "all_fields_correct": 1.0}
    half = one(s, json.dumps(REF), json.dumps({**REF, "budget_tier": "premium"}))
    assert half == {"field.intent_type": 1.0, "field.budget_tier": 0.0, "all_fields_correct": 0.0}
    broken = one(s, json.dumps(REF), '{"intent_type": "GIFT", ')
    assert broken == {"field.intent_type": 0.0, "field.budget_tier": 0.0, "all_fields_correct": 0.0}
    # a field the reference does not have is not applicable, and prose references score nothing
    only_intent = one(s, json.dumps({"intent_type": "GIFT"}), json.dumps({"intent_type": "GIFT"}))
    assert only_intent == {"field.intent_type": 1.0, "field.budget_tier": None, "all_fields_correct": 1.0}
    assert set(one(s, "prose", "prose").values()) == {None}
    custom = sc.FieldAccuracy(["recipient"])
    assert one(custom, json.dumps(REF), json.dumps({**REF, "recipient": "father"})) == {
        "field.recipient": 0.0, "all_fields_correct": 0.0}


def test_key_facts_given_or_numbers_from_the_reference() -> None:
    s = sc.KeyFacts()
    r = one(s, "irrelevant", "NVIDIA revenue was $35.1B, up 94%", key_facts=("$35.1B", "94%", "Q3 FY2025", "data center"))
    assert r == {"key_facts": 0.5}
    ref = "NVIDIA's SBC in Q3 FY2025 was $1.4B, representing 4.7% of revenue of 35,082 million."
    assert sc.reference_numbers(ref)[:3] == ("3", "2025", "$1.4b")
    got = one(s, ref, "SBC was $1.4B (4.7% of revenue) in Q3 FY2025; revenue 35082 million")["key_facts"]
    assert got == 1.0
    assert one(s, ref, "SBC was about 5% of revenue")["key_facts"] == 0.0
    assert one(s, "no numbers here", "whatever") == {"key_facts": None}


def test_length_ratio_band_is_inclusive() -> None:
    s = sc.LengthRatio()
    assert one(s, "x" * 10, "y" * 5) == {"length_ratio": 0.5, "length_ok": 1.0}
    assert one(s, "x" * 10, "y" * 20) == {"length_ratio": 2.0, "length_ok": 1.0}
    assert one(s, "x" * 10, "y" * 4) == {"length_ratio": 0.4, "length_ok": 0.0}
    assert one(s, "x" * 10, "y" * 21)["length_ok"] == 0.0
    assert one(s, "   ", "y") == {"length_ratio": None, "length_ok": None}


def test_tfidf_similarity_orders_answers_by_overlap() -> None:
    refs = ["NVIDIA reported third quarter revenue of 35.1 billion dollars driven by data center sales",
            "Alphabet GAAP earnings per share were 2.12 while non GAAP adjustments were small"]
    exs = [ex(r) for r in refs]
    s = sc.TfidfSimilarity()
    s.prepare(exs)
    same, para, other, empty = s.score_all([(exs[0], refs[0]), (exs[0], "NVIDIA third quarter revenue was 35.1 billion"),
                                            (exs[0], refs[1]), (exs[0], "")])
    assert same["similarity"] == pytest.approx(1.0)
    assert 0.3 < para["similarity"] < 0.95
    assert other["similarity"] < para["similarity"]
    assert empty == {"similarity": 0.0}


def bool_scorer(example: EvalExample, output: str) -> bool:
    return "GIFT" in output


def multi_scorer(example: EvalExample, output: str) -> dict:
    return {"mentions_gift": "GIFT" in output, "chars": float(len(output)), "skip": None}


def test_custom_scorers_by_import_path() -> None:
    [a, b] = sc.build([f"{__name__}:bool_scorer", f"{__name__}:multi_scorer"])
    assert one(a, "r", "a GIFT") == {"bool_scorer": 1.0}
    assert a.metrics() == (sc.MetricSpec("bool_scorer", "binary", True),)
    assert one(b, "r", "GIFT!") == {"mentions_gift": 1.0, "chars": 5.0, "skip": None}
    kinds = {m.name: m.kind for m in b.metrics()}
    assert kinds["mentions_gift"] == "binary" and kinds["chars"] == "continuous"


def test_build_rejects_unknown_and_unimportable_scorers() -> None:
    with pytest.raises(sc.ScorerError, match="unknown scorer 'nope'.*built-ins"):
        sc.build(["nope"])
    with pytest.raises(sc.ScorerError, match="cannot import 'no_such_module_xyz'"):
        sc.build(["no_such_module_xyz:f"])
    with pytest.raises(sc.ScorerError, match="has no function 'missing'"):
        sc.build([f"{__name__}:missing"])
    with pytest.raises(sc.ScorerError, match="needs --judge-route"):
        sc.build(["llm_judge"])
    names = [s.name for s in sc.build(list(sc.DEFAULT_SCORERS))]
    assert names == ["exact_match", "json_valid", "field_accuracy", "key_facts", "length_ratio", "similarity"]


def test_parse_judge_score() -> None:
    assert sc.parse_judge_score("8") == 8.0
    assert sc.parse_judge_score("Score: 10/10") == 10.0
    assert sc.parse_judge_score("I'd say 7 out of 10") == 7.0
    assert sc.parse_judge_score("no idea") is None


@respx.mock
def test_llm_judge_goes_through_the_judge_route_and_never_invents_scores() -> None:
    seen: list[dict] = []

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({"body": body, "auth": request.headers.get("authorization")})
        text = "9" if "good answer" in body["messages"][0]["content"] else "hmm"
        return httpx.Response(200, json={"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                                         "choices": [{"index": 0, "finish_reason": "stop",
                                                      "message": {"role": "assistant", "content": text}}]})

    respx.post("http://gw.test/v1/chat/completions").mock(side_effect=reply)
    client = openai.OpenAI(base_url="http://gw.test/v1", api_key="admin-tok", http_client=httpx.Client(), max_retries=0)
    [judge] = sc.build(["llm_judge"], sc.ScorerOptions(judge_client=client, judge_route="judge", concurrency=2))
    e = ex("the reference")
    out = judge.score_all([(e, "a good answer"), (e, "a bad answer")])
    assert out == [{"judge_score": 9.0}, {"judge_score": None}]
    assert {s["body"]["model"] for s in seen} == {"judge"}
    assert all(s["auth"] == "Bearer admin-tok" for s in seen)
    assert len(judge.failures) == 1 and "unparseable" in judge.failures[0]


@respx.mock
def test_embedding_similarity_uses_the_embeddings_endpoint() -> None:
    vectors = {"ref": [1.0, 0.0], "same": [2.0, 0.0], "orth": [0.0, 3.0]}

    def reply(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert body["model"] == "text-embedding-3-small"
        return httpx.Response(200, json={"object": "list", "model": body["model"],
                                         "usage": {"prompt_tokens": 1, "total_tokens": 1},
                                         "data": [{"object": "embedding", "index": i, "embedding": vectors[t]}
                                                  for i, t in enumerate(body["input"])]})

    route = respx.post("http://up.test/v1/embeddings").mock(side_effect=reply)
    client = openai.OpenAI(base_url="http://up.test/v1", api_key="k", http_client=httpx.Client(), max_retries=0)
    [s] = sc.build(["similarity"], sc.ScorerOptions(embeddings_client=client, embeddings_model="text-embedding-3-small"))
    e = ex("ref")
    assert s.score_all([(e, "same"), (e, "orth")]) == [{"similarity": pytest.approx(1.0)}, {"similarity": pytest.approx(0.0)}]
    assert route.call_count == 1  # batched
