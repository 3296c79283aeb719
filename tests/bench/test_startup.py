"""The benchmark reports CLI start-up and checks it against the 0.3 s target."""

from __future__ import annotations

from bench import report


def _results(help_s: float, validate_s: float) -> dict:
    return {"date": "d", "machine": {}, "options": {"duration_s": 1}, "targets": {}, "runs": [], "offline": {},
            "startup": {"target_s": 0.3, "commands": [
                {"command": "abgate --help", "runs": 3, "min_s": help_s, "median_s": help_s, "heavy_imports": []},
                {"command": "abgate config validate FILE", "runs": 3, "min_s": validate_s, "median_s": validate_s,
                 "heavy_imports": ["numpy"]}]}}


def test_startup_checks_and_markdown() -> None:
    rows = [c for c in report.checks(_results(0.12, 0.45)) if c["target"] == "cli"]
    assert [(c["check"].split("`")[1], c["ok"]) for c in rows] == [
        ("abgate --help", True), ("abgate config validate FILE", False)]
    md = report.markdown(_results(0.12, 0.45))
    assert "## CLI start-up" in md and "| `abgate config validate FILE` | 3 | 0.450 | 0.450 | numpy |" in md
