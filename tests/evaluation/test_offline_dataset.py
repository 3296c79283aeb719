"""Held-out dataset loading: references, categories, ids, and bad lines with line numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.offline import dataset as ds


def line(**kw) -> str:
    base = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                         {"role": "assistant", "content": '{"intent_type": "GIFT"}'}]}
    return json.dumps({**base, **kw})


def test_load_splits_prompt_and_reference_and_reads_optional_fields(tmp_path: Path) -> None:
    p = tmp_path / "h.jsonl"
    msgs = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
            {"role": "user", "content": "c"}, {"role": "assistant", "content": "final"}]
    p.write_text("\n".join([
        line(category="gift", key_facts=["$1.4B", 4.7]),
        "",
        json.dumps({"messages": msgs, "metadata": {"category": "multi", "id": "m1"}}),
        line(),
    ]) + "\n")
    d = ds.load(p)
    assert [e.line for e in d.examples] == [1, 3, 4]
    a, b, c = d.examples
    assert a.reference == '{"intent_type": "GIFT"}' and [m["role"] for m in a.prompt] == ["system", "user"]
    assert a.category == "gift" and a.key_facts == ("$1.4B", "4.7")
    assert b.id == "m1" and b.category == "multi" and b.reference == "final" and len(b.prompt) == 3
    assert b.last_user == "c"
    assert c.category == ds.UNCATEGORIZED and c.key_facts is None
    # same prompt, no ids: both kept, told apart by occurrence
    assert a.id != c.id and c.id.startswith(a.id.split("#")[0]) and c.id.endswith("#2")
    assert len(d.sha256) == 64
    by_ref = ds.load(p, category_key="reference.intent_type")
    assert [e.category for e in by_ref.examples] == ["GIFT", ds.UNCATEGORIZED, "GIFT"]
    assert len(ds.load(p, limit=2).examples) == 2


def test_bad_lines_refuse_the_file_with_every_problem_and_line(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes("\n".join([
        line(),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        json.dumps({"messages": []}),
        json.dumps([1, 2]),
        json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None}]}),
        line(id="dup"),
        line(id="dup"),
    ]).encode() + b"\n\xff\xfe\n")
    with pytest.raises(ds.DatasetError) as ei:
        ds.load(p)
    lines = {ln for ln, _ in ei.value.problems}
    assert lines == {2, 3, 4, 5, 6, 8, 9}
    text = str(ei.value)
    assert "line 2: invalid JSON" in text and "line 3: no assistant message" in text
    assert "line 8: duplicate id 'dup' (first on line 7)" in text and "line 9: invalid UTF-8" in text


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(ds.DatasetError, match="cannot read"):
        ds.load(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(ds.DatasetError, match="no examples"):
        ds.load(tmp_path / "empty.jsonl")
