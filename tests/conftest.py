"""Shared fixtures: real redis-server, simulator and gateway processes on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Proc, start_redis, start_simulator
from tests.support.schedule import (  # noqa: F401 - hooks: xdist runs the longest modules first
    pytest_addoption,
    pytest_runtest_logreport,
    pytest_sessionfinish,
    pytest_xdist_make_scheduler,
)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[Proc, str]]:
    proc, port = start_redis(tmp_path)
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        proc.stop()


@pytest.fixture
def simulator(tmp_path: Path) -> Iterator[str]:
    """Base URL of a fresh simulator process (no added latency)."""
    proc, base = start_simulator(tmp_path)
    try:
        yield base
    finally:
        proc.stop()


def write_config(path: Path, upstream_base: str, *, extra: str = "", weights: tuple[float, float] = (0.5, 0.5)) -> Path:
    """A two-arm route `support` against a simulator upstream."""
    path.write_text(
        f"""
routes:
  support:
    experiment: support-ft-2
    hash_attribute: user
    arms:
      - {{name: control, model: gpt-4o-mini-2024-07-18, weight: {weights[0]}}}
      - {{name: treatment, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: {weights[1]}}}
upstreams:
  sim: {{base_url: "{upstream_base}/v1", timeout_s: 10}}
models:
  gpt-4o-mini-2024-07-18: {{upstream: sim, input_per_mtok: 0.15, output_per_mtok: 0.60}}
  "ft:gpt-4o-mini-2024-07-18:acme:support:abc123": {{upstream: sim, input_per_mtok: 0.30, output_per_mtok: 1.20}}
{extra}
"""
    )
    return path
