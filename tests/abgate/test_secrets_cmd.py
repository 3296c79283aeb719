"""Interaction-id key rotation on a real gateway: old ids verify during the grace period,
new ids use the new key, and ids signed with a dropped key are refused with a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from abgate.cli.main import app
from tests.conftest import write_config
from tests.support import http
from tests.support.procs import start_gateway


def _chat(base: str, user: str) -> str:
    r = http.post(f"{base}/v1/chat/completions", timeout=10,
                   json={"model": "support", "user": user, "messages": [{"role": "user", "content": "Where is my order?"}]})
    assert r.status_code == 200, r.text
    return r.json()["id"]


def _feedback(base: str, iid: str, key: str) -> httpx.Response:
    return http.post(f"{base}/v1/feedback", timeout=10,
                      json={"interaction_id": iid, "metric": "thumbs", "value": 1, "idempotency_key": key})


def _rotate(state: Path, keep: int) -> None:
    r = CliRunner().invoke(app, ["secrets", "rotate", "--keep", str(keep), "--state-dir", str(state)])
    assert r.exit_code == 0, r.output


def test_rotation_keeps_old_ids_valid_during_grace_then_refuses_them(tmp_path: Path, simulator: str) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "router.yaml", simulator)
    proc, base = start_gateway(tmp_path, cfg, state)
    try:
        old_id = _chat(base, "u1")
        kid_old = old_id.split(".")[1]
    finally:
        proc.stop()

    _rotate(state, keep=2)  # new key in front, the old one kept for the grace period
    proc, base = start_gateway(tmp_path, cfg, state)
    try:
        new_id = _chat(base, "u2")
        assert new_id.split(".")[1] != kid_old  # new ids are signed with the new key
        assert _feedback(base, old_id, "k-old").status_code == 200  # old ids still verify
        assert _feedback(base, new_id, "k-new").status_code == 200
    finally:
        proc.stop()

    _rotate(state, keep=1)  # grace over: only the newest key remains
    assert len(json.loads((state / "secrets.json").read_text())["id_keys"]) == 1
    proc, base = start_gateway(tmp_path, cfg, state)
    try:
        r = _feedback(base, old_id, "k-old-2")
        assert r.status_code == 400
        assert "unknown or retired key" in r.json()["error"]["message"]
        # the id signed with the previous key (dropped too) is refused; a fresh one works
        assert _feedback(base, new_id, "k-new-2").status_code == 400
        assert _feedback(base, _chat(base, "u3"), "k-3").status_code == 200
    finally:
        proc.stop()


def test_rotate_refuses_keep_below_one(tmp_path: Path) -> None:
    r = CliRunner().invoke(app, ["secrets", "rotate", "--keep", "0", "--state-dir", str(tmp_path)])
    assert r.exit_code == 2 and "--keep must be >= 1" in r.output
