"""RedisConfigStore against a real redis-server: CAS, history, phases, pub/sub, outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio

from gateway import config as cfgmod
from gateway.config_edits import Change, ConfigEditor
from gateway.config_store import UnknownVersion, VersionConflict, diff
from gateway.redis_store import CHANNEL, ConfigStoreUnavailable, RedisConfigStore, subscribe
from tests.support.procs import free_port

pytestmark = pytest.mark.integration


def _cfg(w: float) -> cfgmod.RouterConfig:
    return cfgmod.parse_yaml(f"""
routes:
  support:
    experiment: exp-1
    arms:
      - {{name: control, model: base, weight: {1 - w}}}
      - {{name: treatment, model: "ft:base:x", weight: {w}}}
upstreams:
  sim: {{base_url: "http://127.0.0.1:9/v1"}}
""")


def test_versions_cas_history_and_phase_bumps(redis_server) -> None:
    _, url = redis_server
    store = RedisConfigStore.from_url(url)
    assert store.current() is None and store.latest_version() is None and store.history() == []
    v1 = store.put(_cfg(0.5), expected_version=None, author="ana", reason="start")
    assert v1.version == 1 and store.latest_version() == 1
    with pytest.raises(VersionConflict):
        store.put(_cfg(0.8), expected_version=None, author="bob", reason="stale")
    v2 = store.put(_cfg(0.8), expected_version=1, author="bob", reason="ramp", decision_id="d-1", action="promote")
    assert v2.config.routes["support"].phase == v1.config.routes["support"].phase + 1  # weights changed
    assert store.current() == v2 and store.get(1) == v1
    assert [v.version for v in store.history()] == [1, 2]
    assert (v2.author, v2.reason, v2.decision_id, v2.action) == ("bob", "ramp", "d-1", "promote")
    assert "weight: 0.8" in diff(v1, v2)
    v3 = ConfigEditor(store).rollback_to(1, change=Change("ana", "bad"))
    assert v3.version == 3 and v3.config.routes["support"].arms[1].weight == 0.5
    with pytest.raises(UnknownVersion):
        store.get(42)
    # A second store object (another replica) sees the same state.
    assert RedisConfigStore.from_url(url).current() == v3


def test_put_publishes_the_new_version(redis_server) -> None:
    _, url = redis_server
    store = RedisConfigStore.from_url(url)

    async def run() -> int:
        gen = subscribe(url)
        first = asyncio.ensure_future(gen.__anext__())
        probe = redis.asyncio.Redis.from_url(url)
        deadline = asyncio.get_running_loop().time() + 5
        while not (await probe.pubsub_numsub(CHANNEL))[0][1]:  # poll until SUBSCRIBE has landed
            assert asyncio.get_running_loop().time() < deadline, "the subscription never reached Redis"
            await asyncio.sleep(0.01)
        await probe.aclose()
        await asyncio.to_thread(store.put, _cfg(0.5), expected_version=None, author="a", reason="r")
        version = await asyncio.wait_for(first, 5)
        await gen.aclose()
        return version

    assert asyncio.run(run()) == 1


def test_outage_raises_a_clear_error(tmp_path: Path) -> None:
    store = RedisConfigStore.from_url(f"redis://:secretpw@127.0.0.1:{free_port()}/0", timeout_s=0.3)
    for call in (store.current, store.latest_version, store.history, lambda: store.get(1),
                 lambda: store.put(_cfg(0.5), expected_version=None, author="a", reason="r")):
        with pytest.raises(ConfigStoreUnavailable, match="is unreachable") as exc:
            call()
        assert "secretpw" not in str(exc.value)
