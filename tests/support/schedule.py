"""Longest modules first across xdist workers (`--dist loadscope`), from recorded module durations.

xdist's loadscope sends whole modules to workers, largest test *count* first. Here a module's
weight is its recorded duration instead (`tests/durations.json`), so the few long end-to-end
modules start at once and the short ones fill the gaps; a module not recorded yet weighs the
median. `make test-durations` rewrites the file (`--store-durations`). Hooked in by
`tests/conftest.py`; without xdist nothing here is used.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling
from xdist.workermanage import WorkerController

__all__ = ["DURATIONS", "LongestModulesFirst", "pytest_addoption", "pytest_runtest_logreport",
           "pytest_sessionfinish", "pytest_xdist_make_scheduler"]

DURATIONS = Path(__file__).resolve().parents[1] / "durations.json"
_recorded: defaultdict[str, float] = defaultdict(float)


def module_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def load_weights(path: Path = DURATIONS) -> dict[str, float]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def heaviest_first(scopes: list[str], weights: dict[str, float]) -> list[str]:
    """Scopes (modules, or classes in them) ordered by their module's weight, heaviest first; ties keep their order."""
    default = statistics.median(weights.values()) if weights else 0.0
    return sorted(scopes, key=lambda scope: -weights.get(module_of(scope), default))


class LongestModulesFirst(LoadScopeScheduling):
    """loadscope with the work queue in weight order (the collection itself is untouched: workers
    address tests by their index in it)."""

    def __init__(self, config: pytest.Config, log: Producer | None = None,
                 weights: dict[str, float] | None = None) -> None:
        super().__init__(config, log)
        self.weights = load_weights() if weights is None else weights
        self._ordered = False

    def _assign_work_unit(self, node: WorkerController) -> None:
        if not self._ordered:  # the first call comes right after schedule() filled the queue
            units = dict(self.workqueue)
            self.workqueue.clear()
            for scope in heaviest_first(list(units), self.weights):
                self.workqueue[scope] = units[scope]
            self._ordered = True
        super()._assign_work_unit(node)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--store-durations", action="store_true",
                     help=f"write each module's duration to {DURATIONS.name} (the order xdist runs modules in)")


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> LoadScopeScheduling | None:
    if config.getoption("dist") != "loadscope":
        return None
    return LongestModulesFirst(config, log)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _recorded[module_of(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    if not session.config.getoption("store_durations") or hasattr(session.config, "workerinput"):
        return
    data = {k: round(v, 2) for k, v in sorted(_recorded.items())}
    DURATIONS.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
