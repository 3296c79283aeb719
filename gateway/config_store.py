"""Versioned router config store: every version kept with author, reason and decision id.

Writes are compare-and-set on `version`. The file store keeps one JSON document per
version under `<state>/config/` and serialises writers with an flock, so several
gateway workers and CLI commands can share it. `RedisConfigStore` (gateway.redis_store)
implements the same interface for multi-replica deployments.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec

from gateway import config as cfgmod
from gateway.config import RouterConfig
from gateway.events import now_rfc3339


class VersionConflict(RuntimeError):
    def __init__(self, expected: int | None, actual: int | None):
        self.expected, self.actual = expected, actual
        super().__init__(f"config changed meanwhile: expected version {expected}, store is at {actual}")


class UnknownVersion(KeyError):
    pass


class ConfigVersion(msgspec.Struct, frozen=True):
    version: int
    created_at: str
    author: str
    reason: str
    config: RouterConfig
    decision_id: str | None = None
    action: str = "set"


class ConfigStore(Protocol):
    def current(self) -> ConfigVersion | None: ...
    def get(self, version: int) -> ConfigVersion: ...
    def history(self) -> list[ConfigVersion]: ...
    def put(
        self,
        config: RouterConfig,
        *,
        expected_version: int | None,
        author: str,
        reason: str,
        decision_id: str | None = None,
        action: str = "set",
    ) -> ConfigVersion: ...


def rollback(
    store: ConfigStore, to_version: int, *, author: str, reason: str, decision_id: str | None = None
) -> ConfigVersion:
    """Re-apply an old version's config as a new version (history is never rewritten)."""
    target = store.get(to_version)
    cur = store.current()
    return store.put(
        target.config,
        expected_version=cur.version if cur else None,
        author=author,
        reason=reason or f"rollback to version {to_version}",
        decision_id=decision_id,
        action="rollback",
    )


def diff(a: ConfigVersion, b: ConfigVersion) -> str:
    lines = difflib.unified_diff(
        cfgmod.to_yaml(a.config).splitlines(keepends=True),
        cfgmod.to_yaml(b.config).splitlines(keepends=True),
        fromfile=f"version {a.version}",
        tofile=f"version {b.version}",
    )
    return "".join(lines)


def _decode_version(data: bytes) -> ConfigVersion:
    raw: dict[str, Any] = json.loads(data)
    config = cfgmod.validate(raw.pop("config"))
    return ConfigVersion(config=config, **raw)


def encode_version(v: ConfigVersion) -> bytes:
    return msgspec.json.encode(v)


def next_version(
    cur: ConfigVersion | None,
    actual: int | None,
    config: RouterConfig,
    *,
    author: str,
    reason: str,
    decision_id: str | None,
    action: str,
) -> ConfigVersion:
    """The version a store writes after `actual` (whose document is `cur`), phases bumped
    wherever arm weights changed. Shared by the file and Redis stores."""
    return ConfigVersion(
        version=(actual or 0) + 1,
        created_at=now_rfc3339(),
        author=author,
        reason=reason,
        config=cfgmod.with_phases_bumped(cur.config if cur else None, config),
        decision_id=decision_id,
        action=action,
    )


class FileConfigStore:
    def __init__(self, state_dir: Path):
        self.dir = state_dir / "config"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _path(self, version: int) -> Path:
        return self.dir / f"v{version:06d}.json"

    def _versions(self) -> list[int]:
        return sorted(int(p.stem[1:]) for p in self.dir.glob("v*.json"))

    def latest_version(self) -> int | None:
        vs = self._versions()
        return vs[-1] if vs else None

    def current(self) -> ConfigVersion | None:
        v = self.latest_version()
        return self.get(v) if v is not None else None

    def get(self, version: int) -> ConfigVersion:
        path = self._path(version)
        if not path.exists():
            raise UnknownVersion(f"no config version {version}")
        return _decode_version(path.read_bytes())

    def history(self) -> list[ConfigVersion]:
        return [self.get(v) for v in self._versions()]

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(
        self,
        config: RouterConfig,
        *,
        expected_version: int | None,
        author: str,
        reason: str,
        decision_id: str | None = None,
        action: str = "set",
    ) -> ConfigVersion:
        with self._locked():
            cur = self.current()
            actual = cur.version if cur else None
            if expected_version != actual:
                raise VersionConflict(expected_version, actual)
            new = next_version(cur, actual, config, author=author, reason=reason,
                               decision_id=decision_id, action=action)
            tmp = self.dir / f".v{new.version:06d}.tmp"
            tmp.write_bytes(encode_version(new))
            os.replace(tmp, self._path(new.version))
            return new


def change_event(new: ConfigVersion, previous: int | None):  # -> events.ConfigChange
    """The audit event for a stored config change."""
    from gateway.events import ConfigChange, new_event_id

    return ConfigChange(
        event_id=new_event_id(),
        ts=new.created_at,
        tenant="system",
        config_version=new.version,
        action=new.action,
        author=new.author,
        reason=new.reason,
        decision_id=new.decision_id,
        previous_version=previous,
    )
