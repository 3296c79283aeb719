"""Reference libraries (scipy, statsmodels) imported when a test first uses them, not when
every xdist worker collects the module that names them (about 2 s per worker)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith(("_", "pytest")):  # pytest probes module globals while collecting: no import
            raise AttributeError(attr)
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)
