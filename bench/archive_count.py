"""Count what a run wrote to the event archive: per kind and status, duplicates, unreadable lines."""

from __future__ import annotations

import glob
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from gateway.archive import glob_pattern


class _Head(msgspec.Struct):
    # Only the fields the count needs; msgspec skips the rest (messages, response) cheaply.
    kind: str
    event_id: str
    status: str | None = None


@dataclass
class ArchiveCount:
    kinds: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)  # interaction events only
    duplicates: int = 0
    unreadable: int = 0
    files: int = 0

    def to_dict(self) -> dict[str, object]:
        return {"kinds": dict(self.kinds), "interaction_statuses": dict(self.statuses),
                "duplicate_event_ids": self.duplicates, "unreadable_lines": self.unreadable, "files": self.files}


def count_lines(lines: Iterable[bytes], into: ArchiveCount, seen: set[str]) -> None:
    decoder = msgspec.json.Decoder(_Head)
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            head = decoder.decode(line)
        except msgspec.DecodeError:
            into.unreadable += 1
            continue
        if head.event_id in seen:
            into.duplicates += 1
            continue
        seen.add(head.event_id)
        into.kinds[head.kind] += 1
        if head.kind == "interaction" and head.status is not None:
            into.statuses[head.status] += 1


def count_archive(state_dir: Path) -> ArchiveCount:
    out, seen = ArchiveCount(), set[str]()
    for name in sorted(glob.glob(glob_pattern(state_dir), recursive=True)):
        out.files += 1
        with open(name, "rb") as f:
            count_lines(f, out, seen)
    return out
