"""Versioned router config store: every version kept with author, reason and decision id.

Writes are compare-and-set on `version`. The file store keeps one JSON document per
version under `<state>/config/` and serialises writers with an flock, so several
gateway workers and CLI commands can share it. `RedisConfigStore` (gateway.redis_store)
implements the same interface for multi-replica deployments; both run one shared test
suite (tests/gateway/test_config_store.py).

Besides the config, every version records the traffic state the loop owns
(`managed`: which routes' arm weights and coverage were last set by promote, rollback,
rollout, `gate --apply` or an explicit weights command) and `file_sha256`, the content
hash of the config file last applied. Both are carried forward by every write unless the
writer sets them. Nothing here decides what a change means: `gateway.config_edits` owns
that (validation, the spec/traffic merge, audit events).
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


class ManagedTraffic(msgspec.Struct, frozen=True):
    """A route whose traffic state (arm weights, coverage) the loop owns since `since_version`:
    an authored config (file, `config set`, `PUT /admin/config`) no longer changes it."""

    since_version: int
    action: str
    author: str
    decision_id: str | None = None


class ConfigVersion(msgspec.Struct, frozen=True):
    version: int
    created_at: str
    author: str
    reason: str
    config: RouterConfig
    decision_id: str | None = None
    action: str = "set"
    managed: dict[str, ManagedTraffic] = {}
    file_sha256: str | None = None  # content hash of the config file last applied


class ConfigStore(Protocol):
    def latest_version(self) -> int | None: ...
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
        managed: dict[str, ManagedTraffic] | None = None,
        file_sha256: str | None = None,
    ) -> ConfigVersion: ...


def diff(a: ConfigVersion, b: ConfigVersion) -> str:
    lines = difflib.unified_diff(
        cfgmod.to_yaml(a.config).splitlines(keepends=True),
        cfgmod.to_yaml(b.config).splitlines(keepends=True),
        fromfile=f"version {a.version}",
        tofile=f"version {b.version}",
    )
    return "".join(lines)


def _decode_version(data: bytes | str) -> ConfigVersion:
    raw: dict[str, Any] = json.loads(data)
    config = cfgmod.validate(raw.pop("config"))
    managed = msgspec.convert(raw.pop("managed", None) or {}, dict[str, ManagedTraffic])
    return ConfigVersion(config=config, managed=managed, **raw)


decode_version = _decode_version


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
    managed: dict[str, ManagedTraffic] | None = None,
    file_sha256: str | None = None,
) -> ConfigVersion:
    """The version a store writes after `actual` (whose document is `cur`), phases bumped
    wherever arm weights changed; `managed` and `file_sha256` carried forward from `cur`
    unless given (marks of routes that no longer exist are dropped). Shared by both stores."""
    new_config = cfgmod.with_phases_bumped(cur.config if cur else None, config)
    marks = managed if managed is not None else (cur.managed if cur else {})
    return ConfigVersion(
        version=(actual or 0) + 1,
        created_at=now_rfc3339(),
        author=author,
        reason=reason,
        config=new_config,
        decision_id=decision_id,
        action=action,
        managed={r: m for r, m in marks.items() if r in new_config.routes},
        file_sha256=file_sha256 if file_sha256 is not None else (cur.file_sha256 if cur else None),
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
        managed: dict[str, ManagedTraffic] | None = None,
        file_sha256: str | None = None,
    ) -> ConfigVersion:
        with self._locked():
            cur = self.current()
            actual = cur.version if cur else None
            if expected_version != actual:
                raise VersionConflict(expected_version, actual)
            new = next_version(cur, actual, config, author=author, reason=reason, decision_id=decision_id,
                               action=action, managed=managed, file_sha256=file_sha256)
            tmp = self.dir / f".v{new.version:06d}.tmp"
            tmp.write_bytes(encode_version(new))
            os.replace(tmp, self._path(new.version))
            return new
