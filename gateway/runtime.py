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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import structlog

from gateway import config as cfgmod
from gateway import config_edits as edits
from gateway import config_store as cs
from gateway.assign import RouteAssigner
from gateway.auth import AuthIndex
from gateway.config import Arm, RouterConfig, Upstream
from gateway.events import ConfigChange
from gateway.ids import IdSigner
from gateway.lifecycle import Lifecycle
from gateway.ratelimit import Limiter, open_limiter
from gateway.settings import Settings
from gateway.state import Secrets, load_secrets
from gateway.upstream import UpstreamClient, UpstreamPool
from gateway.variants import CompiledVariant, check_resources, compile_variant

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
    variant: CompiledVariant  # the arm's request overrides and stable variant id


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


def compile_config(cv: cs.ConfigVersion, secrets: Secrets, pool: UpstreamPool,
                   state_dir: Path | None = None) -> Compiled:
    cfg = cv.config
    routes: dict[str, RouteAssigner] = {}
    targets: dict[tuple[str, str], ArmTarget] = {}
    fallback: dict[str, ArmTarget | None] = {}
    used: set[tuple[str, Upstream]] = set()
    version_b = str(cv.version).encode()

    def client_for(name: str) -> UpstreamClient:  # embedding upstreams of few-shot variants
        used.add((name, cfg.upstreams[name]))
        return pool.get(name, cfg.upstreams[name])

    for rname, route in cfg.routes.items():
        routes[rname] = RouteAssigner(rname, route, secrets.unit_salt)
        for i, arm in enumerate(route.arms):
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
                variant=compile_variant(cfg, rname, i, arm, state_dir or Path("."), client_for),
            )
        fallback[rname] = targets[(rname, route.fallback)] if route.fallback else None
    return Compiled(
        cv=cv, version=cv.version, config=cfg, routes=routes, targets=targets, fallback=fallback,
        auth=AuthIndex.from_config(cfg), max_body=cfg.limits.max_body_bytes,
        body_timeout=cfg.limits.body_timeout_s, upstream_keys=frozenset(used))


def open_store(settings: Settings) -> cs.ConfigStore:
    if settings.redis_url:
        from gateway.redis_store import RedisConfigStore

        return RedisConfigStore.from_url(settings.redis_url)
    return cs.FileConfigStore(settings.state_dir)


def file_digest(path: Path) -> str | None:
    """sha256 of the file's content, None when it cannot be read."""
    try:
        return edits.file_sha256(path.read_bytes())
    except OSError:
        return None


class Runtime:
    def __init__(self, settings: Settings):
        from gateway.metrics import Metrics

        self.settings = settings
        self.state_dir = settings.state_dir
        self.secrets = load_secrets(settings.state_dir)
        self.signer = IdSigner(self.secrets.id_keys)
        self.metrics = Metrics()
        self.lifecycle = Lifecycle(self.metrics.registry, self.metrics.multiprocess_dir is not None)
        self.store = open_store(settings)
        self.editor = edits.ConfigEditor(self.store, audit=self._audit,
                                         check=lambda cfg: check_resources(cfg, self.state_dir))
        self._loop: asyncio.AbstractEventLoop | None = None
        self.pool = UpstreamPool(settings.breaker_failures, settings.breaker_cooldown_s)
        self.limiter: Limiter = open_limiter(settings.state_dir, settings.redis_url)
        self.sink: Any = None
        self.compiled: Compiled | None = None
        self.config: cs.ConfigVersion | None = None
        self._task: asyncio.Task[None] | None = None
        self._push_task: asyncio.Task[None] | None = None
        self._file_stat: tuple[int, int] | None = None  # (mtime_ns, size) last looked at
        self._file_sha: str | None = None  # content hash last seen (applied, refused or unchanged)
        self._lifecycle_task: asyncio.Task[None] | None = None
        self._bad_file_error: str | None = None
        self._refused_at: int | None = None  # store version when the file was last refused
        self._retired: list[tuple[float, list[UpstreamClient]]] = []

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        from gateway.sinks import open_sink

        self.sink = open_sink(self.state_dir, self.settings.redis_url, metrics=self.metrics)
        await self.sink.start()
        self._loop = asyncio.get_running_loop()
        path = self.settings.config_path
        # Workers never write config on start or respawn: `abgate serve` applied the file once
        # before starting them. Only an empty store (an app built without `abgate serve`) is
        # seeded, compare-and-set on "no version yet", so concurrent workers write it once.
        cur = await asyncio.to_thread(self.store.current)
        if cur is None and path is not None:
            cur = (await asyncio.to_thread(self.editor.sync_file, path, seed_only=True)).current
        if path is not None:
            # File edits from now on are applied live; what the file says at start is not news.
            self._file_stat, self._file_sha = _stat(path), file_digest(path)
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
        self._lifecycle_task = loop.create_task(self.lifecycle.run(self.pool.clients))
        if self.settings.redis_url:
            self._push_task = loop.create_task(self._push_loop(self.settings.redis_url))

    async def stop(self) -> None:
        for task in (self._task, self._push_task, self._lifecycle_task):
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
        compiled = compile_config(cv, self.secrets, self.pool, self.state_dir)
        previous = self.compiled
        self.compiled = compiled
        self.config = cv
        self.metrics.set_config(cv.version, cv.config)
        self.lifecycle.on_config(cv.config)
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
        if path is not None:
            await self._reload_file(path)

    async def _reload_file(self, path: Path) -> None:
        """GitOps: apply a file edit made while running, keeping managed traffic state. Each
        content is tried once per process; the store's file hash makes the write once-only
        across workers and replicas. A refused or invalid file leaves the running config."""
        if self._refused_at is not None and self.compiled is not None and self.compiled.version != self._refused_at:
            # the traffic state moved since the refusal (e.g. the arm was drained): try the file again
            self._refused_at, self._file_stat, self._file_sha = None, None, None
        st = _stat(path)
        if st is None or st == self._file_stat:
            return
        self._file_stat = st
        sha = file_digest(path)
        if sha is None or sha == self._file_sha:
            return
        serving = self.compiled.version if self.compiled else None
        try:
            out = await asyncio.to_thread(self.editor.sync_file, path, author="file-reload")
        except cfgmod.ConfigError as err:
            self._file_sha, self._bad_file_error = sha, str(err)
            log.error("config_file_invalid", path=str(path), error=str(err), serving_version=serving)
            return
        except edits.TrafficConflict as err:
            self._file_sha, self._bad_file_error = sha, str(err)
            self._refused_at = serving
            log.error("config_file_refused", path=str(path), error=str(err), serving_version=serving)
            return
        except OSError as err:
            self._file_stat = None  # try again on the next tick
            log.error("config_file_unreadable", path=str(path), error=str(err))
            return
        except Exception:  # store unreachable: try this content again on the next tick
            self._file_stat = None
            raise
        self._file_sha, self._bad_file_error, self._refused_at = sha, None, None
        if out.written is not None:
            log.info("config_file_applied", path=str(path), version=out.written.version, notes=list(out.notes))
        if self.compiled is None or out.current.version > self.compiled.version:
            self.apply(out.current)

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

    def _audit(self, event: ConfigChange) -> None:
        """The editor's audit callback: may run in a worker thread; the sink is loop-only."""
        if self.sink is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self.sink.emit, event)

    async def edit(self, fn: Callable[[edits.ConfigEditor], cs.ConfigVersion]) -> cs.ConfigVersion:
        """Run one editor call off the loop and serve its result at once."""
        new = await asyncio.to_thread(fn, self.editor)
        if self.compiled is None or new.version > self.compiled.version:
            self.apply(new)
        return new


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size
