"""Router config: schema, validation with precise field paths, and YAML I/O.

The config is immutable once loaded (msgspec frozen Structs); the store hands out
whole new objects on change, so request handlers never see a half-applied config.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
import yaml

from gateway.routing import bucket_ranges

CaptureMode = Literal["full", "redacted", "off"]
_HASH_ATTR = re.compile(r"^(user|safety_identifier|prompt_cache_key|api_key|header:[A-Za-z0-9-]+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

BUILTIN_METRICS = frozenset(
    {"thumbs", "edited_response", "followup", "csat", "approved", "policy_violation", "review"}
)


class ConfigError(ValueError):
    """An invalid config; `field` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: str
    model: str
    weight: float


class Route(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    experiment: str
    arms: tuple[Arm, ...]
    hash_attribute: str = "user"
    hash_version: int = 2
    phase: int = 1
    coverage: float = 1.0
    fallback: str | None = None
    capture: CaptureMode = "full"

    @property
    def ranges(self) -> list[tuple[float, float]]:
        return bucket_ranges(len(self.arms), self.coverage, [a.weight for a in self.arms])

    def arm(self, name: str) -> Arm | None:
        for a in self.arms:
            if a.name == name:
                return a
        return None


class Upstream(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base_url: str
    api_key_env: str | None = None
    timeout_s: float = 60.0
    connect_timeout_s: float = 5.0
    max_connections: int = 256


class ModelInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    upstream: str | None = None
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0
    training_per_mtok: float | None = None
    token_limit: int | None = None


class ApiKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    sha256: str
    tenant: str
    routes: tuple[str, ...] | None = None  # None = every route
    admin: bool = False
    rate_limit_rps: float | None = None
    rate_limit_burst: int | None = None


class Auth(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    admin_token_env: str = "ABGATE_ADMIN_TOKEN"
    keys: tuple[ApiKey, ...] = ()


class CustomMetric(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: Literal["boolean", "float"]
    min: float | None = None
    max: float | None = None


class Limits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    max_body_bytes: int = 4 * 1024 * 1024
    body_timeout_s: float = 30.0


class Cors(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Browser access: origins allowed to call the API (`"*"` for any)."""

    allow_origins: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ("*",)  # "*": whatever the preflight asks for (the SDKs send many)
    max_age_s: int = 600


class RouterConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    routes: dict[str, Route] = {}
    upstreams: dict[str, Upstream] = {}
    models: dict[str, ModelInfo] = {}
    auth: Auth | None = None
    metrics: dict[str, CustomMetric] = {}
    limits: Limits = Limits()
    default_upstream: str | None = None
    cors: Cors | None = None

    def upstream_for(self, model: str) -> tuple[str, Upstream]:
        info = self.models.get(model)
        name = (info.upstream if info and info.upstream else None) or self.default_upstream
        if name is None:
            name = next(iter(self.upstreams))
        return name, self.upstreams[name]


_SECTIONS: dict[str, type] = {"routes": Route, "upstreams": Upstream, "models": ModelInfo, "metrics": CustomMetric}


def _type_error(raw: dict[str, Any], err: msgspec.ValidationError) -> ConfigError:
    # msgspec says "... - at `$.routes[...].arms[1].weight`": dict keys are elided, so find
    # the offending entry by converting each one alone, and name it in the field path.
    text = str(err)
    m = re.search(r" - at `\$\.?(.*)`$", text)
    field = m.group(1) if m else ""
    message = text[: m.start()] if m else text
    section = field.split("[", 1)[0]
    if field.startswith(f"{section}[...]") and section in _SECTIONS and isinstance(raw.get(section), dict):
        for key, value in raw[section].items():
            try:
                msgspec.convert(value, _SECTIONS[section])
            except msgspec.ValidationError:
                field = field.replace(f"{section}[...]", f"{section}.{key}", 1)
                break
    return ConfigError(field, message)


def validate(raw: Any) -> RouterConfig:
    """Convert a parsed YAML/JSON document into a RouterConfig or raise ConfigError."""
    if not isinstance(raw, dict):
        raise ConfigError("", f"config must be a mapping, got {type(raw).__name__}")
    try:
        cfg = msgspec.convert(raw, RouterConfig)
    except msgspec.ValidationError as err:
        raise _type_error(raw, err) from None
    _check_semantics(cfg)
    return cfg


def _check_semantics(cfg: RouterConfig) -> None:
    if not cfg.upstreams:
        raise ConfigError("upstreams", "at least one upstream is required")
    for name, up in cfg.upstreams.items():
        if not up.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"upstreams.{name}.base_url", f"must be an http(s) URL, got {up.base_url!r}")
        if up.timeout_s <= 0:
            raise ConfigError(f"upstreams.{name}.timeout_s", "must be > 0")
    if cfg.default_upstream is not None and cfg.default_upstream not in cfg.upstreams:
        raise ConfigError("default_upstream", f"unknown upstream {cfg.default_upstream!r}")
    for model, info in cfg.models.items():
        if info.upstream is not None and info.upstream not in cfg.upstreams:
            raise ConfigError(f"models.{model}.upstream", f"unknown upstream {info.upstream!r}")
        for price in ("input_per_mtok", "output_per_mtok"):
            if getattr(info, price) < 0:
                raise ConfigError(f"models.{model}.{price}", "must be >= 0")
    experiments: dict[str, str] = {}
    for rname, route in cfg.routes.items():
        at = f"routes.{rname}"
        if not _NAME.match(rname):
            raise ConfigError(at, "route names are 1-128 of [A-Za-z0-9_.:-]")
        if not route.experiment:
            raise ConfigError(f"{at}.experiment", "must not be empty")
        if route.experiment in experiments:
            raise ConfigError(
                f"{at}.experiment",
                f"{route.experiment!r} is already the experiment of route {experiments[route.experiment]!r}",
            )
        experiments[route.experiment] = rname
        if not _HASH_ATTR.match(route.hash_attribute):
            raise ConfigError(f"{at}.hash_attribute",
                              "must be user, safety_identifier, prompt_cache_key, api_key or header:<name>")
        if route.hash_version not in (1, 2):
            raise ConfigError(f"{at}.hash_version", "must be 1 or 2")
        if route.phase < 1:
            raise ConfigError(f"{at}.phase", "must be >= 1")
        if not 0.0 <= route.coverage <= 1.0:
            raise ConfigError(f"{at}.coverage", f"must be within [0, 1], got {route.coverage}")
        if not route.arms:
            raise ConfigError(f"{at}.arms", "at least one arm is required")
        names: set[str] = set()
        for i, arm in enumerate(route.arms):
            if not _NAME.match(arm.name):
                raise ConfigError(f"{at}.arms[{i}].name", "arm names are 1-128 of [A-Za-z0-9_.:-]")
            if arm.name in names:
                raise ConfigError(f"{at}.arms[{i}].name", f"duplicate arm name {arm.name!r}")
            names.add(arm.name)
            if not arm.model:
                raise ConfigError(f"{at}.arms[{i}].model", "must not be empty")
            if not 0.0 <= arm.weight <= 1.0:
                raise ConfigError(f"{at}.arms[{i}].weight", f"must be within [0, 1], got {arm.weight}")
        total = sum(a.weight for a in route.arms)
        if abs(total - 1.0) > 1e-6:
            raise ConfigError(f"{at}.arms", f"weights must sum to 1 (within 1e-6), got {total:.9g}")
        if route.fallback is not None and route.fallback not in names:
            raise ConfigError(f"{at}.fallback", f"unknown arm {route.fallback!r}")
        for i, arm in enumerate(route.arms):
            try:
                cfg.upstream_for(arm.model)
            except StopIteration:  # pragma: no cover - upstreams checked non-empty above
                raise ConfigError(f"{at}.arms[{i}].model", "no upstream") from None
    if cfg.auth is not None:
        for i, key in enumerate(cfg.auth.keys):
            if not re.fullmatch(r"[0-9a-f]{64}", key.sha256):
                raise ConfigError(f"auth.keys[{i}].sha256", "must be 64 lowercase hex characters")
            for r in key.routes or ():
                if r not in cfg.routes:
                    raise ConfigError(f"auth.keys[{i}].routes", f"unknown route {r!r}")
    for name in cfg.metrics:
        if name in BUILTIN_METRICS or name in ("error", "latency_ms"):
            raise ConfigError(f"metrics.{name}", "clashes with a built-in metric")


def yaml_error_message(err: yaml.YAMLError) -> str:
    """`invalid YAML at line L, column C: <problem>` (1-based), for every YAML document we parse."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    return f"invalid YAML{where}: {getattr(err, 'problem', err)}"


def parse_yaml(text: str) -> RouterConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError("", yaml_error_message(err)) from None
    return validate(raw)


def to_builtins(cfg: RouterConfig) -> dict[str, Any]:
    return msgspec.to_builtins(cfg)


def to_yaml(cfg: RouterConfig) -> str:
    return yaml.safe_dump(to_builtins(cfg), sort_keys=False)


def with_phases_bumped(old: RouterConfig | None, new: RouterConfig) -> RouterConfig:
    """Start a new phase on every route whose arms (models or weights) or coverage changed."""
    if old is None:
        return new
    routes = {}
    for name, route in new.routes.items():
        prev = old.routes.get(name)
        if prev is None or prev.experiment != route.experiment:
            routes[name] = route
            continue
        changed = prev.arms != route.arms or prev.coverage != route.coverage
        phase = max(route.phase, prev.phase + 1) if changed else max(route.phase, prev.phase)
        routes[name] = msgspec.structs.replace(route, phase=phase)
    return msgspec.structs.replace(new, routes=routes)
