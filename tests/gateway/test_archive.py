"""Corrupt and truncated archive lines: `abgate events stats` and `abgate analyze` count them,
say where they are (file:line) and keep going on the readable events."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from abgate.cli.main import app
from evaluation import synth
from gateway import config as cfgmod
from gateway.config_store import FileConfigStore

CONFIG = """
routes:
  support:
    experiment: support-ft-2
    arms:
      - {name: control, model: base, weight: 0.5}
      - {name: treatment, model: "ft:base:x", weight: 0.5}
upstreams:
  sim: {base_url: "http://127.0.0.1:9/v1"}
"""


def _damaged_archive(tmp_path: Path) -> tuple[Path, int, list[tuple[Path, int]]]:
    """A small synthetic archive with three bad lines; returns (state, good events, bad locations)."""
    state = tmp_path / "state"
    FileConfigStore(state).put(cfgmod.parse_yaml(CONFIG), expected_version=None, author="t", reason="init")
    arms = (synth.ArmSpec("control", "base"), synth.ArmSpec("treatment", "ft:base:x"))
    good = synth.generate(state, synth.Scenario(arms=arms, units=60, days=2, seed=5))
    target = min((state / "events").rglob("*.jsonl"))
    lines = target.read_text().splitlines(keepends=True)
    # garbage in the middle, a JSON value that is not an event, and a truncated last line
    lines.insert(3, "\x00\x00garbage{{\n")
    lines.insert(7, "[1, 2, 3]\n")
    lines.append('{"kind": "interaction", "event_id": "trunc')
    target.write_text("".join(lines))
    return state, good, [(target, 4), (target, 8), (target, len(lines))]


def test_events_stats_reports_bad_lines_with_location(tmp_path: Path) -> None:
    state, good, bad = _damaged_archive(tmp_path)
    r = CliRunner().invoke(app, ["events", "stats", "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["total"] == good
    assert out["unreadable_lines"] == 3
    assert [x.split(": ")[0] for x in out["unreadable"]] == [f"{p}:{n}" for p, n in bad]

    text = CliRunner().invoke(app, ["events", "stats", "--state-dir", str(state)])
    assert text.exit_code == 0, text.output
    unfolded = "".join(text.output.splitlines())  # rich folds long paths at the terminal width
    for path, line in bad:
        assert f"{path}:{line}" in unfolded


def test_analyze_reports_bad_lines_with_location_and_still_analyses(tmp_path: Path) -> None:
    state, _, bad = _damaged_archive(tmp_path)
    r = CliRunner().invoke(app, ["analyze", "support-ft-2", "--state-dir", str(state), "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["archive"]["corrupt_lines"] == 3
    assert [x.split(": ")[0] for x in out["archive"]["examples"]] == [f"{p}:{n}" for p, n in bad]
    assert sum(a["units"] for a in out["arms"]) == 60  # the readable events are all analysed

    text = CliRunner().invoke(app, ["analyze", "support-ft-2", "--state-dir", str(state)])
    assert text.exit_code == 0, text.output
    unfolded = "".join(text.output.splitlines())  # rich folds long paths at the terminal width
    assert "3 unreadable line(s)" in unfolded
    for path, line in bad:
        assert f"{path}:{line}" in unfolded
