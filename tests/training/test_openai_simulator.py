"""Full path against the real simulator process: archive -> build -> validate -> launch -> wait -> model -> arm."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from gateway.config import parse_yaml
from gateway.config_store import FileConfigStore
from tests.support import http
from tests.support.procs import start_simulator
from tests.training.test_service import CONFIG, _write_archive
from training.registry import Registry

pytestmark = pytest.mark.integration


def test_archive_to_new_arm_through_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (Path(__file__).resolve().parents[2] / "simulator" / "__main__.py").exists():
        pytest.skip("the simulator (python -m simulator) is not built yet")
    proc, base = start_simulator(tmp_path)
    try:
        if http.get(f"{base}/v1/fine_tuning/jobs").status_code == 404:
            pytest.skip("the simulator has no fine-tuning endpoints yet")
        monkeypatch.setenv("OPENAI_BASE_URL", f"{base}/v1")
        monkeypatch.setenv("OPENAI_API_KEY", os.environ.get("OPENAI_API_KEY", "sk-sim"))
        state = tmp_path / "state"
        _write_archive(state)
        FileConfigStore(state).put(parse_yaml(CONFIG.replace("http://127.0.0.1:9", base)), expected_version=None,
                                   author="t", reason="init")
        runner = CliRunner()
        out = tmp_path / "ds"
        r = runner.invoke(app, ["dataset", "build", "--state-dir", str(state), "--out", str(out), "--json"])
        assert r.exit_code == 0, r.output
        assert runner.invoke(app, ["dataset", "validate", str(out / "train.jsonl")]).exit_code == 0
        r = runner.invoke(app, ["finetune", "launch", str(out / "train.jsonl"), "--model", "gpt-4o-mini-2024-07-18",
                                "--suffix", "support", "--epochs", "3", "--wait", "--poll", "0.2",
                                "--state-dir", str(state), "--json"])
        assert r.exit_code == 0, r.output
        with Registry(state) as reg:
            (run,) = reg.runs()
            (mv,) = reg.model_versions()
        assert run["status"] == "succeeded" and run["result_model"] == mv["model_id"]
        assert mv["model_id"].startswith("ft:gpt-4o-mini-2024-07-18")
        a = runner.invoke(app, ["models", "add-arm", "support", mv["model_id"], "--state-dir", str(state)])
        assert a.exit_code == 0, a.output
        arms = FileConfigStore(state).current().config.routes["support"].arms
        assert arms[-1].model == mv["model_id"] and arms[-1].weight == 0.0
        assert json.loads(runner.invoke(app, ["models", "list", "--state-dir", str(state), "--json"]).stdout)[0][
            "version"] == "v1"
    finally:
        proc.stop()
