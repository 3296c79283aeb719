"""CPU time and memory of a process tree, read from /proc (Linux; no psutil needed)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    cpu_s: float  # user + system seconds, summed over the tree
    rss_kb: int  # current resident set, summed over the tree
    hwm_kb: int  # peak resident set (VmHWM), summed over the tree


def parse_stat(text: str) -> tuple[int, float]:
    """(ppid, user+system seconds) from one /proc/<pid>/stat line.

    The command name (field 2) may contain spaces and parentheses, so split after the last ')'.
    """
    rest = text[text.rindex(")") + 2:].split()
    # rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    return int(rest[1]), (int(rest[11]) + int(rest[12])) / _TICKS


def parse_status_kb(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children_map(proc: Path = PROC) -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, _ = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # the process exited while we looked
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_pids(pid: int, proc: Path = PROC) -> list[int]:
    """`pid` and all its descendants (uvicorn workers, the multiprocess supervisor's children)."""
    tree = children_map(proc)
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def usage(pid: int, proc: Path = PROC) -> Usage:
    cpu, rss, hwm = 0.0, 0, 0
    for p in tree_pids(pid, proc):
        try:
            cpu += parse_stat((proc / str(p) / "stat").read_text())[1]
            status = (proc / str(p) / "status").read_text()
        except (OSError, ValueError, IndexError):
            continue
        rss += parse_status_kb(status, "VmRSS")
        hwm += parse_status_kb(status, "VmHWM")
    return Usage(cpu_s=cpu, rss_kb=rss, hwm_kb=hwm)
