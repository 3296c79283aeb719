"""`abgate serve`: run the gateway (uvicorn, uvloop + httptools, N worker processes)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from abgate.cli.common import RedisUrl, StateDir, console, fail, state_dir
from abgate.http_limits import ENV_VAR as HTTP_LIMITS_ENV
from abgate.http_limits import HttpLimits
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
    header_timeout: Annotated[float, typer.Option(
        "--header-timeout", min=0.1, help="Seconds a connection may take to send a request's headers (408 after).")] = 10.0,
    http_body_timeout: Annotated[float, typer.Option(
        "--http-body-timeout", min=0.1, help="Seconds a request's body may take to arrive after its headers.")] = 60.0,
    max_header_bytes: Annotated[int, typer.Option(
        "--max-header-bytes", min=1024, help="Request line + headers, counted while reading (431 beyond).")] = 80 * 1024,
    max_connections: Annotated[int, typer.Option(
        "--max-connections", min=1, help="Open connections per worker; idle and slow ones are closed first.")] = 4096,
    keep_alive_timeout: Annotated[float, typer.Option(
        "--keep-alive-timeout", min=0.1, help="Seconds an idle keep-alive connection stays open.")] = 5.0,
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
    os.environ[HTTP_LIMITS_ENV] = HttpLimits(header_timeout_s=header_timeout, body_timeout_s=http_body_timeout,
                                             max_head_bytes=max_header_bytes,
                                             max_connections=max_connections).to_env()
    if workers > 1:
        from gateway.metrics import prepare_multiprocess

        prepare_multiprocess(sdir / "run" / f"metrics-{port}")
    console.print(f"abgate serving config version {cur.version} on http://{host}:{port} "
                  f"({workers} worker{'s' if workers > 1 else ''}, state {sdir})", highlight=False)
    started = time.time()
    # uvicorn re-raises the stop signal once it has shut down; catch it here so the stop
    # can be reported (and refused as clean when events had to be rescued) first.
    caught: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: caught.append(signum))
    uvicorn.run(
        "abgate.server:create", factory=True, host=host, port=port, workers=workers, loop="uvloop",
        http="abgate.http_protocol:GuardedHttpToolsProtocol", lifespan="on", access_log=False,
        log_level=log_level.lower(), timeout_graceful_shutdown=30, timeout_keep_alive=max(1, round(keep_alive_timeout)),
        timeout_worker_healthcheck=60,  # a worker importing on a busy host is slow, not hung
        server_header=False, date_header=False, proxy_headers=False, ws="none",
    )
    _report_stop(sdir, started)
    if caught:  # a clean stop ends the way it always did: by the signal
        signal.signal(caught[0], signal.SIG_DFL)
        signal.raise_signal(caught[0])


def _report_stop(sdir: Path, started: float) -> None:
    """Refuse to report a clean stop when a worker could not store its queued events."""
    from gateway.sinks import rescue

    where = rescue.rescue_dir(sdir)
    report = rescue.stop_report(where, started)
    if report.clean:
        return
    if report.rescued_events:
        console.print(f"[red]abgate stopped with the event storage unwritable: {report.rescued_events} queued "
                      f"events were written to the rescue spool {where} instead; the next `abgate serve` "
                      f"with this state dir moves them into the archive.[/red]", highlight=False)
    if report.lost_events:
        console.print(f"[red]abgate stopped and LOST {report.lost_events} queued events: neither the event "
                      f"storage nor the rescue spool {where} was writable.[/red]", highlight=False)
    raise typer.Exit(rescue.UNCLEAN_EXIT)
