"""The openai Node SDK (tests/compat/node, installed from its lockfile) against the simulator
directly and through a real abgate gateway; node runs all cases once per target, each case is
reported as its own test."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.conftest import Stack, targets
from tests.support.node import run_node

pytestmark = pytest.mark.integration
CASES = ("chat", "tools_round_trip", "n2", "retry_after_and_request_id", "responses", "responses_stream",
         "responses_chain", "embeddings", "models_retrieve")


@pytest.fixture(scope="module")
def results(stack: Stack) -> dict[str, dict[str, Any]]:
    out = {}
    for name, t in targets(stack).items():
        models = {r: t.model(r) for r in ("support", "embed", "limited")}
        res = run_node("compat.mjs", {"baseURL": t.base_url, "models": models}, timeout=120)
        assert isinstance(res, dict)
        out[name] = res
    return out


def _params() -> list[Any]:
    out = [pytest.param("simulator", c, id=f"simulator-{c}") for c in CASES]
    out += [pytest.param("gateway", c, id=f"gateway-{c}")
            for c in CASES]
    return out


@pytest.mark.parametrize(("target", "case"), _params())
def test_node_sdk(results: dict[str, dict[str, Any]], target: str, case: str) -> None:
    got = results[target][case]
    assert got["ok"], got.get("error")
