from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_helpers import start_upstream
from tests.support.procs import Proc, start_gateway

UPSTREAM_KEY = "sk-live-upstream-key-0123456789"

LIVE_CONFIG = """
routes:
  support:
    experiment: support-exp
    arms:
      - {{name: control, model: base-model, weight: 0.5}}
      - {{name: treatment, model: ft-model, weight: 0.5}}
  sid:
    experiment: sid-exp
    hash_attribute: safety_identifier
    arms:
      - {{name: control, model: base-model, weight: 0.5}}
      - {{name: treatment, model: ft-model, weight: 0.5}}
  emb:
    experiment: emb-exp
    arms:
      - {{name: small, model: text-embedding-3-small, weight: 0.5}}
      - {{name: large, model: text-embedding-3-large, weight: 0.5}}
  limited:
    experiment: limited-exp
    arms: [{{name: only, model: ratelimited-model, weight: 1.0}}]
  leak:
    experiment: leak-exp
    arms: [{{name: only, model: leakkey-model, weight: 1.0}}]
upstreams:
  up: {{base_url: "{up}/v1", timeout_s: 5, api_key_env: LIVE_UPSTREAM_KEY}}
cors:
  allow_origins: ["https://app.example"]
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Live:
    gw: str
    up: str
    state: Path
    proc: Proc
    client: httpx.Client


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One real gateway process in front of the scripted upstream, shared by this package."""
    tmp = tmp_path_factory.mktemp("gwlive")
    up_proc, up = start_upstream(tmp)
    cfg = tmp / "router.yaml"
    cfg.write_text(LIVE_CONFIG.format(up=up))
    state = tmp / "state"
    gw_proc = None
    try:
        gw_proc, gw = start_gateway(tmp, cfg, state, env={"LIVE_UPSTREAM_KEY": UPSTREAM_KEY})
        with httpx.Client(base_url=gw, timeout=10) as client:
            yield Live(gw, up, state, gw_proc, client)
    finally:
        if gw_proc is not None:
            gw_proc.stop()
        up_proc.stop()
