"""Model lifecycle: when each arm's model shuts down, and warning before it does.

A model's shutdown date comes from its upstream's `GET /v1/models` (`shutdown_date`, which
OpenAI now sets on retiring models and their fine-tunes) when present, else from the
config (`models.<id>.shutdown_date`). The gateway fetches the listings at start (in the
background, never delaying readiness), logs `model_retiring` for every arm whose model
retires within `WARN_DAYS`, and exports `abgate_model_days_to_shutdown{route,arm,model}`
(refreshed as days pass and on every config change) for the alert rules in grafana/.
`abgate models check` uses the same functions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

import msgspec
import structlog

from gateway.config import RouterConfig
from gateway.upstream import UpstreamClient
from gateway.upstream.transport import UpstreamConnectionError

log = structlog.get_logger("abgate.lifecycle")
WARN_DAYS = 90
REFRESH_S = 600.0
FETCH_ATTEMPTS = 3
# where a date came from; `:base` = a fine-tune inherits its base model's date (`ft:<base>:...`)
Source = Literal["upstream", "config", "upstream:base", "config:base"]


def parse_shutdown(value: Any) -> date | None:
    """`shutdown_date` as an upstream may send it: `YYYY-MM-DD`, an RFC 3339 time, or Unix seconds."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(float(value), UTC).date()
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


class _Model(msgspec.Struct):
    id: str
    shutdown_date: Any = None


class _Listing(msgspec.Struct):
    data: list[_Model]


_listing = msgspec.json.Decoder(_Listing)


def dates_from_listing(body: bytes) -> dict[str, date]:
    """Model id -> shutdown date from a `GET /v1/models` body (models without one are left out)."""
    out = {}
    for m in _listing.decode(body).data:
        d = parse_shutdown(m.shutdown_date)
        if d is not None:
            out[m.id] = d
    return out


@dataclass(frozen=True, slots=True)
class ArmShutdown:
    route: str
    arm: str
    model: str
    weight: float
    shutdown: date
    source: Source

    def days_left(self, today: date) -> int:
        return (self.shutdown - today).days


def base_model(model: str) -> str | None:
    """`ft:gpt-4o-mini-2024-07-18:org:suffix:id` -> `gpt-4o-mini-2024-07-18` (None for other ids)."""
    parts = model.split(":")
    return parts[1] if model.startswith("ft:") and len(parts) > 2 and parts[1] else None


def model_shutdown(cfg: RouterConfig, upstream_dates: Mapping[str, date], model: str
                   ) -> tuple[date, Source] | None:
    """The model's date: the upstream's, else the config's; a fine-tune without one retires with its
    base model (OpenAI: fine-tunes run only until their base model shuts down)."""
    def config_date(m: str) -> date | None:
        info = cfg.models.get(m)
        return parse_shutdown(info.shutdown_date) if info is not None else None

    if model in upstream_dates:
        return upstream_dates[model], "upstream"
    d = config_date(model)
    if d is not None:
        return d, "config"
    base = base_model(model)
    if base is not None:
        if base in upstream_dates:
            return upstream_dates[base], "upstream:base"
        d = config_date(base)
        if d is not None:
            return d, "config:base"
    return None


def arm_shutdowns(cfg: RouterConfig, upstream_dates: Mapping[str, date]) -> list[ArmShutdown]:
    """Every arm whose model has a known shutdown date (the upstream's wins over the config's)."""
    out = []
    for rname, route in cfg.routes.items():
        for arm in route.arms:
            found = model_shutdown(cfg, upstream_dates, arm.model)
            if found is not None:
                out.append(ArmShutdown(rname, arm.name, arm.model, arm.weight, *found))
    return out


def retiring(shutdowns: Iterable[ArmShutdown], within_days: int, today: date | None = None) -> list[ArmShutdown]:
    today = today or datetime.now(UTC).date()
    return sorted((s for s in shutdowns if s.days_left(today) <= within_days),
                  key=lambda s: (s.shutdown, s.route, s.arm))


def days_to(shutdown: date, now: datetime | None = None) -> float:
    """Days (fractional) from now to the start of the shutdown day, UTC."""
    now = now or datetime.now(UTC)
    return (datetime(shutdown.year, shutdown.month, shutdown.day, tzinfo=UTC) - now).total_seconds() / 86400.0


async def fetch_upstream_dates(clients: Iterable[UpstreamClient], attempts: int = FETCH_ATTEMPTS) -> dict[str, date]:
    """Shutdown dates from each upstream's `GET /models` (through its transport); an upstream that
    cannot be listed is skipped after a few attempts."""
    out: dict[str, date] = {}
    for c in clients:
        url = c.url("/models")
        for attempt in range(attempts):
            try:
                async with asyncio.timeout(10):
                    r = await c.get(url)
                    try:
                        body = await r.read()
                    finally:
                        r.release()
                if r.status == 200:
                    out.update(dates_from_listing(body))
                    break
                if r.status < 500 and r.status != 429:
                    break  # the upstream does not list models for us: config dates only
            except (UpstreamConnectionError, TimeoutError, msgspec.DecodeError, msgspec.ValidationError):
                pass
            await asyncio.sleep(0.2 * (attempt + 1))
    return out


class Lifecycle:
    """The gateway's part: the gauge, the start-up warning and the periodic refresh."""

    def __init__(self, registry: Any, multiprocess: bool = False) -> None:
        from prometheus_client import Gauge

        self.gauge = Gauge("abgate_model_days_to_shutdown",
                           "Days until the arm's model shuts down (upstream GET /v1/models shutdown_date, else "
                           "the config); absent when no date is known.",
                           ["route", "arm", "model"], multiprocess_mode="mostrecent", registry=registry)
        self.multiprocess = multiprocess
        self.upstream_dates: dict[str, date] = {}
        self._exported: set[tuple[str, str, str]] = set()
        self._cfg: RouterConfig | None = None
        self._warned: set[tuple[str, str, str, date]] = set()

    def on_config(self, cfg: RouterConfig) -> list[ArmShutdown]:
        self._cfg = cfg
        shutdowns = arm_shutdowns(cfg, self.upstream_dates)
        current = set()
        for s in shutdowns:
            key = (s.route, s.arm, s.model)
            self.gauge.labels(*key).set(round(days_to(s.shutdown), 4))
            current.add(key)
        for gone in self._exported - current:
            if self.multiprocess:
                self.gauge.labels(*gone).set(float("nan"))
            else:
                self.gauge.remove(*gone)
        self._exported = current
        self._warn(shutdowns)
        return shutdowns

    def _warn(self, shutdowns: list[ArmShutdown]) -> None:
        today = datetime.now(UTC).date()
        for s in retiring(shutdowns, WARN_DAYS, today):
            key = (s.route, s.arm, s.model, s.shutdown)
            if key in self._warned:
                continue
            self._warned.add(key)
            log.warning("model_retiring", route=s.route, arm=s.arm, model=s.model, weight=s.weight,
                        shutdown_date=s.shutdown.isoformat(), days_left=s.days_left(today), source=s.source,
                        hint="move this arm to a replacement (see examples/model-migration)")

    async def run(self, clients: Callable[[], Iterable[UpstreamClient]]) -> None:
        """Fetch the upstream listings now and then every REFRESH_S; keep the gauge current."""
        while True:
            try:
                self.upstream_dates = await fetch_upstream_dates(clients())
            except asyncio.CancelledError:
                raise
            except Exception as err:  # never take the gateway down over a lifecycle lookup
                log.warning("model_lifecycle_fetch_failed", error=f"{type(err).__name__}: {err}")
            if self._cfg is not None:
                self.on_config(self._cfg)
            await asyncio.sleep(REFRESH_S)
