from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.gateway_helpers import Live, upstream_and_gateway

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


@pytest.fixture(scope="session")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One real gateway process in front of the scripted upstream, shared by this package."""
    with upstream_and_gateway(tmp_path_factory.mktemp("gwlive"), lambda up: LIVE_CONFIG.format(up=up),
                              env={"LIVE_UPSTREAM_KEY": UPSTREAM_KEY}) as live:
        yield live
