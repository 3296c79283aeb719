"""The compatibility stack: a real simulator and a real `abgate serve` in front of it, and the two
ways to reach them (`target` "simulator": the simulator directly, with real model names; "gateway":
through abgate, with route names). Every case runs against both."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.procs import Proc, start_gateway, start_simulator

CONTROL = "gpt-4o-mini-2024-07-18"
TREATMENT = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
EMBED = "text-embedding-3-small"
LIMITED = "sim-rate-limited"

def router_yaml(sim_base: str, *, hash_attribute: str = "user") -> str:
    return f"""
routes:
  support:
    experiment: compat-support
    hash_attribute: {hash_attribute}
    arms:
      - {{name: control, model: {CONTROL}, weight: 0.5}}
      - {{name: treatment, model: "{TREATMENT}", weight: 0.5}}
  embed:
    experiment: compat-embed
    arms:
      - {{name: control, model: {EMBED}, weight: 1.0}}
  limited:
    experiment: compat-limited
    arms:
      - {{name: control, model: {LIMITED}, weight: 1.0}}
upstreams:
  sim: {{base_url: "{sim_base}/v1", timeout_s: 20}}
models:
  {CONTROL}: {{upstream: sim, input_per_mtok: 0.15, output_per_mtok: 0.60}}
  "{TREATMENT}": {{upstream: sim, input_per_mtok: 0.30, output_per_mtok: 1.20}}
"""


@dataclass(frozen=True)
class Target:
    name: str          # simulator | gateway
    base_url: str      # ends in /v1
    state: Path | None  # the gateway's state dir (events), None for the simulator

    def model(self, route: str) -> str:
        """What a client sends as `model` for a route."""
        if self.name == "gateway":
            return route
        return {"support": CONTROL, "embed": EMBED, "limited": LIMITED}[route]

    @property
    def via_gateway(self) -> bool:
        return self.name == "gateway"


@dataclass
class Stack:
    sim: Proc
    sim_base: str
    gateway: Proc
    gw_base: str
    state: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("compat")
    sim, sim_base = start_simulator(tmp, "--state-dir", str(tmp / "sim-state"))
    try:
        cfg = tmp / "router.yaml"
        cfg.write_text(router_yaml(sim_base))
        gw, gw_base = start_gateway(tmp, cfg, tmp / "state")
        try:
            yield Stack(sim, sim_base, gw, gw_base, tmp / "state")
        finally:
            gw.stop()
    finally:
        sim.stop()


def targets(stack: Stack) -> dict[str, Target]:
    return {"simulator": Target("simulator", f"{stack.sim_base}/v1", None),
            "gateway": Target("gateway", f"{stack.gw_base}/v1", stack.state)}


def target_params() -> list[object]:
    """Both ways in: the simulator directly and through the gateway."""
    return ["simulator", "gateway"]
