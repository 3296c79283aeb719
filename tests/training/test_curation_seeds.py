"""Seed 002/003/004 curation fixes: follow-ups, re-proposed content, --max by confidence,
quality_reviewed, reviewer scores 1-4, data requirements, accept + gold, delete, review list,
validate at or above X, export defaults and tenant errors, checklist from the registry."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from abgate.cli.main import app
from training import build as bd
from training.registry import Registry
from training.sources import Candidate

SYS = {"role": "system", "content": "You are SigmaSight."}
run = CliRunner().invoke


def _cand(i: int, fb: dict, *, user: str | None = None, answer: str | None = None, **fields) -> Candidate:
    return Candidate(
        source_id=f"i{i}", tenant="acme",
        messages=[SYS, {"role": "user", "content": user or f"question number {i} about topic {i * 11} in detail"}],
        response=answer or f"answer number {i} covering topic {i * 11} with all the facts", feedback=fb,
        ts=f"2025-01-{10 + i % 10:02d}T00:00:00Z", fields=fields)


def _opts(**kw) -> bd.BuildOptions:
    return bd.BuildOptions(dedup_threshold=None, **kw)


def test_edited_answers_with_a_followup_are_dropped_like_the_seed_sql() -> None:
    cands = [_cand(1, {"edited_response": "the fixed answer for one", "followup": True}),
             _cand(2, {"edited_response": "the fixed answer for two"}), _cand(3, {"thumbs": 1})]
    res = bd.build(cands, _opts(min_signal="thumbs_up"))
    assert [e["source_id"] for e in res.examples] == ["i2", "i3"]
    assert res.report["filtered_out"] == {"had a follow-up": 1}
    old = bd.build(cands, _opts(min_signal="thumbs_up", drop_followups=False))
    assert len(old.examples) == 3


def test_rerun_does_not_repropose_content_identical_to_earlier_examples(tmp_path: Path) -> None:
    first = [_cand(i, {"thumbs": 1}) for i in range(4)] + [_cand(9, {"edited_response": "a better answer nine"})]
    res = bd.build(first, _opts(min_signal="thumbs_up"))
    with Registry(tmp_path) as reg:
        reg.create_dataset(tenant="acme", name="week-1", source="t", examples=res.examples)
        used, content = reg.used_source_ids(), reg.used_content_keys()
    # the same conversations again under new interaction ids (the edit re-seen with its original answer)
    again = [Candidate(**{**c.__dict__, "source_id": c.source_id + "-again"}) for c in first]
    again[-1].feedback = {"thumbs": 1}
    fresh = _cand(20, {"thumbs": 1})
    res2 = bd.build([*again, fresh], _opts(min_signal="thumbs_up"), used, content)
    assert [e["source_id"] for e in res2.examples] == ["i20"]
    assert res2.report["filtered_out"] == {"same content as an earlier dataset's example": 5}


def test_max_keeps_the_most_confident_rows_not_the_newest() -> None:
    cands = [_cand(i, {}, confidence=str(c)) for i, c in enumerate([0.81, 0.99, 0.85, 0.95, 0.9])]
    res = bd.build(cands, _opts(min_confidence=0.8, max_examples=2))
    assert sorted(e["confidence"] for e in res.examples) == [0.95, 0.99]


def test_quality_reviewed_false_rows_are_dropped_even_with_rubric_scores() -> None:
    rubric = {"overall": 5, "factuality": 5, "helpfulness": 5, "tone": 5, "policy": 5, "completeness": 5}
    cands = [_cand(1, {"approved": True, "review": rubric}, quality_reviewed="false"),
             _cand(2, {"approved": True, "review": rubric}, quality_reviewed=True),
             _cand(3, {"approved": True, "review": rubric})]
    cands[1].fields["quality_reviewed"] = True
    res = bd.build(cands, _opts(approved_only=True, rubric_min=4))
    assert sorted(e["source_id"] for e in res.examples) == ["i2", "i3"]
    assert res.report["filtered_out"] == {"quality_reviewed is false": 1}


def test_reviewer_scores_1_to_4_are_never_auto_accepted() -> None:
    cands = [_cand(1, {"thumbs": 1, "review": {"quality": 3, "category": "sbc_breakdown"}}),
             _cand(2, {"thumbs": 1, "review": {"quality": 8, "category": "sbc_breakdown"}})]
    res = bd.build(cands, _opts(min_signal="thumbs_up"))
    assert [(e["source_id"], e["status"]) for e in res.examples] == [("i2", "accepted")]
    assert res.report["filtered_out"] == {"reviewer scored below 5/10 (do not include)": 1}


def test_data_requirements_of_seed_002_are_reported() -> None:
    cands = [_cand(i, {"approved": i < 8}) for i in range(10)]  # 80% approved
    req = {r["name"]: r for r in bd.build(cands, _opts()).report["data_requirements"]}
    assert req["approval rate > 90% of the pool"]["status"] == "warn"
    assert req["approval rate > 90% of the pool"]["value"] == 0.8
    assert req["approval rate plateaued < 85% (signal to fine-tune)"]["status"] == "yes"
    assert req["1,000+ examples (ideal)"]["status"] == "warn"
    good = {r["name"]: r for r in bd.build([_cand(i, {"approved": True}) for i in range(10)],
                                           _opts()).report["data_requirements"]}
    assert good["approval rate > 90% of the pool"]["status"] == "pass"
    assert good["approval rate plateaued < 85% (signal to fine-tune)"]["status"] == "no"


def _calls(path: Path, tenant: str = "acme") -> Path:
    rows = [{"id": f"c{i}", "tenant_id": tenant, "user_message": f"How do I reset my password, case {i}? thanks",
             "assistant_response": f"Open settings, choose security, then reset for case {i}.",
             "confidence": 0.8 + i / 100, "quality_score": round(0.6 + i / 30, 3)} for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _build(state: Path, src: Path, *extra: str) -> str:
    r = run(app, ["dataset", "build", "--from-file", str(src), "--name", "calls", "--tenant", "acme",
                  "--near-dup", "0", "--state-dir", str(state), "--json", *extra])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)["dataset_id"]


def test_examples_list_mark_validated_export_and_delete(tmp_path: Path) -> None:
    state = tmp_path / "s"
    ds = _build(state, _calls(tmp_path / "calls.jsonl"), "--description", "high-confidence calls")
    listed = json.loads(run(app, ["dataset", "list", "--state-dir", str(state), "--json"]).stdout)
    assert listed[0]["description"] == "high-confidence calls"
    r = run(app, ["dataset", "examples", ds, "--state-dir", str(state), "--json"])
    rows = json.loads(r.stdout)
    scores = [x["quality_score"] for x in rows]
    assert scores == sorted(scores, reverse=True) and len(rows) == 12
    assert {x["validated"] for x in rows} == {False} and rows[0]["user_message"].startswith("How do I reset")
    # default export: validated only -> nothing yet, with the reason and exit 1
    r = run(app, ["dataset", "export", ds, "--state-dir", str(state)])
    assert r.exit_code == 1 and "12 unreviewed" in r.output and "--include-unreviewed" in r.output
    assert len(run(app, ["dataset", "export", ds, "--include-unreviewed", "--state-dir", str(state)])
               .stdout.splitlines()) == 12
    r = run(app, ["dataset", "mark-validated", ds, "--min-quality-score", "0.85", "--reviewer", "alice",
                  "--state-dir", str(state), "--json"])
    assert json.loads(r.stdout)["newly_validated"] == 4  # 0.6 + i/30 >= 0.85 for i = 8..11
    rows = json.loads(run(app, ["dataset", "examples", ds, "--validated-only", "--state-dir", str(state),
                                "--json"]).stdout)
    assert all(x["quality_score"] >= 0.85 and x["validated_by"] == "alice" for x in rows) and len(rows) == 4
    assert len(run(app, ["dataset", "export", ds, "--state-dir", str(state)]).stdout.splitlines()) == 4
    # the wrong tenant: a clear message and exit 1
    r = run(app, ["dataset", "export", ds, "--tenant", "globex", "--state-dir", str(state)])
    assert r.exit_code == 1 and "belongs to tenant 'acme', not 'globex'" in r.output
    r = run(app, ["dataset", "delete", ds, "--yes", "--state-dir", str(state)])
    assert r.exit_code == 0 and "12 example(s)" in r.output
    assert json.loads(run(app, ["dataset", "list", "--state-dir", str(state), "--json"]).stdout) == []
    assert run(app, ["dataset", "export", ds, "--state-dir", str(state)]).exit_code == 1
    # deleted: the same calls can be curated again
    _build(state, tmp_path / "calls.jsonl")


def test_accept_with_a_gold_correction_exports_the_correction(tmp_path: Path) -> None:
    state = tmp_path / "s"
    ds = _build(state, _calls(tmp_path / "calls.jsonl"))
    decisions = tmp_path / "d.jsonl"
    decisions.write_text(json.dumps({"source_id": "c3", "action": "accept", "gold": "The reviewer's answer."}) + "\n")
    assert run(app, ["dataset", "review", ds, "--decisions", str(decisions), "--state-dir", str(state)]).exit_code == 0
    out = run(app, ["dataset", "export", ds, "--state-dir", str(state)]).stdout
    assert [json.loads(x)["messages"][-1]["content"] for x in out.splitlines()] == ["The reviewer's answer."]


def test_checklist_knows_review_dates_and_categories_of_an_exported_file(tmp_path: Path) -> None:
    state = tmp_path / "s"
    src = tmp_path / "calls.jsonl"
    rows = [{"id": f"c{i}", "user_message": f"Question {i} about the {['10-K', '10-Q'][i % 2]} filing please?",
             "assistant_response": f"Answer {i} citing the filing precisely.", "category": ["sec_10k", "sec_10q"][i % 2],
             "quality_score": 0.9} for i in range(10)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ds = _build(state, src)
    unreviewed = tmp_path / "u.jsonl"
    unreviewed.write_text(run(app, ["dataset", "export", ds, "--include-unreviewed", "--state-dir", str(state)]).stdout)
    r = run(app, ["dataset", "validate", str(unreviewed), "--state-dir", str(state), "--json"])
    items = {c["name"]: c for c in json.loads(r.stdout)["checklist"]}
    assert items["examples reviewed in the past 2 weeks"]["status"] == "warn"
    assert items["examples reviewed in the past 2 weeks"]["detail"].startswith("0 of 10 reviewed")
    assert items["balanced across categories"]["status"] == "pass"
    assert items["balanced across categories"]["detail"] == "2 categories, largest 50%"
    run(app, ["dataset", "mark-validated", ds, "--min-quality-score", "0.5", "--state-dir", str(state)])
    exported = tmp_path / "t.jsonl"
    exported.write_text(run(app, ["dataset", "export", ds, "--state-dir", str(state)]).stdout)
    r = run(app, ["dataset", "validate", str(exported), "--state-dir", str(state), "--json"])
    items = {c["name"]: c for c in json.loads(r.stdout)["checklist"]}
    assert items["examples reviewed in the past 2 weeks"]["status"] == "pass"
    # a file the registry does not know: the hint names real flags
    other = tmp_path / "o.jsonl"
    other.write_text(exported.read_text().replace("Answer", "Reply"))
    r = run(app, ["dataset", "validate", str(other), "--state-dir", str(state), "--json"])
    items = {c["name"]: c for c in json.loads(r.stdout)["checklist"]}
    assert items["examples reviewed in the past 2 weeks"]["status"] == "unknown"
    assert "--state-dir" in items["examples reviewed in the past 2 weeks"]["detail"]
    assert "--dataset" not in items["examples reviewed in the past 2 weeks"]["detail"]


def test_review_screen_shows_its_keys(tmp_path: Path) -> None:
    state = tmp_path / "s"
    ds = _build(state, _calls(tmp_path / "calls.jsonl"))
    r = run(app, ["dataset", "review", ds, "--state-dir", str(state)], input="q\n", env={"COLUMNS": "200"})
    assert "keys: [a]ccept [e]dit [r]eject [s]kip [q]uit" in r.output, r.output


def test_mixed_system_prompt_message_reads_correctly() -> None:
    from training.validate import validate_lines

    rows = [{"messages": [SYS, {"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}
            for i in range(10)]
    rows += [{"messages": [{"role": "user", "content": f"x{i}"}, {"role": "assistant", "content": f"y{i}"}]}
             for i in range(2)]
    rep = validate_lines([json.dumps(r) for r in rows], min_examples=1, near_dup_threshold=None)
    (p,) = [p for p in rep.errors if p.code == "inconsistent_system_prompt"]
    assert p.message == "2 example(s) have no system prompt, unlike the 10 with the main one (lines 11, 12)"
