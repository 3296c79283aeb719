"""`abgate serve`: run the gateway (uvicorn, uvloop + httptools, N worker processes)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from abgate.cli.common import RedisUrl, StateDir, console, fail, state_dir
from gateway import config as cfgmod
from gateway.config_store import ConfigVersion
from gateway.settings import ENV_VAR, Settings


def serve(
    config: Annotated[Path | None, typer.Option("--config", help="Router config YAML (hot-reloaded).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    state: StateDir = None,
    redis: RedisUrl = None,
    log_level: Annotated[str, typer.Option("--log-level", help="debug | info | warning | error")] = "info",
    reload_interval: Annotated[float, typer.Option("--reload-interval", help="Config poll interval, s.")] = 0.5,
    reset_traffic: Annotated[bool, typer.Option(
        "--reset-traffic", help="Take arm weights and coverage from FILE too, replacing the traffic state "
                                "promote/rollback/rollout set (one-off; never leave it in a unit file).")] = False,
) -> None:
    """Serve the OpenAI-compatible gateway. FILE seeds an empty store; later it is applied only
    when its content changed since it was last applied, keeping the traffic state (weights,
    coverage, phase) that promote, rollback and rollout manage. Edits are picked up live."""
    import uvicorn

    from gateway.config_edits import ConfigEditor, TrafficConflict, archive_audit
    from gateway.runtime import open_store

    sdir = state_dir(state).resolve()
    settings = Settings(state_dir=sdir, config_path=config.resolve() if config else None, redis_url=redis,
                        reload_interval_s=reload_interval, log_level=log_level)
    store = open_store(settings)
    cur: ConfigVersion | None
    try:
        if settings.config_path is not None:
            if not settings.config_path.exists():
                raise fail(f"{config}: no such file")
            # The one config write of a deploy: here, once, before any worker starts.
            out = ConfigEditor(store, audit=archive_audit(sdir)).sync_file(
                settings.config_path, author="serve", reset_traffic=reset_traffic)
            cur = out.current
            what = f"applied as version {cur.version}" if out.written else "not applied"
            console.print(f"config file {config}: {what}", highlight=False)
            for note in out.notes:
                console.print(f"  - {note}", highlight=False, markup=False)
        else:
            cur = store.current()
    except cfgmod.ConfigError as err:
        raise fail(f"{config}: {err}") from None
    except TrafficConflict as err:
        raise fail(f"{config} refused, nothing was written: {err}") from None
    except (OSError, ConnectionError, RuntimeError) as err:
        raise fail(f"cannot open the config store: {err}") from None
    if cur is None:
        raise fail("no router config: pass --config FILE or store one with `abgate config set FILE`")
    os.environ[ENV_VAR] = settings.to_env()
    if workers > 1:
        from gateway.metrics import prepare_multiprocess

        prepare_multiprocess(sdir / "run" / f"metrics-{port}")
    console.print(f"abgate serving config version {cur.version} on http://{host}:{port} "
                  f"({workers} worker{'s' if workers > 1 else ''}, state {sdir})", highlight=False)
    uvicorn.run(
        "abgate.server:create", factory=True, host=host, port=port, workers=workers, loop="uvloop",
        http="httptools", lifespan="on", access_log=False, log_level=log_level.lower(),
        timeout_graceful_shutdown=30, server_header=False, date_header=False, proxy_headers=False,
    )
