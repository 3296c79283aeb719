"""End to end against the real simulator: both arms, streaming and not, through `abgate serve`."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_config
from tests.support.gateway_helpers import event_for
from tests.support.procs import start_gateway

pytestmark = pytest.mark.integration


def test_both_arms_stream_and_not_through_simulator(tmp_path: Path, simulator: str) -> None:
    cfg = write_config(tmp_path / "router.yaml", simulator)
    state = tmp_path / "state"
    proc, gw = start_gateway(tmp_path, cfg, state)
    try:
        with httpx.Client(base_url=gw, timeout=20) as c:
            seen: dict[tuple[str, bool], str] = {}
            for i in range(60):
                stream = i % 2 == 1
                body = {"model": "support", "user": f"sim-{i}", "stream": stream,
                        "messages": [{"role": "user", "content": "Where is my order 42?"}]}
                if not stream:
                    r = c.post("/v1/chat/completions", json=body)
                    assert r.status_code == 200, r.text
                    doc = r.json()
                    assert doc["id"] == r.headers["x-abgate-interaction-id"]
                    assert doc["choices"][0]["message"]["content"]
                else:
                    with c.stream("POST", "/v1/chat/completions", json=body) as r:
                        assert r.status_code == 200
                        lines = [ln for ln in r.iter_lines() if ln.startswith("data: ")]
                    assert lines[-1] == "data: [DONE]"
                    chunks = [json.loads(ln[6:]) for ln in lines[:-1]]
                    assert all(ch["id"] == r.headers["x-abgate-interaction-id"] for ch in chunks)
                    assert all(ch["choices"] for ch in chunks)  # usage chunk stripped
                seen.setdefault((r.headers["x-abgate-arm"], stream), r.headers["x-abgate-interaction-id"])
            assert set(seen) == {("control", False), ("control", True), ("treatment", False), ("treatment", True)}
            for (arm, stream), iid in seen.items():
                ev = event_for(state, iid)
                assert ev["arm"] == arm and ev["stream"] is stream and ev["status"] == "ok"
                assert ev["response"] and ev["completion_tokens"] and ev["prompt_tokens"]
                assert ev["cost_usd"] > 0
    finally:
        proc.stop()
