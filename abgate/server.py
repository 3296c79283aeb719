"""`abgate.server:create`: the app factory uvicorn workers import.

It composes the gateway with the training admin routes (gateway never imports training).
Settings arrive through the environment (`gateway.settings.ENV_VAR`), set by `abgate serve`.
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import structlog

from gateway.app import create_app, fast_path
from gateway.settings import Settings


def configure_logging(level: str) -> None:
    """JSON logs on stderr (structlog); per-process, done once in each worker."""
    lvl = getattr(logging, level.upper(), logging.WARNING)
    logging.basicConfig(stream=sys.stderr, level=lvl, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


def _extra_handlers() -> list[Any]:
    try:
        mod = importlib.import_module("training.admin_api")
    except ModuleNotFoundError as err:
        if err.name not in ("training.admin_api", "training"):
            raise
        return []
    return list(getattr(mod, "handlers", None) or getattr(mod, "route_handlers", None) or [])


def create() -> Any:
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    return fast_path(create_app(settings, extra_handlers=_extra_handlers()))
