"""`make demo` runs its abgate steps in-process (no 2-4 s interpreter start per step), and tables
never cut ids."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from rich.table import Table
from typer.testing import CliRunner

from abgate.cli.common import table
from abgate.cli.main import app
from abgate.demo.run import Demo, DemoFailed


def test_demo_steps_run_in_process_with_the_same_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_subprocess(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError(f"subprocess started: {a}")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    d = Demo(workdir=tmp_path)
    d.sim = "http://127.0.0.1:9"
    assert d.abgate("dataset", "list") == 0
    assert d.abgate_json("dataset", "list") == []
    assert d.abgate("dataset", "export", "ds_nope", ok=(1,)) == 1
    with pytest.raises(DemoFailed):
        d.abgate("dataset", "export", "ds_nope")
    assert (tmp_path / "state" / "registry.sqlite").exists()  # ABGATE_HOME was the demo's state


def test_tables_fold_ids_instead_of_cutting_them(tmp_path: Path) -> None:
    from rich.console import Console

    model = "ft:gpt-4o-mini-2024-07-18:acme-corporation:intent-classifier:9f8e7d6c"
    t = table("run", "status", "result model", "notes")
    t.add_row("run_0123456789abcdef", "succeeded", model, "a long note " * 6)
    c = Console(record=True, width=110)
    c.print(t)
    text = c.export_text()
    # the id columns keep their whole value on one line; the prose column wraps instead
    assert "run_0123456789abcdef" in text and model in text
    plain = Table("run", "status", "result model", "notes")
    plain.add_row("run_0123456789abcdef", "succeeded", model, "a long note " * 6)
    c2 = Console(record=True, width=110)
    c2.print(plain)
    assert model not in c2.export_text()  # what a default rich table did: the id wrapped or cut


def test_dataset_list_shows_the_whole_id_at_60_columns(tmp_path: Path) -> None:
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"id": f"c{i}", "user_message": f"question {i} is long enough",
                                       "assistant_response": f"answer {i} is long enough"}) + "\n" for i in range(3)))
    r = CliRunner().invoke(app, ["dataset", "build", "--from-file", str(src), "--near-dup", "0", "--state-dir",
                                 str(tmp_path), "--json"])
    ds = json.loads(r.stdout)["dataset_id"]
    out = CliRunner().invoke(app, ["dataset", "list", "--state-dir", str(tmp_path)], env={"COLUMNS": "60"}).output
    assert ds in out
