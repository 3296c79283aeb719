"""Router config store in Redis, for several gateway replicas (same interface as FileConfigStore).

Keys (prefix `abgate`): `abgate:config:versions` (hash version -> ConfigVersion JSON),
`abgate:config:latest` (the newest version number). `put` is compare-and-set with
WATCH/MULTI, bumps phases like the file store, and publishes the new version number on
channel `abgate:config` so replicas reload at once (they also poll `latest_version()`).

Sockets have short timeouts; when Redis is unreachable every call raises
`ConfigStoreUnavailable` with the URL and the cause, and the gateway keeps serving its
last good config.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from gateway.config import RouterConfig
from gateway.config_store import (
    ConfigVersion,
    ManagedTraffic,
    UnknownVersion,
    VersionConflict,
    _decode_version,
    encode_version,
    next_version,
)

CHANNEL = "abgate:config"
VERSIONS_KEY = "abgate:config:versions"
LATEST_KEY = "abgate:config:latest"
TIMEOUT_S = 1.0


class ConfigStoreUnavailable(RuntimeError):
    pass


def _redacted(url: str) -> str:
    # redis://user:password@host -> redis://***@host: never put a password in an error.
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


class RedisConfigStore:
    def __init__(self, client: redis.Redis, url: str = "redis"):
        self.r = client
        self.url = url

    @classmethod
    def from_url(cls, url: str, timeout_s: float = TIMEOUT_S) -> RedisConfigStore:
        client = redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                      retry=Retry(NoBackoff(), 0))
        return cls(client, _redacted(url))

    def _fail(self, exc: Exception) -> ConfigStoreUnavailable:
        return ConfigStoreUnavailable(f"config store at {self.url} is unreachable: {exc or type(exc).__name__}")

    def latest_version(self) -> int | None:
        try:
            raw = self.r.get(LATEST_KEY)
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        return int(raw) if raw is not None else None

    def current(self) -> ConfigVersion | None:
        try:
            # Retry if `latest` moved between the two reads (a put in progress).
            for _ in range(5):
                v = self.latest_version()
                if v is None:
                    return None
                data = self.r.hget(VERSIONS_KEY, str(v))
                if data is not None:
                    return _decode_version(data)
            raise ConfigStoreUnavailable(f"config store at {self.url}: latest version {v} has no document")
        except redis.RedisError as exc:
            raise self._fail(exc) from None

    def get(self, version: int) -> ConfigVersion:
        try:
            data = self.r.hget(VERSIONS_KEY, str(version))
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        if data is None:
            raise UnknownVersion(f"no config version {version}")
        return _decode_version(data)

    def history(self) -> list[ConfigVersion]:
        try:
            docs = self.r.hgetall(VERSIONS_KEY)
        except redis.RedisError as exc:
            raise self._fail(exc) from None
        return sorted((_decode_version(d) for d in docs.values()), key=lambda cv: cv.version)

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
        try:
            with self.r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        pipe.watch(LATEST_KEY)  # type: ignore[no-untyped-call]
                        raw = pipe.get(LATEST_KEY)
                        actual = int(raw) if raw is not None else None
                        if expected_version != actual:
                            pipe.unwatch()
                            raise VersionConflict(expected_version, actual)
                        cur_doc = pipe.hget(VERSIONS_KEY, str(actual)) if actual is not None else None
                        cur = _decode_version(cur_doc) if cur_doc is not None else None
                        new = next_version(cur, actual, config, author=author, reason=reason,
                                           decision_id=decision_id, action=action, managed=managed,
                                           file_sha256=file_sha256)
                        pipe.multi()
                        pipe.hset(VERSIONS_KEY, str(new.version), encode_version(new))
                        pipe.set(LATEST_KEY, new.version)
                        pipe.publish(CHANNEL, str(new.version))
                        pipe.execute()
                        return new
                    except redis.WatchError:
                        # Someone else wrote between WATCH and EXEC: re-check, which
                        # raises VersionConflict for them unless their write was a no-op.
                        continue
        except redis.RedisError as exc:
            raise self._fail(exc) from None

    def close(self) -> None:
        self.r.close()


async def subscribe(url: str) -> AsyncIterator[int]:
    """Yield each new config version published on `abgate:config` (push reload).

    Raises ConfigStoreUnavailable when the connection drops; callers keep their last
    good config, fall back to polling `latest_version()` and subscribe again later.
    """
    from redis.asyncio import Redis

    client: Any = Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=None)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        await pubsub.subscribe(CHANNEL)
        async for msg in pubsub.listen():
            if msg.get("type") == "message":
                try:
                    yield int(msg["data"])
                except (TypeError, ValueError):
                    continue
    except redis.RedisError as exc:
        raise ConfigStoreUnavailable(f"config subscription to {_redacted(url)} lost: {exc}") from None
    finally:
        try:
            await pubsub.aclose()
            await client.aclose()
        except Exception:
            pass
