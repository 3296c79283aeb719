"""`abgate eval full-workflow` (seed 001) against the real simulator: one command from the JSONL files
to the gate decision; and the seed's manual `upload` / `create-job <training-file-id> <validation-file-id>`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from tests.support.procs import start_simulator
from training.registry import Registry

ROOT = Path(__file__).resolve().parents[2]
BASE = "gpt-4o-mini-2024-07-18"


def _generate(out: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen001", ROOT / "examples/intent-classification/generate_data.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.generate(out, train=400, validation=20, test=100, gate_test=0, seed=3)


@pytest.fixture()
def sim(tmp_path: Path):
    proc, base = start_simulator(tmp_path, "--ft-seconds", "0.5", "--latency-ms", "2",
                                 "--state-dir", str(tmp_path / "sim"))
    try:
        yield base
    finally:
        proc.stop()


def test_full_workflow_one_command_to_a_decision(tmp_path: Path, sim: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    _generate(data)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{sim}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-simulator")
    crit = tmp_path / "c.yaml"
    crit.write_text((ROOT / "examples/intent-classification/criteria.yaml").read_text()
                    .replace("stage: offline", "stage: offline\ndecide_on: point")
                    .replace("  - {metric: latency_ms, direction: decrease, tolerance: 0.10, effect: relative}\n", ""))
    r = CliRunner().invoke(app, [
        "eval", "full-workflow", "--train", str(data / "train.jsonl"), "--validation", str(data / "validation.jsonl"),
        "--test", str(data / "test.jsonl"), "--model", BASE, "--epochs", "3", "--batch-size", "1", "--lr-mult", "2",
        "--suffix", "intent", "--criteria", str(crit), "--poll", "0.2", "--state-dir", str(state)],
        env={"COLUMNS": "200"})
    out = r.output
    for step in ("1/6 uploaded", "2/6 job", "3/6 trained: ft:gpt-4o-mini-2024-07-18:", "4/6 evaluated baseline",
                 "4/6 evaluated finetuned", "to GO: all_fields_correct: candidate needs", "5/6 compare:", "6/6 gate:",
                 "cost: $"):
        assert step in out, (step, out)
    assert r.exit_code in (0, 3, 4), out
    rec = json.loads(next((state / "decisions").glob("*.json")).read_text())
    assert rec["extra"]["workflow"]["fine_tuned_model"].startswith(f"ft:{BASE}:")
    assert rec["extra"]["criteria_mode"] == "point" and rec["verdict"] in ("GO", "NO-GO", "HOLD")
    with Registry(state) as reg:
        (run,) = reg.runs()
    assert run["status"] == "succeeded" and run["hyperparameters"]["n_epochs"] == 3


def test_upload_then_create_job_from_file_ids(tmp_path: Path, sim: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data, state = tmp_path / "data", tmp_path / "state"
    _generate(data)
    monkeypatch.setenv("OPENAI_BASE_URL", f"{sim}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-simulator")
    r = CliRunner().invoke(app, ["eval", "full-workflow", "--train", str(data / "train.jsonl"), "--validation",
                                 str(data / "validation.jsonl"), "--until", "upload", "--state-dir", str(state)])
    assert r.exit_code == 0, r.output
    ids = [w.rstrip(",") for w in r.output.split() if w.startswith("file-")]
    assert len(ids) == 2
    r = CliRunner().invoke(app, ["eval", "full-workflow", "--training-file-id", ids[0], "--validation-file-id", ids[1],
                                 "--until", "train", "--poll", "0.2", "--state-dir", str(state)])
    assert r.exit_code == 0, r.output
    assert "1/6 upload skipped" in r.output and "3/6 trained: ft:" in r.output
    with Registry(state) as reg:
        (run,) = reg.runs()
    assert (run["training_file"], run["validation_file"], run["status"]) == (ids[0], ids[1], "succeeded")
    # a file id the provider does not know: a clear error, exit 1
    r = CliRunner().invoke(app, ["eval", "full-workflow", "--training-file-id", "file-nope", "--until", "job",
                                 "--state-dir", str(state)])
    assert r.exit_code == 1 and "file-nope" in r.output and r.exception is None or isinstance(r.exception, SystemExit)
