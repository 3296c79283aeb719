"""The gate for either stage of a criteria file: online (A/B analysis) or offline (held-out eval runs).

Its own module so that `evaluation.gate` (online) and `evaluation.offline.gate` (which builds on the
online verdict types) do not import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from evaluation.criteria import Criteria
from evaluation.gate import Decision, decide_online
from evaluation.offline import gate as offline_gate


def decide(crit: Criteria, state_dir: Path, **kw: Any) -> Decision:
    """Either stage. Offline criteria go to `evaluation.offline.gate.decide(criteria, state_dir)`."""
    if crit.stage == "offline":
        d = offline_gate.decide(crit, state_dir)
        d.criteria_path = d.criteria_path or kw.get("criteria_path")
        d.criteria_sha256 = d.criteria_sha256 or kw.get("criteria_sha256")
        d.decided_by = d.decided_by or kw.get("decided_by", "")
        return d
    return decide_online(crit, state_dir, **kw)
