"""Everything one gateway process holds while it runs, built in the app lifespan.

`Runtime.compiled` is the served config plus every per-version structure the hot path
needs (bucket ranges, upstream clients, prices, response headers). A reload builds a new
`Compiled` and swaps the attribute in one assignment: a request reads it once at its
start and keeps that version to its end.
"""

from __future__ import annotations

import asyncio
import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import structlog

from gateway import config as cfgmod
from gateway import config_store as cs
from gateway.assign import RouteAssigner
from gateway.auth import AuthIndex
from gateway.config import Arm, RouterConfig, Upstream
from gateway.ids import IdSigner
from gateway.upstream import UpstreamClient, UpstreamPool
from gateway.ratelimit import RateLimiter
from gateway.settings import Settings
from gateway.state import Secrets, load_secrets

log = structlog.get_logger("abgate.runtime")
GC_GEN0_THRESHOLD = 20_000


@dataclass(frozen=True, slots=True)
class ArmTarget:
    route: str
    arm: Arm
    model: str
    model_raw: msgspec.Raw  # the JSON-encoded model id swapped into the body
    upstream: UpstreamClient
    price: tuple[float, float]  # USD per 1M (input, output) tokens
    headers: tuple[tuple[bytes, bytes], ...]  # x-abgate-* response headers except the id


@dataclass(frozen=True, slots=True)
class Compiled:
    cv: cs.ConfigVersion
    version: int
    config: RouterConfig
    routes: dict[str, RouteAssigner]
    targets: dict[tuple[str, str], ArmTarget]
    fallback: dict[str, ArmTarget | None]
    auth: AuthIndex
    max_body: int
    body_timeout: float
    upstream_keys: frozenset[tuple[str, Upstream]]


def compile_config(cv: cs.ConfigVersion, secrets: Secrets, pool: UpstreamPool) -> Compiled:
    cfg = cv.config
    routes: dict[str, RouteAssigner] = {}
    targets: dict[tuple[str, str], ArmTarget] = {}
    fallback: dict[str, ArmTarget | None] = {}
    used: set[tuple[str, Upstream]] = set()
    version_b = str(cv.version).encode()
    for rname, route in cfg.routes.items():
        routes[rname] = RouteAssigner(rname, route, secrets.unit_salt)
        for arm in route.arms:
            up_name, up = cfg.upstream_for(arm.model)
            used.add((up_name, up))
            info = cfg.models.get(arm.model)
            targets[(rname, arm.name)] = ArmTarget(
                route=rname, arm=arm, model=arm.model,
                model_raw=msgspec.Raw(msgspec.json.encode(arm.model)),
                upstream=pool.get(up_name, up),
                price=(info.input_per_mtok, info.output_per_mtok) if info else (0.0, 0.0),
                headers=(
                    (b"x-abgate-route", rname.encode()), (b"x-abgate-arm", arm.name.encode()),
                    (b"x-abgate-model", arm.model.encode()), (b"x-abgate-config-version", version_b),
                ),
            )
        fallback[rname] = targets[(rname, route.fallback)] if route.fallback else None
    return Compiled(
        cv=cv, version=cv.version, config=cfg, routes=routes, targets=targets, fallback=fallback,
        auth=AuthIndex.from_config(cfg), max_body=cfg.limits.max_body_bytes,
        body_timeout=cfg.limits.body_timeout_s, upstream_keys=frozenset(used))


def open_store(settings: Settings) -> Any:
    if settings.redis_url:
        from gateway.redis_store import RedisConfigStore

        return RedisConfigStore.from_url(settings.redis_url)
    return cs.FileConfigStore(settings.state_dir)


def differs(current: cs.ConfigVersion | None, new: RouterConfig) -> bool:
    """Would storing `new` change anything? (phases are the store's business)"""
    if current is None:
        return True
    return cfgmod.with_phases_bumped(current.config, new) != current.config


def sync_file(store: Any, path: Path, *, author: str = "serve") -> tuple[cs.ConfigVersion, cs.ConfigVersion | None]:
    """Store the config FILE as a new version if it differs from the store's current one.

    Returns (current version, the new version if one was written). Raises ConfigError
    for an invalid file. Concurrent writers (several workers) settle through the CAS.
    """
    cfg = cfgmod.parse_yaml(path.read_text())
    for _ in range(5):
        cur = store.current()
        if not differs(cur, cfg):
            return cur, None
        try:
            new = store.put(cfg, expected_version=cur.version if cur else None, author=author,
                            reason=f"config file {path}", action="set")
            return new, new
        except cs.VersionConflict:
            continue
    cur = store.current()
    return cur, None


class Runtime:
    def __init__(self, settings: Settings):
        from gateway.metrics import Metrics

        self.settings = settings
        self.state_dir = settings.state_dir
        self.secrets = load_secrets(settings.state_dir)
        self.signer = IdSigner(self.secrets.id_keys)
        self.metrics = Metrics()
        self.store = open_store(settings)
        self.pool = UpstreamPool(settings.breaker_failures, settings.breaker_cooldown_s)
        self.limiter: Any = RateLimiter()
        if settings.redis_url:
            from gateway.ratelimit import SharedRateLimiter

            self.limiter = SharedRateLimiter(settings.redis_url)
        self.sink: Any = None
        self.compiled: Compiled | None = None  # type: ignore[assignment]
        self.config: cs.ConfigVersion | None = None
        self._task: asyncio.Task[None] | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._file_mtime: float | None = None
        self._bad_file_error: str | None = None
        self._retired: list[tuple[float, list[UpstreamClient]]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from gateway.sink import EventSink

        self.sink = EventSink(self.state_dir, self.settings.redis_url, metrics=self.metrics)
        await self.sink.start()
        cur: cs.ConfigVersion | None = None
        path = self.settings.config_path
        if path is not None:
            self._file_mtime = _mtime(path)
            cur, new = await asyncio.to_thread(sync_file, self.store, path)
            if new is not None:
                self.sink.emit(cs.change_event(new, new.version - 1 if new.version > 1 else None))
        else:
            cur = await asyncio.to_thread(self.store.current)
        if cur is None:
            raise RuntimeError("no router config: pass --config FILE or store one with `abgate config set`")
        self.apply(cur)
        # Everything loaded so far lives as long as the process: move it out of the cyclic
        # GC's sight, so collections triggered by request garbage stay cheap.
        gc.collect()
        gc.freeze()
        # Request garbage is freed by refcounting; what the young-generation scans find is
        # the live in-flight state. Scanning it every 700 allocations cost ~5 us a request;
        # every 20,000 keeps each scan short and makes them ~30x rarer.
        gc.set_threshold(GC_GEN0_THRESHOLD, *gc.get_threshold()[1:])
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._reload_loop())
        if self.settings.redis_url:
            self._push_task = loop.create_task(self._push_loop(self.settings.redis_url))

    async def stop(self) -> None:
        for task in (self._task, self._push_task):
            if task is not None:
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    pass
        if self.sink is not None:
            await self.sink.stop()
        for _, clients in self._retired:
            for c in clients:
                await c.close()
        await self.pool.close()
        await self.limiter.close()
        self.metrics.close()

    @property
    def ready(self) -> bool:
        return self.compiled is not None and self.sink is not None and self.sink.writable

    # -- config ------------------------------------------------------------------------------

    def apply(self, cv: cs.ConfigVersion) -> None:
        """Swap the served config atomically (one attribute assignment)."""
        compiled = compile_config(cv, self.secrets, self.pool)
        previous = self.compiled
        self.compiled = compiled
        self.config = cv
        self.metrics.set_config(cv.version, cv.config)
        gone = self.pool.retain_only(set(compiled.upstream_keys))
        if gone:  # closed later: requests of the old version may still use them
            self._retired.append((asyncio.get_running_loop().time() + 300.0, gone))
        if previous is not None:
            log.info("config_applied", version=cv.version, previous=previous.version, author=cv.author,
                        reason=cv.reason)

    async def _reload_loop(self) -> None:
        interval = self.settings.reload_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                await self.reload_once()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # store down (Redis outage): keep the last good config
                log.warning("config_reload_failed", error=f"{type(err).__name__}: {err}")
            await self._close_retired()

    async def _push_loop(self, url: str) -> None:
        """Redis mode: apply versions as they are published (polling still backs this up)."""
        from gateway.redis_store import subscribe

        backoff = 0.5
        while True:
            try:
                async for version in subscribe(url):
                    backoff = 0.5
                    if self.compiled is None or version != self.compiled.version:
                        await self._reload_store()
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("config_subscription_lost", error=f"{type(err).__name__}: {err}")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _reload_store(self) -> None:
        latest = await asyncio.to_thread(self.store.latest_version)
        if latest is not None and self.compiled is not None and latest != self.compiled.version:
            cv = await asyncio.to_thread(self.store.current)
            # versions only grow; a slower concurrent read must not step back
            if cv is not None and cv.version > self.compiled.version:
                self.apply(cv)

    async def reload_once(self) -> None:
        await self._reload_store()
        path = self.settings.config_path
        if path is None:
            return
        mtime = _mtime(path)
        if mtime == self._file_mtime:
            return
        try:
            cur, new = await asyncio.to_thread(sync_file, self.store, path)
        except cfgmod.ConfigError as err:
            msg = str(err)
            self._file_mtime = mtime
            log.error("config_file_invalid", path=str(path), error=msg,
                      serving_version=self.compiled.version if self.compiled else None)
            self._bad_file_error = msg
            return
        except OSError as err:
            log.error("config_file_unreadable", path=str(path), error=str(err))
            self._file_mtime = mtime
            return
        self._file_mtime = mtime
        self._bad_file_error = None
        if new is not None:
            self.sink.emit(cs.change_event(new, new.version - 1 if new.version > 1 else None))
        if cur is not None and (self.compiled is None or cur.version > self.compiled.version):
            self.apply(cur)

    async def _close_retired(self) -> None:
        if not self._retired:
            return
        now = asyncio.get_running_loop().time()
        keep = []
        for deadline, clients in self._retired:
            if now >= deadline:
                for c in clients:
                    await c.close()
            else:
                keep.append((deadline, clients))
        self._retired = keep

    # -- admin changes ----------------------------------------------------------------------

    async def put_config(self, cfg: RouterConfig, *, expected_version: int | None, author: str, reason: str,
                         decision_id: str | None = None, action: str = "set") -> cs.ConfigVersion:
        new = await asyncio.to_thread(
            lambda: self.store.put(cfg, expected_version=expected_version, author=author, reason=reason,
                                   decision_id=decision_id, action=action))
        self.sink.emit(cs.change_event(new, expected_version))
        self.apply(new)
        return new


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None
