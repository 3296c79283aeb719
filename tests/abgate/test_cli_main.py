"""`abgate` registers its commands lazily: `--help` and `config validate` import no heavy library,
and the help listed from main.py's table is exactly each command's own help."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from abgate.cli import main as climain
from bench.startup import HEAVY, heavy_imports

CONFIG = """routes:
  support:
    experiment: e1
    arms: [{name: control, model: m, weight: 1.0}]
upstreams:
  u: {base_url: "http://127.0.0.1:9/v1"}
"""


@pytest.mark.parametrize("args", [["--help"], [], ["config", "--help"], ["config", "validate", "{cfg}"]])
def test_light_commands_import_no_heavy_library(args: list[str], tmp_path: Path) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(CONFIG)
    assert heavy_imports([a.replace("{cfg}", str(cfg)) for a in args]) == []


def test_the_probe_sees_heavy_imports() -> None:
    # the check above can fail: a command that needs numpy/duckdb is reported
    assert {"duckdb", "evaluation"} <= set(heavy_imports(["analyze", "--help"]))


def test_listed_help_equals_each_commands_own_help() -> None:
    root = typer.main.get_command(climain.app)
    names = [s.name for s in climain.COMMANDS]
    assert root.list_commands(None) == names
    for spec in climain.COMMANDS:
        real = climain.load(spec)
        assert real.name == spec.name
        assert (real.help or "").strip() == spec.help.strip(), spec.name
        assert real.context_settings == spec.context_settings, spec.name
    from abgate.cli import simulator_cmd

    assert climain._PASS == simulator_cmd._PASS


def test_help_runs_and_lists_every_command_in_process() -> None:
    result = CliRunner().invoke(climain.app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for spec in climain.COMMANDS:
        assert spec.name in result.output
    bad = CliRunner().invoke(climain.app, ["confg"])
    assert bad.exit_code == 2 and "Did you mean 'config'" in bad.output


def test_config_validate_runs_through_the_lazy_group(tmp_path: Path) -> None:
    cfg = tmp_path / "router.yaml"
    cfg.write_text(CONFIG)
    ok = CliRunner().invoke(climain.app, ["config", "validate", str(cfg)])
    assert ok.exit_code == 0, ok.output
    cfg.write_text(CONFIG.replace("weight: 1.0", "weight: 0.5"))
    bad = CliRunner().invoke(climain.app, ["config", "validate", str(cfg)])
    assert bad.exit_code != 0 and "routes.support.arms" in bad.output


def test_heavy_list_names_real_packages() -> None:
    assert sys.modules.get("abgate.cli.main") is not None and "duckdb" in HEAVY
