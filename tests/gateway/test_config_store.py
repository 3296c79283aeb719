"""The shared config-store suite: every test runs against the file store and against the Redis
store on a real redis-server (one interface, one class per backend, the same behaviour)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import redis as redislib

from gateway import config as cfgmod
from gateway import config_store as cs
from gateway.redis_store import ConfigStoreUnavailable, RedisConfigStore
from tests.support.procs import free_port, start_redis


def _cfg(w: float = 0.5, model: str = "base", extra_route: bool = False) -> cfgmod.RouterConfig:
    other = "  other:\n    experiment: other-exp\n    arms: [{name: only, model: base, weight: 1.0}]\n" if extra_route else ""
    return cfgmod.parse_yaml(f"""
routes:
  support:
    experiment: exp-1
    arms:
      - {{name: control, model: {model}, weight: {1 - w}}}
      - {{name: treatment, model: "ft:base:x", weight: {w}}}
{other}upstreams:
  sim: {{base_url: "http://127.0.0.1:9/v1"}}
""")


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture(params=["file", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[cs.ConfigStore]:
    if request.param == "file":
        yield cs.FileConfigStore(tmp_path / "state")
        return
    url = request.getfixturevalue("redis_url")
    redislib.Redis.from_url(url).flushdb()
    s = RedisConfigStore.from_url(url)
    try:
        yield s
    finally:
        s.close()


def _reopen(store: cs.ConfigStore, tmp_path: Path) -> cs.ConfigStore:
    """A second handle on the same store (another worker, replica or CLI process)."""
    if isinstance(store, RedisConfigStore):
        return RedisConfigStore(redislib.Redis(connection_pool=store.r.connection_pool), store.url)
    return cs.FileConfigStore(tmp_path / "state")


def test_empty_store(store: cs.ConfigStore) -> None:
    assert store.current() is None and store.latest_version() is None and store.history() == []
    with pytest.raises(cs.UnknownVersion):
        store.get(1)


def test_versions_are_monotonic_kept_and_shared(store: cs.ConfigStore, tmp_path: Path) -> None:
    v1 = store.put(_cfg(), expected_version=None, author="ann", reason="first")
    v2 = store.put(_cfg(model="base2"), expected_version=1, author="bob", reason="2nd", decision_id="d-1",
                   action="promote")
    assert (v1.version, v2.version) == (1, 2) and store.latest_version() == 2
    assert [(v.author, v.reason, v.decision_id, v.action) for v in store.history()] == [
        ("ann", "first", None, "set"), ("bob", "2nd", "d-1", "promote")]
    other = _reopen(store, tmp_path)
    assert other.current() == v2 and other.get(1) == v1


def test_compare_and_set_rejects_a_stale_writer(store: cs.ConfigStore) -> None:
    store.put(_cfg(), expected_version=None, author="a", reason="r")
    with pytest.raises(cs.VersionConflict, match="expected version None, store is at 1"):
        store.put(_cfg(0.8), expected_version=None, author="b", reason="stale")
    with pytest.raises(cs.VersionConflict, match="expected version 7, store is at 1"):
        store.put(_cfg(0.8), expected_version=7, author="b", reason="stale")
    assert store.latest_version() == 1 and store.current().config == _cfg()


def test_concurrent_writers_each_version_is_written_once(store: cs.ConfigStore, tmp_path: Path) -> None:
    store.put(_cfg(), expected_version=None, author="seed", reason="r")
    wins: list[int] = []
    conflicts: list[int] = []
    barrier = threading.Barrier(6)

    def writer(i: int) -> None:
        s = _reopen(store, tmp_path)
        barrier.wait()
        try:
            wins.append(s.put(_cfg(0.1 * i), expected_version=1, author=f"w{i}", reason="race").version)
        except cs.VersionConflict:
            conflicts.append(i)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(1, 7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins == [2] and len(conflicts) == 5
    assert [v.version for v in store.history()] == [1, 2]


def test_phase_bumps_only_when_traffic_can_move(store: cs.ConfigStore) -> None:
    store.put(_cfg(), expected_version=None, author="a", reason="r")
    same_arms = msgspec.structs.replace(_cfg(), limits=cfgmod.Limits(max_body_bytes=1024))
    v2 = store.put(same_arms, expected_version=1, author="a", reason="limits")
    assert v2.config.routes["support"].phase == 1
    v3 = store.put(_cfg(0.8), expected_version=2, author="a", reason="ramp")
    assert v3.config.routes["support"].phase == 2


def test_managed_marks_and_file_hash_are_kept_and_carried_forward(store: cs.ConfigStore, tmp_path: Path) -> None:
    mark = cs.ManagedTraffic(since_version=2, action="promote", author="ann", decision_id="d-9")
    store.put(_cfg(extra_route=True), expected_version=None, author="serve", reason="seed", file_sha256="a" * 64)
    v2 = store.put(_cfg(1.0, extra_route=True), expected_version=1, author="ann", reason="promote",
                   managed={"support": mark, "gone": mark})
    assert v2.managed == {"support": mark}  # marks of routes that do not exist are dropped
    assert v2.file_sha256 == "a" * 64  # carried forward
    v3 = store.put(_cfg(1.0, model="b2"), expected_version=2, author="x", reason="spec")
    assert v3.managed == {"support": mark} and v3.file_sha256 == "a" * 64
    v4 = store.put(_cfg(1.0, model="b2"), expected_version=3, author="x", reason="reset", managed={},
                   file_sha256="b" * 64)
    assert v4.managed == {} and v4.file_sha256 == "b" * 64
    again = _reopen(store, tmp_path)
    assert [v.managed for v in again.history()] == [{}, {"support": mark}, {"support": mark}, {}]
    assert again.get(2) == v2


def test_documents_written_before_managed_state_existed_still_load(store: cs.ConfigStore, tmp_path: Path) -> None:
    import json

    old = {"version": 1, "created_at": "2026-01-01T00:00:00Z", "author": "old", "reason": "r",
           "config": cfgmod.to_builtins(_cfg()), "decision_id": None, "action": "set"}
    data = json.dumps(old).encode()
    if isinstance(store, RedisConfigStore):
        from gateway.redis_store import LATEST_KEY, VERSIONS_KEY

        store.r.hset(VERSIONS_KEY, "1", data)
        store.r.set(LATEST_KEY, 1)
    else:
        (tmp_path / "state" / "config" / "v000001.json").write_bytes(data)
    cur = store.current()
    assert cur is not None and cur.managed == {} and cur.file_sha256 is None and cur.author == "old"
    assert store.put(_cfg(0.7), expected_version=1, author="new", reason="r").version == 2


def test_redis_outage_is_a_clear_error_without_the_password() -> None:
    store = RedisConfigStore.from_url(f"redis://:secretpw@127.0.0.1:{free_port()}/0", timeout_s=0.3)
    with pytest.raises(ConfigStoreUnavailable, match="is unreachable") as exc:
        store.put(_cfg(), expected_version=None, author="a", reason="r")
    assert "secretpw" not in str(exc.value)

