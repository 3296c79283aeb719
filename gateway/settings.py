"""Process settings for one gateway (from `abgate serve` flags), passed to workers via env."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec

ENV_VAR = "ABGATE_SERVE_SETTINGS"


@dataclass(frozen=True, slots=True)
class Settings:
    state_dir: Path
    config_path: Path | None = None
    redis_url: str | None = None
    reload_interval_s: float = 0.5
    log_level: str = "info"
    # Upstream circuit breaker: open after N consecutive failures, probe after the cooldown.
    breaker_failures: int = 5
    breaker_cooldown_s: float = 5.0

    def to_env(self) -> str:
        d = asdict(self)
        d["state_dir"] = str(self.state_dir)
        d["config_path"] = str(self.config_path) if self.config_path else None
        return msgspec.json.encode(d).decode()

    @classmethod
    def from_env(cls) -> Settings:
        raw = os.environ.get(ENV_VAR)
        if not raw:
            from gateway.state import resolve_state_dir

            return cls(state_dir=resolve_state_dir())
        d = msgspec.json.decode(raw)
        d["state_dir"] = Path(d["state_dir"])
        d["config_path"] = Path(d["config_path"]) if d.get("config_path") else None
        return cls(**d)
