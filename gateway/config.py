"""Router config: schema, validation with precise field paths, and YAML I/O.

The config is immutable once loaded (msgspec frozen Structs); the store hands out
whole new objects on change, so request handlers never see a half-applied config.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import msgspec
import yaml

from gateway import metric_catalog as catalog
from gateway.routing import HASH_VERSIONS, bucket_ranges

CaptureMode = Literal["full", "redacted", "off"]
_HASH_ATTR = re.compile(r"^(user|safety_identifier|prompt_cache_key|api_key|header:[A-Za-z0-9-]+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")

BUILTIN_METRICS = frozenset(catalog.BUILTIN_FEEDBACK)


class ConfigError(ValueError):
    """An invalid config; `field` is the dotted path of the offending value."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class FewShotExample(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One fixed few-shot example: sent as a user message and the assistant's answer."""

    user: str
    assistant: str


class DynamicFewShot(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Dynamic in-context learning: the k curated examples nearest to the request (cosine of
    embeddings), from a dataset version exported by `abgate variants build-fewshot`."""

    dataset: str                      # the dataset (version) id, e.g. ds_0123abcd...
    k: int = 3
    path: str | None = None           # default: <state>/fewshot/<dataset>.json (relative: to the state dir)
    embedding_upstream: str | None = None  # default: the upstream of the arm's model
    timeout_ms: float = 300.0         # hot-path budget for the request's embedding; over it -> no examples
    min_similarity: float | None = None  # drop neighbours below this cosine


class VariantParams(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Request parameters the gateway sets on every request of the arm (they override the client's)."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    reasoning_effort: str | None = None
    response_format: dict[str, Any] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


class Variant(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    """Request overrides that make an arm a variant (model + prompt + parameters + examples)."""

    system_prompt: str | None = None
    system_mode: Literal["replace", "prepend"] = "replace"
    params: VariantParams = VariantParams()
    examples: tuple[FewShotExample, ...] = ()
    fewshot: DynamicFewShot | None = None


class Arm(msgspec.Struct, frozen=True, forbid_unknown_fields=True, omit_defaults=True):
    name: str
    model: str
    weight: float
    variant: Variant | None = None


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
    shutdown_date: str | None = None  # YYYY-MM-DD; the upstream's GET /v1/models `shutdown_date` wins


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


ProviderType = Literal["openai", "azure", "hf-lora", "together"]


class TrainingProvider(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One fine-tuning provider (training/providers/<type>); the gateway only checks the shape."""

    type: ProviderType
    base_url: str | None = None  # openai / together: API base URL; azure: the resource endpoint
    api_key_env: str | None = None
    upstream: str | None = None  # openai: take base_url and key from this upstream
    api_version: str | None = None  # azure
    models: tuple[str, ...] = ()  # base models offered; empty = the provider's own list
    training_per_mtok: float | None = None  # USD per 1M training tokens (hosted providers)
    gpu_hour_usd: float | None = None  # hf-lora: what an hour of your hardware costs
    output_dir: str | None = None  # hf-lora: adapters and run logs (default <state>/hf-lora)
    launcher: Literal["local", "accelerate"] = "local"  # hf-lora
    num_processes: int = 1  # hf-lora with accelerate: GPUs per host
    serve_base_url: str = "http://127.0.0.1:8000/v1"  # hf-lora: where vLLM serves the adapters
    serve_upstream: str = "vllm-lora"  # hf-lora: the upstream name add-arm writes
    lora_r: int = 8
    lora_alpha: int = 16
    max_seq_length: int = 1024


class Training(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    default_provider: str | None = None
    providers: dict[str, TrainingProvider] = {}
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
    training: Training = Training()
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
    providers = raw.get("training", {}).get("providers") if isinstance(raw.get("training"), dict) else None
    if field.startswith("training.providers[...]") and isinstance(providers, dict):
        for key, value in providers.items():
            try:
                msgspec.convert(value, TrainingProvider)
            except msgspec.ValidationError:
                field = field.replace("training.providers[...]", f"training.providers.{key}", 1)
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
        if info.shutdown_date is not None and not _is_date(info.shutdown_date):
            raise ConfigError(f"models.{model}.shutdown_date", f"must be a date YYYY-MM-DD, got {info.shutdown_date!r}")
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
        if route.hash_version not in HASH_VERSIONS:
            raise ConfigError(f"{at}.hash_version", "must be 1, 2 or 3 (3: GrowthBook 4.x / JS SDK UTF-16 hashing)")
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
            if arm.variant is not None:
                _check_variant(f"{at}.arms[{i}].variant", arm.variant, cfg)
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
        if name in catalog.CATALOG:  # feedback and interaction metrics (gateway.metric_catalog)
            raise ConfigError(f"metrics.{name}", "clashes with a built-in metric")
    _check_training(cfg)


def _check_training(cfg: RouterConfig) -> None:
    tr = cfg.training
    builtin = ("openai", "azure", "hf-lora", "together")
    if tr.default_provider is not None and tr.default_provider not in tr.providers \
            and tr.default_provider not in builtin:
        raise ConfigError("training.default_provider", f"unknown provider {tr.default_provider!r}")
    for name, prov in tr.providers.items():
        at = f"training.providers.{name}"
        if prov.upstream is not None and prov.upstream not in cfg.upstreams:
            raise ConfigError(f"{at}.upstream", f"unknown upstream {prov.upstream!r}")
        if prov.base_url is not None and not prov.base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{at}.base_url", f"must be an http(s) URL, got {prov.base_url!r}")
        for key in ("num_processes", "lora_r", "lora_alpha", "max_seq_length"):
            if getattr(prov, key) < 1:
                raise ConfigError(f"{at}.{key}", "must be >= 1")


REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
_DATASET_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _is_date(text: str) -> bool:
    from datetime import date

    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


def _check_variant(at: str, v: Variant, cfg: RouterConfig) -> None:
    if v.system_prompt is not None and not v.system_prompt.strip():
        raise ConfigError(f"{at}.system_prompt", "must not be empty (leave it out to keep the client's)")
    p = v.params
    ranges = (("temperature", p.temperature, 0.0, 2.0), ("top_p", p.top_p, 0.0, 1.0),
              ("presence_penalty", p.presence_penalty, -2.0, 2.0), ("frequency_penalty", p.frequency_penalty, -2.0, 2.0))
    for name, value, lo, hi in ranges:
        if value is not None and not lo <= value <= hi:
            raise ConfigError(f"{at}.params.{name}", f"must be within [{lo:g}, {hi:g}], got {value}")
    for name in ("max_tokens", "max_completion_tokens"):
        value = getattr(p, name)
        if value is not None and value < 1:
            raise ConfigError(f"{at}.params.{name}", f"must be >= 1, got {value}")
    if p.max_tokens is not None and p.max_completion_tokens is not None:
        raise ConfigError(f"{at}.params.max_tokens", "set max_tokens or max_completion_tokens, not both")
    if p.reasoning_effort is not None and p.reasoning_effort not in REASONING_EFFORTS:
        raise ConfigError(f"{at}.params.reasoning_effort",
                          f"must be one of {', '.join(REASONING_EFFORTS)}, got {p.reasoning_effort!r}")
    if p.response_format is not None:
        kind = p.response_format.get("type")
        if kind not in RESPONSE_FORMATS:
            raise ConfigError(f"{at}.params.response_format.type",
                              f"must be one of {', '.join(RESPONSE_FORMATS)}, got {kind!r}")
        if kind == "json_schema" and not isinstance(p.response_format.get("json_schema"), dict):
            raise ConfigError(f"{at}.params.response_format.json_schema", "required (an object) for type json_schema")
    for j, ex in enumerate(v.examples):
        for side in ("user", "assistant"):
            if not getattr(ex, side).strip():
                raise ConfigError(f"{at}.examples[{j}].{side}", "must not be empty")
    fs = v.fewshot
    if fs is not None:
        if not _DATASET_ID.match(fs.dataset):
            raise ConfigError(f"{at}.fewshot.dataset", f"must be a dataset id (1-128 of [A-Za-z0-9_.-]), got {fs.dataset!r}")
        if not 1 <= fs.k <= 32:
            raise ConfigError(f"{at}.fewshot.k", f"must be within [1, 32], got {fs.k}")
        if not 0 < fs.timeout_ms <= 10_000:
            raise ConfigError(f"{at}.fewshot.timeout_ms", f"must be within (0, 10000], got {fs.timeout_ms}")
        if fs.min_similarity is not None and not -1.0 <= fs.min_similarity <= 1.0:
            raise ConfigError(f"{at}.fewshot.min_similarity", f"must be within [-1, 1], got {fs.min_similarity}")
        if fs.embedding_upstream is not None and fs.embedding_upstream not in cfg.upstreams:
            raise ConfigError(f"{at}.fewshot.embedding_upstream", f"unknown upstream {fs.embedding_upstream!r}")


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
    out: dict[str, Any] = msgspec.to_builtins(cfg)
    return out


def to_yaml(cfg: RouterConfig) -> str:
    return yaml.safe_dump(to_builtins(cfg), sort_keys=False)


def starts_new_phase(prev: Route, new: Route) -> bool:
    """Does changing `prev` into `new` start a new phase? Any change that can move a unit
    to another arm or change what an arm serves: the arm set (names, models, weights),
    coverage, the hashing (`hash_version`, `hash_attribute`) or the experiment (its name
    seeds the hash). Units seen in two arms of one phase make the analysis HOLD."""
    return (
        prev.arms != new.arms
        or prev.coverage != new.coverage
        or prev.hash_version != new.hash_version
        or prev.hash_attribute != new.hash_attribute
        or prev.experiment != new.experiment
    )


def with_phases_bumped(old: RouterConfig | None, new: RouterConfig) -> RouterConfig:
    """Start a new phase on every route where `starts_new_phase` says so."""
    if old is None:
        return new
    routes = {}
    for name, route in new.routes.items():
        prev = old.routes.get(name)
        if prev is None or prev.experiment != route.experiment:
            routes[name] = route
            continue
        changed = starts_new_phase(prev, route)
        phase = max(route.phase, prev.phase + 1) if changed else max(route.phase, prev.phase)
        routes[name] = msgspec.structs.replace(route, phase=phase)
    return msgspec.structs.replace(new, routes=routes)
