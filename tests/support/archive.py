"""Read back what the gateway archived: every event under `<state>/events/`, in file order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def archived_events(state: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted((state / "events").rglob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line]
    return out
