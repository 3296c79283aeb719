"""Generated docs stay current; the demo's bundled configs and criteria are valid."""

from __future__ import annotations

import json
from pathlib import Path

from abgate.cli import reference
from abgate.demo import run as demo
from evaluation import criteria as critmod
from gateway import config as cfgmod

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_is_current() -> None:
    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == reference.markdown(), "docs/cli.md is stale: run `python -m abgate.cli.reference`"


def test_openapi_document_is_current() -> None:
    current = json.loads((ROOT / "docs" / "openapi.json").read_text(encoding="utf-8"))
    assert current == json.loads(json.dumps(reference.openapi(), sort_keys=True)), (
        "docs/openapi.json is stale: run `python -m abgate.cli.reference`")
    assert {"/v1/chat/completions", "/v1/feedback", "/v1/models", "/admin/export/jsonl"} <= set(current["paths"])


def test_demo_assets_are_valid() -> None:
    cfg = cfgmod.parse_yaml((demo.ASSETS / "router.yaml").read_text().replace("SIMULATOR_URL", "http://127.0.0.1:1"))
    assert [a.weight for a in cfg.routes[demo.ROUTE].arms] == [1.0]
    for name in ("online.yaml", "guardrails.yaml", "offline.yaml"):
        crit = critmod.parse((demo.ASSETS / name).read_text())
        assert crit.guardrails, name


def test_demo_heldout_has_references_and_key_facts(tmp_path: Path) -> None:
    path = demo.write_heldout(tmp_path / "eval.jsonl", n=20, seed=3)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 20
    for row in rows:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["system", "user", "assistant"]
        assert row["key_facts"] and all(f in row["messages"][-1]["content"] for f in row["key_facts"])
    assert demo.write_heldout(tmp_path / "again.jsonl", n=20, seed=3).read_text() == path.read_text()
