"""Read back what the gateway archived: every event under `<state>/events/`, in file order.

The archiver may be appending while a test polls, so a last line without its newline is still being
written and is left for the next read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def archived_events(state: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((state / "events").rglob("*.jsonl")):
        text = path.read_text()
        complete = text[: text.rfind("\n") + 1]
        out += [json.loads(line) for line in complete.splitlines() if line]
    return out
