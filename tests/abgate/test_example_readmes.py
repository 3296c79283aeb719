"""Each example README runs as written: every `abgate ...` command it shows exists with the flags it
uses, every example file it names exists, and its seed checklist marks nothing missing."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer.main

from abgate.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
READMES = sorted((ROOT / "examples").glob("*/README.md"))
CLI = typer.main.get_command(app)


def _commands(text: str) -> list[str]:
    text = text.replace("\\\n", " ")
    found = []
    for m in re.finditer(r"(?:^[ \t]*|`|\$\()(abgate (?:[a-z][a-z-]*)(?: [^`\n|>#;&]*)?)", text, re.M):
        found.append(m.group(1).strip())
    return found


def _check(cmdline: str) -> str | None:
    try:
        words = shlex.split(cmdline)[1:]
    except ValueError:
        words = cmdline.split()[1:]
    cmd = CLI
    path = ["abgate"]
    while hasattr(cmd, "commands") and words and not words[0].startswith("-"):
        sub = cmd.commands.get(words[0])
        if sub is None:
            return f"{' '.join(path)} has no command {words[0]!r}"
        path.append(words.pop(0))
        cmd = sub
    if hasattr(cmd, "commands"):
        return None  # `abgate dataset` alone: the group's help
    if cmd.context_settings.get("ignore_unknown_options"):
        return None  # pass-through commands (simulator, traffic)
    flags = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    for w in words:
        if w.startswith("--") and w.split("=", 1)[0] not in flags:
            return f"{' '.join(path)} has no option {w.split('=', 1)[0]}"
    return None


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.name)
def test_readme_commands_exist_with_their_flags(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    cmds = _commands(text)
    assert len(cmds) >= 8
    problems = [f"{c!r}: {p}" for c in cmds if (p := _check(c))]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("readme", READMES, ids=lambda p: p.parent.name)
def test_readme_files_exist_and_checklist_has_nothing_missing(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    for rel in set(re.findall(r"examples/[\w-]+/[\w.-]+\.(?:py|yaml|json)", text)):
        assert (ROOT / rel).exists(), rel
    rows = [line for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]
    assert len(rows) >= 8, "no checklist table"
    # the four seed workflows map their seed document's steps; model-migration maps its own workflow
    first = "| step" if readme.parent.name == "model-migration" else "| seed"
    assert rows[0].lower().startswith(first), rows[0]
    for row in rows:
        cells = [c.strip().lower() for c in row.strip("|").split("|")]
        assert len(cells) >= 2 and cells[1] and not any(w in cells[1] for w in ("missing", "not supported", "none")), row
    assert "source .venv/bin/activate" in text


def test_the_checker_catches_a_bad_command() -> None:
    assert _check("abgate dataset export DS --no-such-flag") == "abgate dataset export has no option --no-such-flag"
    assert _check("abgate dataset export DS --include-unreviewed") is None
    assert "no command" in (_check("abgate dataset frobnicate") or "")
    assert _check("abgate dataset validate training.jsonl --dataset DS") is not None  # the old checklist hint
