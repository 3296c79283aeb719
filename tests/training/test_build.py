"""Retrain triggers, dataset review (decisions file and interactive), CSV input, the 100k bench script."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from bench import dataset_100k
from gateway.archive import ArchiveWriter
from gateway.events import Feedback, Interaction
from training import triggers as trg
from training.registry import Registry

OLD_PROMPT = "You are Order Support."
NEW_PROMPT = "You are Order Support. Always answer in Spanish."
NOW = datetime.now(UTC)


def _ts(days_ago: float, i: int = 0) -> str:
    t = NOW - timedelta(days=days_ago) + timedelta(seconds=i)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _example(i: int, q10: float | None, *, validated: bool = False, tenant: str = "acme") -> dict:
    return {"source_id": f"src-{tenant}-{i}", "tenant_id": tenant, "content_sha": f"sha-{tenant}-{i}",
            "quality10": q10, "validated": validated, "status": "accepted" if validated else "pending",
            "category": "billing" if i % 2 else "shipping", "split": "train",
            "messages": [{"role": "system", "content": OLD_PROMPT}, {"role": "user", "content": f"question {i}?"},
                         {"role": "assistant", "content": f"answer {i}."}]}


def _by_name(result: list[trg.Trigger]) -> dict[str, trg.Trigger]:
    return {t.name: t for t in result}


# -- retrain triggers ---------------------------------------------------------------------------


def test_trigger_new_quality_examples_counts_only_quality_since_last_training(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with Registry(state) as reg:
        # 49 quality examples, plus ones that must not count: low score, and unscored-unvalidated
        reg.create_dataset(tenant="acme", name="a", source="t",
                           examples=[_example(i, 8.0) for i in range(49)]
                           + [_example(100 + i, 5.0) for i in range(10)]
                           + [_example(200 + i, None) for i in range(10)])
        t = _by_name(trg.evaluate(state, reg, tenant="acme"))["new quality examples"]
        assert not t.fired and t.detail.startswith("49 new quality examples since ever")
        # one validated example without a score counts too -> 50 -> fires
        reg.create_dataset(tenant="acme", name="b", source="t", examples=[_example(300, None, validated=True)])
        t = _by_name(trg.evaluate(state, reg, tenant="acme"))["new quality examples"]
        assert t.fired and t.detail.startswith("50 new quality examples")
        # another tenant's examples never count for acme
        reg.create_dataset(tenant="beta", name="c", source="t",
                           examples=[_example(i, 9.0, tenant="beta") for i in range(60)])
        assert _by_name(trg.evaluate(state, reg, tenant="beta"))["new quality examples"].fired
        # a training run after those examples: nothing is new any more
        run = reg.create_run(tenant="acme", base_model="gpt-4o-mini-2024-07-18", status="succeeded")
        with reg.tx() as db:  # known-answer timeline: examples in January, training in February
            db.execute("UPDATE examples SET created_at = '2025-01-10T00:00:00.000Z'")
            db.execute("UPDATE training_runs SET created_at = '2025-02-01T00:00:00.000Z' WHERE id = ?", (run,))
        t = _by_name(trg.evaluate(state, reg, tenant="acme"))["new quality examples"]
        assert not t.fired and t.detail.startswith("0 new quality examples since the last training (2025-02-01")
        # 50 quality examples after the training fire it; a later failed run does not reset the count
        ds = reg.create_dataset(tenant="acme", name="d", source="t",
                                examples=[_example(400 + i, 7.0) for i in range(50)])
        failed = reg.create_run(tenant="acme", base_model="gpt-4o-mini-2024-07-18", status="failed")
        with reg.tx() as db:
            db.execute("UPDATE examples SET created_at = '2025-03-01T00:00:00.000Z' WHERE dataset_id = ?", (ds,))
            db.execute("UPDATE training_runs SET created_at = '2025-04-01T00:00:00.000Z' WHERE id = ?", (failed,))
        t = _by_name(trg.evaluate(state, reg, tenant="acme"))["new quality examples"]
        assert t.fired and t.detail.startswith("50 new quality examples since the last training (2025-02-01")
        # a rejected example is not a quality example
        ex = reg.examples(dataset_id=ds)[0]
        reg.review_example(ex["id"], action="reject", reviewer="qa")
        assert not _by_name(trg.evaluate(state, reg, tenant="acme"))["new quality examples"].fired


def _traffic(state: Path, spec: list[tuple[str, float, int, int, str]]) -> None:
    """spec rows: (route, days_ago, interactions, of which thumbs-down, system prompt)."""
    evs = []
    n = 0
    for route, days_ago, total, bad, prompt in spec:
        for k in range(total):
            n += 1
            iid = f"iid-{n}"
            ts = _ts(days_ago, n)
            evs.append(Interaction(
                event_id=f"e{n}", ts=ts, tenant="acme", route=route, experiment="x", arm="control", phase=1,
                config_version=1, interaction_id=iid, unit=f"u{n}", traffic="live", model="gpt-4o-mini-2024-07-18",
                stream=False, status="ok", http_status=200, latency_ms=5.0,
                messages=[{"role": "system", "content": prompt}, {"role": "user", "content": f"q{n}"}],
                response=f"a{n}"))
            if k < bad:  # half of the bad ones are thumbs-down, half are edits
                metric, value = ("thumbs", -1) if k % 2 else ("edited_response", f"fixed {n}")
            else:
                metric, value = "thumbs", 1
            evs.append(Feedback(event_id=f"f{n}", ts=ts, tenant="acme", interaction_id=iid, metric=metric,
                                value=value))
    ArchiveWriter(state, writer="t").write(evs)


def test_trigger_systematic_errors_fires_only_for_a_category_whose_bad_rate_rose(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _traffic(state, [
        ("billing", 10, 20, 2, OLD_PROMPT), ("billing", 2, 20, 8, OLD_PROMPT),     # 10% -> 40%: rose
        ("shipping", 10, 20, 4, OLD_PROMPT), ("shipping", 2, 20, 4, OLD_PROMPT),   # 20% -> 20%: flat
        ("returns", 10, 20, 8, OLD_PROMPT), ("returns", 2, 20, 2, OLD_PROMPT),     # fell
        ("gifts", 10, 5, 0, OLD_PROMPT), ("gifts", 2, 5, 5, OLD_PROMPT),           # rose, but too few
        ("old", 30, 20, 0, OLD_PROMPT),                                            # outside both windows
    ])
    with Registry(state) as reg:
        t = _by_name(trg.evaluate(state, reg, today=NOW))["systematic errors"]
        assert t.fired and t.detail == "billing: 10% -> 40%"
        # scoped to a route without a rise: not fired, and says what it compared
        t = _by_name(trg.evaluate(state, reg, route="shipping", today=NOW))["systematic errors"]
        assert not t.fired and "last 7 days vs the 7 before, >= 20 each" in t.detail
        # a smaller rise threshold than 30 points still fires; a larger one does not
        assert not _by_name(trg.evaluate(state, reg, today=NOW, min_rate_increase=0.35))["systematic errors"].fired


def test_trigger_systematic_errors_uses_review_categories(tmp_path: Path) -> None:
    state = tmp_path / "state"
    # one route; reviewers split it into categories: only refunds (iid 41-60 recent, all bad) got worse
    _traffic(state, [("support", 10, 40, 0, OLD_PROMPT), ("support", 2, 40, 20, OLD_PROMPT)])
    evs = [Feedback(event_id=f"r{n}", ts=_ts(1, n), tenant="acme", interaction_id=f"iid-{n}", metric="review",
                    value={"category": "refunds" if (n - 1) % 40 < 20 else "tracking"}, source="reviewer")
           for n in range(1, 81)]
    ArchiveWriter(state, writer="r").write(evs)
    with Registry(state) as reg:
        t = _by_name(trg.evaluate(state, reg, today=NOW))["systematic errors"]
    assert t.fired and t.detail == "refunds: 0% -> 100%"


def test_trigger_system_prompt_changed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _traffic(state, [("support", 1, 5, 0, NEW_PROMPT), ("support", 1, 2, 0, OLD_PROMPT)])
    with Registry(state) as reg:
        t = _by_name(trg.evaluate(state, reg, today=NOW))["system prompt changed"]
        assert not t.fired and t.detail == "unknown: no training run with a system prompt"
        reg.create_run(tenant="acme", base_model="gpt-4o-mini-2024-07-18", status="succeeded",
                       system_prompt_sha=hashlib.sha256(OLD_PROMPT.encode()).hexdigest())
        t = _by_name(trg.evaluate(state, reg, today=NOW))["system prompt changed"]
        assert t.fired and t.detail == "the live system prompt differs from the one trained on"
        reg.create_run(tenant="acme", base_model="gpt-4o-mini-2024-07-18", status="succeeded",
                       system_prompt_sha=hashlib.sha256(NEW_PROMPT.encode()).hexdigest())
        t = _by_name(trg.evaluate(state, reg, today=NOW))["system prompt changed"]
        assert not t.fired and t.detail == ("same system prompt as the last training "
                                            "(2 recent request(s) with another prompt, under 20)")
        # no recent traffic at all: unknown, not fired
        t = _by_name(trg.evaluate(state, reg, today=NOW + timedelta(days=30)))["system prompt changed"]
        assert not t.fired and t.detail == "unknown: no recent traffic with a system prompt"


def test_triggers_cli(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _traffic(state, [("billing", 10, 20, 2, OLD_PROMPT), ("billing", 2, 20, 8, NEW_PROMPT)])
    with Registry(state) as reg:
        reg.create_dataset(tenant="acme", name="a", source="t", examples=[_example(i, 8.0) for i in range(3)])
        reg.create_run(tenant="acme", base_model="gpt-4o-mini-2024-07-18", status="succeeded",
                       system_prompt_sha=hashlib.sha256(OLD_PROMPT.encode()).hexdigest())
    runner = CliRunner()
    r = runner.invoke(app, ["dataset", "triggers", "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    got = {t["name"]: t["fired"] for t in json.loads(r.stdout)}
    assert got == {"new quality examples": False, "systematic errors": True, "system prompt changed": True,
                   "new question categories": False}
    table = runner.invoke(app, ["dataset", "triggers", "--state-dir", str(state), "--min-new", "0"])
    assert table.exit_code == 0 and table.output.count("yes") == 3


# -- review -----------------------------------------------------------------------------------


def _dataset(state: Path, n: int = 4) -> tuple[str, list[dict]]:
    with Registry(state) as reg:
        ds = reg.create_dataset(tenant="acme", name="r", source="t",
                                examples=[_example(i, None) | {"source_id": f"s{i}"} for i in range(n)])
        return ds, reg.examples(dataset_id=ds)


def test_review_decisions_file_applies_accept_edit_reject(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ds, exs = _dataset(state)
    decisions = tmp_path / "d.jsonl"
    decisions.write_text("\n".join(json.dumps(d) for d in [
        {"source_id": "s0", "action": "accept", "category": "refunds", "quality": 9},
        {"source_id": "s1", "action": "edit", "gold": "The corrected answer.", "quality_score": 0.6},
        {"example_id": exs[2]["id"], "action": "reject", "reviewer": "bob"},
    ]) + "\n\n")
    before = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    r = CliRunner().invoke(app, ["dataset", "review", ds, "--decisions", str(decisions), "--reviewer", "alice",
                                 "--state-dir", str(state)])
    assert r.exit_code == 0, r.output
    assert "applied: accept=1, edit=1, reject=1" in r.output
    with Registry(state) as reg:
        got = {e["source_id"]: e for e in reg.examples(dataset_id=ds)}
    a, e, x, untouched = got["s0"], got["s1"], got["s2"], got["s3"]
    assert (a["status"], a["validated"], a["validated_by"], a["category"], a["quality10"], a["quality"]) == \
        ("accepted", True, "alice", "refunds", 9.0, 0.9)
    assert a["validated_at"] >= before
    assert e["status"] == "accepted" and e["gold"] == "The corrected answer."
    assert e["messages"][-1] == {"role": "assistant", "content": "The corrected answer."}
    assert e["quality10"] == 6.0 and e["content_sha"] != exs[1]["content_sha"]
    assert (x["status"], x["validated"], x["validated_by"]) == ("rejected", False, "bob")
    assert (untouched["status"], untouched["validated_by"], untouched["validated_at"]) == ("pending", None, None)
    # a rejected example is left out of the export; an unreviewed one only with --include-unreviewed
    out = CliRunner().invoke(app, ["dataset", "export", ds, "--state-dir", str(state)])
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 2 and "answer 2." not in out.stdout
    out = CliRunner().invoke(app, ["dataset", "export", ds, "--include-unreviewed", "--state-dir", str(state)])
    assert out.exit_code == 0 and len(out.stdout.splitlines()) == 3 and "answer 2." not in out.stdout


def test_review_decisions_file_refuses_bad_lines_with_line_numbers_and_applies_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ds, _ = _dataset(state)
    decisions = tmp_path / "d.jsonl"
    decisions.write_text("\n".join([
        json.dumps({"source_id": "s0", "action": "accept"}),   # 1: fine
        json.dumps({"source_id": "nope"}),                     # 2
        json.dumps({"source_id": "s1", "action": "approve"}),  # 3
        json.dumps({"source_id": "s1", "action": "edit"}),     # 4
        json.dumps({"source_id": "s2", "quality": 15}),        # 5
        "{not json",                                           # 6
        json.dumps({"source_id": "s3", "qualty": 5}),          # 7
        json.dumps(["s3"]),                                    # 8
    ]) + "\n")
    r = CliRunner().invoke(app, ["dataset", "review", ds, "--decisions", str(decisions), "--state-dir", str(state)])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    for no, text in [(2, "no such example_id/source_id"), (3, "action must be accept, edit or reject"),
                     (4, "an edit needs the corrected answer"), (5, "quality must be a number from 1 to 10"),
                     (6, "invalid JSON"), (7, "unknown key(s) qualty"), (8, "not a JSON object")]:
        assert f"d.jsonl:{no}: {text}" in out, (no, out)
    assert "d.jsonl:1:" not in out and "7 decision line(s) refused; nothing applied" in out
    with Registry(state) as reg:
        assert {e["status"] for e in reg.examples(dataset_id=ds)} == {"pending"}
    missing = CliRunner().invoke(app, ["dataset", "review", ds, "--decisions", str(tmp_path / "x.jsonl"),
                                       "--state-dir", str(state)])
    assert missing.exit_code == 1 and "no such file" in missing.output
    unknown = CliRunner().invoke(app, ["dataset", "review", "ds_nope", "--decisions", str(decisions),
                                       "--state-dir", str(state)])
    assert unknown.exit_code == 1 and "no dataset 'ds_nope'" in unknown.output


def test_review_interactive_through_stdin(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ds, _ = _dataset(state, n=5)
    keys = "\n".join([
        "a", "refunds", "9",                 # s0: accept, category, quality
        "x", "e", "Better answer.", "", "eleven", "4",  # s1: invalid key re-asked; edit; default category; bad quality re-asked
        "r", "", "",                         # s2: reject with defaults
        "s",                                 # s3: skip
        "q",                                 # quit before s4
    ]) + "\n"
    r = CliRunner().invoke(app, ["dataset", "review", ds, "--reviewer", "carol", "--state-dir", str(state)],
                           input=keys)
    assert r.exit_code == 0, r.output
    assert "5 example(s) to review" in r.output and "reviewed 3 example(s) as carol" in r.output
    assert "quality must be a number from 1 to 10, got 'eleven'" in r.output
    with Registry(state) as reg:
        got = {e["source_id"]: e for e in reg.examples(dataset_id=ds)}
    assert (got["s0"]["status"], got["s0"]["category"], got["s0"]["quality10"], got["s0"]["validated_by"]) == \
        ("accepted", "refunds", 9.0, "carol")
    assert got["s1"]["messages"][-1]["content"] == "Better answer." and got["s1"]["quality10"] == 4.0
    assert got["s1"]["category"] == "billing"  # the default offered was the current category
    assert got["s2"]["status"] == "rejected" and got["s2"]["quality10"] == 7.0
    assert all(got[s]["status"] == "pending" and got[s]["validated_at"] is None for s in ("s3", "s4"))
    # a second session only shows what is still pending
    again = CliRunner().invoke(app, ["dataset", "review", ds, "--state-dir", str(state)], input="q\n")
    assert again.exit_code == 0 and "2 example(s) to review" in again.output


# -- CSV input --------------------------------------------------------------------------------


def test_build_from_csv_reports_bad_rows_with_line_numbers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    csv_path = tmp_path / "calls.csv"
    rows = ["system_prompt,user_message,assistant_response,category,quality,confidence,thumbs"]
    for i in range(12):
        rows.append(f'{OLD_PROMPT},"Where is order {1000 + i}, please?",Order {1000 + i} ships on day {i}.,'
                    f'{"billing" if i % 3 else "shipping"},0.{5 + i % 5},0.9,1')
    rows[3] = f'{OLD_PROMPT},"A question that spans\ntwo lines",An answer.,billing,0.9,0.95,1'  # lines 4-5
    rows.append(f"{OLD_PROMPT},,An answer without a question.,billing,0.9,0.9,1")        # line 15
    rows.append(f"{OLD_PROMPT},Question?,Answer.,billing,0.9,0.9,1,surplus")               # line 16
    rows.append(f"{OLD_PROMPT},Thumbs down question?,Bad answer.,billing,0.9,0.9,-1")      # line 17
    rows.append(f'{OLD_PROMPT},Low confidence question?,Answer.,billing,0.9,0.5,1')       # line 18
    csv_path.write_bytes(("\ufeff" + "\n".join(rows) + "\n").encode())
    r = CliRunner().invoke(app, ["dataset", "build", "--from-file", str(csv_path), "--tenant", "acme",
                                 "--min-confidence", "0.8", "--min-quality-score", "0.6", "--near-dup", "0",
                                 "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    skipped = {s["where"].rsplit(":", 1)[1]: s["reason"] for s in rep["skipped_input"]}
    assert set(skipped) == {"15", "16"}
    assert "needs `messages`, or a user text" in skipped["15"]
    assert skipped["16"] == "8 cells but the header has 7 (unquoted comma?)"
    assert rep["candidates"] == 14
    # quality 0.5 (i = 0, 5, 10) is below 0.6; one thumbs-down; one low confidence
    assert rep["filtered_out"] == {"quality score below 0.6": 3, "signal below no_followup": 1,
                                   "confidence below 0.8": 1}
    assert rep["examples"] == 9 and set(rep["categories"]) == {"billing", "shipping"}
    with Registry(state) as reg:
        (ds,) = reg.datasets()
        exs = reg.examples(dataset_id=ds["id"])
    multi = next(e for e in exs if "spans" in e["messages"][1]["content"])
    assert multi["messages"] == [{"role": "system", "content": OLD_PROMPT},
                                 {"role": "user", "content": "A question that spans\ntwo lines"},
                                 {"role": "assistant", "content": "An answer."}]
    assert {e["tenant_id"] for e in exs} == {"acme"} and multi["quality"] == 0.9


def test_build_from_csv_not_utf8_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("user,assistant\nhola,qué tal\n".encode("latin-1"))
    r = CliRunner().invoke(app, ["dataset", "build", "--from-file", str(bad), "--state-dir", str(tmp_path / "s")])
    assert r.exit_code == 1 and "latin1.csv:2: not UTF-8" in " ".join(r.output.split())
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_bytes(b'{"user": "q", "assistant": "a"}\n{"user": "caf\xe9", "assistant": "a"}\n')
    r = CliRunner().invoke(app, ["dataset", "build", "--from-file", str(jsonl), "--state-dir", str(tmp_path / "s"),
                                 "--json"])
    rep = json.loads(r.stdout)
    assert r.exit_code == 0 and rep["examples"] == 1
    assert rep["skipped_input"][0]["where"].endswith("mixed.jsonl:2") and "not UTF-8" in \
        rep["skipped_input"][0]["reason"]


# -- bench script -----------------------------------------------------------------------------


def test_dataset_bench_script_small_run(capsys: pytest.CaptureFixture[str]) -> None:
    assert dataset_100k.main(["--interactions", "600", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["candidates"] == 600 and out["ok"] and out["duplicates_near"] > 0
    assert out["examples"] == sum(out["splits"].values())
    # over the target -> exit 1 (a target no build can meet)
    assert dataset_100k.main(["--interactions", "50", "--target-s", "0", "--json"]) == 1


def test_shared_permutation_minhash_matches_datasketch_default() -> None:
    from datasketch import MinHash

    from training import dedup

    text = "where is my order 1234 it was due on monday and has not arrived yet"
    ref = MinHash(num_perm=dedup.NUM_PERM, seed=1)
    ref.update_batch(list(dedup.shingles(text)))
    assert (dedup.minhash(text).hashvalues == ref.hashvalues).all()
    a, b = dedup.sketches([text, text.replace("monday", "tuesday")])
    assert 0.5 < a.jaccard(b) < 1.0
