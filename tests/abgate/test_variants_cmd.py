"""`abgate variants build-fewshot|show` and `abgate models check`, against a real simulator."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from abgate.cli.main import app
from gateway import fewshot
from gateway.config_store import FileConfigStore
from gateway.variants import variant_id
from training.registry import Registry, content_sha

pytestmark = pytest.mark.integration

ROUTER = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {{name: control, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: 1.0}}
upstreams:
  sim: {{base_url: "{sim}/v1", timeout_s: 10}}
models:
  "ft:gpt-4o-mini-2024-07-18:acme:support:abc123": {{upstream: sim, input_per_mtok: 0.3, output_per_mtok: 1.2}}
  legacy: {{upstream: sim, shutdown_date: "2020-01-01"}}
"""


def abgate(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def _example(user: str, answer: str, split: str = "train") -> dict[str, Any]:
    msgs = [{"role": "system", "content": "You are Acme support."}, {"role": "user", "content": user},
            {"role": "assistant", "content": answer}]
    return {"messages": msgs, "split": split, "status": "accepted", "content_sha": content_sha(msgs)}


def _dataset(state: Path, tenant: str = "default") -> str:
    with Registry(state) as reg:
        return reg.create_dataset(tenant=tenant, name="support-gold", source="test", examples=[
            _example("I want a refund for my broken order 123", "Refunds take 5 days."),
            _example("where is my package", "Tracking updates within 24 hours."),
            _example("cancel my subscription", "Done, no more charges."),
            _example("held-out question", "held-out answer", split="heldout"),
        ])


@pytest.fixture
def env(tmp_path: Path, simulator: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    state = tmp_path / "state"
    monkeypatch.setenv("ABGATE_HOME", str(state))
    monkeypatch.setenv("OPENAI_BASE_URL", f"{simulator}/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-simulator")
    router = tmp_path / "router.yaml"
    router.write_text(ROUTER.format(sim=simulator))
    assert abgate("config", "set", str(router), "--reason", "test").exit_code == 0
    return state, simulator


def test_build_fewshot_exports_the_index_and_adds_the_variant_arm_in_one_command(env: tuple[Path, str]) -> None:
    state, _ = env
    ds = _dataset(state)
    r = abgate("variants", "build-fewshot", ds, "--upstream", "sim", "--route", "support", "--arm", "luna-fewshot",
               "--model", "gpt-6-luna", "--k", "2", "--system-prompt", "You are Acme support.", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["examples"] == 3 and out["dim"] == 256  # the held-out split is never a few-shot source
    index = fewshot.load_index(Path(out["path"]))
    assert Path(out["path"]) == state / "fewshot" / f"{ds}.json"
    assert {s.user for s in index.shots} == {"I want a refund for my broken order 123", "where is my package",
                                            "cancel my subscription"}
    cur = FileConfigStore(state).current()
    arm = cur.config.routes["support"].arms[1]
    assert (arm.name, arm.model, arm.weight) == ("luna-fewshot", "gpt-6-luna", 0.0)
    assert arm.variant is not None and arm.variant.fewshot is not None
    assert (arm.variant.fewshot.dataset, arm.variant.fewshot.k, arm.variant.fewshot.embedding_upstream) == (ds, 2, "sim")
    assert arm.variant.system_prompt == "You are Acme support."
    assert out["variant"] == variant_id("gpt-6-luna", arm.variant) and out["config_version"] == cur.version
    assert cur.config.models["gpt-6-luna"].upstream == "sim"  # inherits control's upstream
    r = abgate("variants", "show", "support", "--json")
    assert r.exit_code == 0, r.output
    rows = {row["arm"]: row for row in json.loads(r.stdout)}
    assert rows["luna-fewshot"]["variant"] == out["variant"]
    assert rows["control"]["variant"] == variant_id("ft:gpt-4o-mini-2024-07-18:acme:support:abc123", None)


def test_build_fewshot_refuses_unknown_and_foreign_datasets(env: tuple[Path, str]) -> None:
    state, _ = env
    r = abgate("variants", "build-fewshot", "ds_nope")
    assert r.exit_code == 1 and "no dataset 'ds_nope'" in r.output
    other = _dataset(state, tenant="beta")
    r = abgate("variants", "build-fewshot", other, "--tenant", "acme")
    assert r.exit_code == 1 and "is not a dataset of tenant 'acme'" in r.output
    # the tenant's own dataset, but the route serves tenant `default` (open mode): refused at add-arm
    r = abgate("variants", "build-fewshot", other, "--tenant", "beta", "--route", "support", "--model", "gpt-6-luna")
    assert r.exit_code == 1 and "belongs to tenant 'beta'" in r.output and "serves tenant(s) default" in r.output
    assert len(FileConfigStore(state).current().config.routes["support"].arms) == 1


def test_build_fewshot_reports_a_down_embedding_upstream(env: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    state, _ = env
    ds = _dataset(state)
    r = abgate("variants", "build-fewshot", ds, "--base-url", "http://127.0.0.1:9/v1")
    assert r.exit_code == 1 and "embedding the examples failed" in r.output
    assert not (state / "fewshot" / f"{ds}.json").exists()


def test_models_check_lists_retiring_arms_from_the_upstream_listing(env: tuple[Path, str]) -> None:
    state, _ = env
    left = (date(2027, 1, 14) - datetime.now(UTC).date()).days
    r = abgate("models", "check", "--days", str(max(left, 0) + 1), "--json")
    assert r.exit_code == 3, r.output  # the arm carrying all traffic retires within the window
    out = json.loads(r.stdout)
    (row,) = out["arms"]
    assert row == {"route": "support", "arm": "control", "model": "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
                   "weight": 1.0, "shutdown_date": "2027-01-14", "days_left": left, "source": "upstream:base"}
    assert out["unreachable_upstreams"] == [] and out["serving_traffic"] == 1
    if left >= 1:
        r = abgate("models", "check", "--days", str(left - 1))
        assert r.exit_code == 0 and "no arm's model shuts down within" in r.output
    # offline: config dates only (none for this arm)
    r = abgate("models", "check", "--days", "10000", "--offline", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["arms"] == []
    r = abgate("models", "check", "--route", "nope")
    assert r.exit_code == 1 and "unknown route 'nope'" in r.output


def test_variants_add_builds_a_prompt_variant_and_refuses_bad_input(env: tuple[Path, str], tmp_path: Path) -> None:
    state, _ = env
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("You are Acme support. Always quote the order number.\n")
    r = abgate("variants", "add", "support", "--model", "gpt-6-luna", "--arm", "luna-prompt", "--system-prompt-file",
               str(prompt), "--temperature", "0.2", "--json")
    assert r.exit_code == 0, r.output
    arm = FileConfigStore(state).current().config.routes["support"].arms[-1]
    assert arm.name == "luna-prompt" and arm.variant is not None
    assert arm.variant.system_prompt == "You are Acme support. Always quote the order number."
    assert arm.variant.params.temperature == 0.2 and arm.variant.fewshot is None
    assert json.loads(r.stdout)["variant"] == variant_id("gpt-6-luna", arm.variant)
    # the same name twice, a bad parameter, a few-shot dataset that was never exported
    r = abgate("variants", "add", "support", "--model", "gpt-6-luna", "--arm", "luna-prompt")
    assert r.exit_code == 1 and "already has an arm named 'luna-prompt'" in r.output
    r = abgate("variants", "add", "support", "--model", "gpt-6-luna", "--temperature", "5")
    assert r.exit_code == 1 and "routes.support.arms[2].variant.params.temperature" in r.output
    r = abgate("variants", "add", "support", "--model", "gpt-6-luna", "--fewshot", "ds_missing")
    assert r.exit_code == 1 and "few-shot dataset 'ds_missing'" in r.output and "build-fewshot" in r.output
    assert len(FileConfigStore(state).current().config.routes["support"].arms) == 2


def test_config_set_refuses_a_missing_fewshot_export(env: tuple[Path, str], tmp_path: Path) -> None:
    state, sim = env
    bad = tmp_path / "bad.yaml"
    bad.write_text(ROUTER.format(sim=sim).replace(
        'weight: 1.0}', 'weight: 1.0, variant: {fewshot: {dataset: ds_gone, k: 2}}}'))
    r = abgate("config", "set", str(bad))
    assert r.exit_code == 1, r.output
    assert "routes.support.arms[0].variant.fewshot.dataset" in r.output and "ds_gone" in r.output
    assert current_version(state) == 1


def current_version(state: Path) -> int:
    return FileConfigStore(state).current().version
