"""Prometheus metrics for the gateway (DESIGN "Metrics").

One `Metrics` object per process, created in the app lifespan and kept on
`app.state.runtime.metrics`. Single process: metrics live in a private
`CollectorRegistry` (no global state). Several workers (`abgate serve --workers N`):
`prepare_multiprocess(dir)` runs in the supervisor before the workers spawn; each worker
then writes its values to mmap files under that dir (prometheus-client multiprocess
mode) and `render()` merges every worker's files, so any worker answers one correct
scrape.

Labels only ever come from the router config (route, arm and model names) or from small
fixed vocabularies (status, token kind, feedback outcome, event outcome). A value the
config does not know (a client's typo of a route, a raw upstream model string, a user id)
is folded into "unknown"/"other" so a client can never blow up the series count.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from gateway import metric_catalog as catalog

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Whole-request latency and TTFT: LLM completions run from ~100 ms to minutes.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0,
                    15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0)
# Gateway overhead must stay well under 1 ms, so resolve 50 us steps at the low end.
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0005, 0.00075, 0.001, 0.0015, 0.002,
                    0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1)

STATUSES = frozenset({"ok", "upstream_error", "timeout", "client_closed", "rejected"})
EVENT_OUTCOMES = frozenset({"written", "dropped", "spooled", "replayed", "failed"})
EVENT_KINDS = frozenset({"interaction", "feedback", "decision", "config", "audit"})
FEEDBACK_OUTCOMES = frozenset({"positive", "negative", "neutral", "value"})
BUILTIN_FEEDBACK_METRICS = frozenset(catalog.BUILTIN_FEEDBACK)
# Series created at 0 per (route, arm) so feedback rates and alerts work from the start.
_BUILTIN_FEEDBACK_OUTCOMES: dict[str, tuple[str, ...]] = {m: catalog.outcomes(m) for m in catalog.BUILTIN_FEEDBACK}
UNKNOWN = "unknown"
OTHER = "other"

# Free-form but code-chosen labels (upstream error reasons, custom feedback metric names):
# accept short identifiers, and at most this many distinct ones per process.
_IDENT = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_MAX_FREE_LABELS = 64


def multiprocess_dir() -> str | None:
    return os.environ.get(MULTIPROC_ENV) or None


def prepare_multiprocess(directory: str | os.PathLike[str]) -> Path:
    """Empty `directory` and point prometheus-client's multiprocess mode at it.

    Call in the supervisor BEFORE spawning workers: they inherit the environment, and
    stale files from a previous run would otherwise be summed into this run's counters.
    """
    path = Path(directory)
    if path.exists():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


feedback_outcome = catalog.feedback_outcome  # one meaning of a feedback value (gateway.metric_catalog)


@dataclass(slots=True)
class _ArmChildren:
    """Pre-resolved label children for one (route, arm, model): `.labels()` is slow."""

    duration: Any
    ttft: Any
    overhead: Any
    prompt_tokens: Any
    completion_tokens: Any
    cost: Any
    labels: tuple[str, str, str]  # (route, arm, model) after folding unknown names
    requests: dict[str, Any]  # status -> counter child


class Metrics:
    """Every abgate metric; one instance per process (see module doc)."""

    def __init__(self) -> None:
        self.multiprocess_dir = multiprocess_dir()
        # prometheus-client picks its value class when first imported; if the env var
        # changed since (set by `prepare_multiprocess` in this process), follow it now,
        # before any metric of this instance exists.
        mmaped = values.ValueClass is not values.MutexValue
        if self.multiprocess_dir is not None and not mmaped:
            values.ValueClass = values.MultiProcessValue()
        elif self.multiprocess_dir is None and mmaped:
            values.ValueClass = values.MutexValue
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("abgate_requests", "Requests proxied, by interaction status.",
                                ["route", "arm", "model", "status"], registry=r)
        self.duration = Histogram("abgate_request_duration_seconds", "Whole request latency seen by the client.",
                                  ["route", "arm"], buckets=DURATION_BUCKETS, registry=r)
        self.ttft = Histogram("abgate_time_to_first_token_seconds", "Time to the first streamed token.",
                              ["route", "arm"], buckets=DURATION_BUCKETS, registry=r)
        self.overhead = Histogram("abgate_overhead_seconds", "Gateway time not spent waiting on the upstream.",
                                  ["route"], buckets=OVERHEAD_BUCKETS, registry=r)
        self.upstream_errors = Counter("abgate_upstream_errors", "Failed upstream calls, by reason.",
                                       ["route", "arm", "reason"], registry=r)
        self.fallbacks = Counter("abgate_fallbacks", "Requests retried on the route's fallback arm.",
                                 ["route"], registry=r)
        self.tokens = Counter("abgate_tokens", "Tokens, kind=prompt|completion.", ["route", "arm", "kind"], registry=r)
        self.cost = Counter("abgate_cost_usd", "Upstream cost in USD from the config price table.",
                            ["route", "arm"], registry=r)
        self.feedback_count = Counter("abgate_feedback", "Feedback events, by metric and outcome.",
                                      ["route", "arm", "metric", "outcome"], registry=r)
        self.feedback_value = Counter("abgate_feedback_value",
                                      "Sum of numeric feedback values (csat, review overall, floats, "
                                      "booleans as 1/0); divide by abgate_feedback_total for the mean.",
                                      ["route", "arm", "metric"], registry=r)
        # Every worker sets the same weights/version on reload; `mostrecent` survives a worker
        # dying without bookkeeping (its stale writes are older than the live ones').
        self.arm_weight = Gauge("abgate_arm_weight", "Configured traffic weight of each arm.",
                                ["route", "arm"], multiprocess_mode="mostrecent", registry=r)
        self.config_version = Gauge("abgate_config_version", "Router config version being served.",
                                    multiprocess_mode="mostrecent", registry=r)
        self.events = Counter("abgate_events", "Events by kind and outcome (written|dropped|spooled|replayed).",
                              ["kind", "outcome"], registry=r)
        # Each worker has its own queue: the sum over live workers is the real depth.
        self.queue_depth = Gauge("abgate_event_queue_depth", "Events waiting in the in-memory sink queue.",
                                 multiprocess_mode="livesum", registry=r)

        self._routes: dict[str, frozenset[str]] = {}   # route -> known arm names
        self._models: set[str] = set()
        self._weights: set[tuple[str, str]] = set()    # (route, arm) series currently exported
        self._feedback_metrics: set[str] = set(BUILTIN_FEEDBACK_METRICS)
        self._free_seen: dict[str, set[str]] = {}         # guard for free-form labels
        self._arm_cache: dict[tuple[str, str, str], _ArmChildren] = {}
        self._route_overhead: dict[str, Any] = {}
        self._initialized: set[tuple[str, str, str]] = set()
        self.queue_depth.set(0)
        for kind in EVENT_KINDS:
            for outcome in ("written", "dropped", "spooled", "replayed"):
                self.events.labels(kind, outcome)

    # -- config ----------------------------------------------------------------------------

    def set_config(self, version: int, routes: Any, metrics: Iterable[str] = ()) -> None:
        """Export the served config: `abgate_config_version` and every arm's weight.

        `routes` is `RouterConfig.routes` (name -> Route) or a whole RouterConfig (then its
        custom feedback metrics are learned too). Names seen here become the label
        vocabulary; arms removed from the config stop being exported.
        """
        custom: dict[str, str] = {m: "float" for m in metrics}
        if hasattr(routes, "routes"):
            custom.update({name: getattr(spec, "type", "float") for name, spec in getattr(routes, "metrics", {}).items()})
            routes = routes.routes
        self._feedback_metrics.update(custom)
        current: set[tuple[str, str]] = set()
        for rname, route in routes.items():
            arms = tuple(route.arms)
            # Keep names from earlier versions: requests still in flight report them.
            self._routes[rname] = self._routes.get(rname, frozenset()) | {a.name for a in arms}
            for arm in arms:
                self._models.add(arm.model)
                self.arm_weight.labels(rname, arm.name).set(float(arm.weight))
                current.add((rname, arm.name))
        for gone in self._weights - current:
            # Multiprocess files cannot forget a series; a 0 written now outranks older values.
            self.arm_weight.labels(*gone).set(0.0)
            if self.multiprocess_dir is None:
                self.arm_weight.remove(*gone)
        self._weights = current
        for rname, route in routes.items():
            self._init_series(rname, tuple(route.arms), custom)
        self.config_version.set(int(version))

    def _init_series(self, route: str, arms: tuple[Any, ...], custom: Mapping[str, str]) -> None:
        """Create every (route, arm) series at 0 up front: `increase()` cannot see a
        counter's first increment, and rate/alert queries then return 0, not nothing."""
        self.fallbacks.labels(route)
        self._overhead_child(route)
        for arm in arms:
            key = (route, arm.name, arm.model)
            if key in self._initialized:
                continue
            self._initialized.add(key)
            ch = self._children(*key)
            for st in STATUSES:
                if st not in ch.requests:
                    ch.requests[st] = self.requests.labels(*ch.labels, st)
            outcomes = {**_BUILTIN_FEEDBACK_OUTCOMES,
                        **{m: (("positive", "negative") if kind == "boolean" else ("value",))
                           for m, kind in custom.items()}}
            for metric, outs in outcomes.items():
                for out in outs:
                    self.feedback_count.labels(route, arm.name, metric, out)
                self.feedback_value.labels(route, arm.name, metric)

    # -- hot path --------------------------------------------------------------------------

    def _children(self, route: str, arm: str, model: str) -> _ArmChildren:
        key = (route, arm, model)
        ch = self._arm_cache.get(key)
        if ch is not None:
            return ch
        arms = self._routes.get(route)
        if arms is None:
            safe = (UNKNOWN, UNKNOWN, UNKNOWN)
        else:
            safe = (route, arm if arm in arms else UNKNOWN, model if model in self._models else OTHER)
        ch = self._arm_cache.get(safe)
        if ch is None:
            r, a, _ = safe
            ch = _ArmChildren(
                duration=self.duration.labels(r, a), ttft=self.ttft.labels(r, a),
                overhead=self._overhead_child(r),
                prompt_tokens=self.tokens.labels(r, a, "prompt"),
                completion_tokens=self.tokens.labels(r, a, "completion"),
                cost=self.cost.labels(r, a), labels=safe, requests={})
            self._arm_cache[safe] = ch
        if safe == key:  # cache only config names, so client strings cannot grow the cache
            self._arm_cache[key] = ch
        return ch

    def _overhead_child(self, route: str) -> Any:
        child = self._route_overhead.get(route)
        if child is None:
            child = self._route_overhead[route] = self.overhead.labels(route)
        return child

    def _route(self, route: str) -> str:
        return route if route in self._routes else UNKNOWN

    def _arm(self, route: str, arm: str) -> str:
        return arm if arm in self._routes.get(route, ()) else UNKNOWN

    def observe_request(self, route: str, arm: str, model: str, status: str | int, duration_s: float,
                        ttft_s: float | None = None, overhead_s: float | None = None,
                        prompt_tokens: int | None = None, completion_tokens: int | None = None,
                        cost_usd: float | None = None) -> None:
        """Record one finished request. `status` is the interaction status (ok |
        upstream_error | timeout | client_closed | rejected); an HTTP code is mapped."""
        ch = self._children(route, arm, model)
        st = status if status.__class__ is str and status in STATUSES else _status_label(status)
        counter = ch.requests.get(st)
        if counter is None:
            counter = ch.requests[st] = self.requests.labels(*ch.labels, st)
        counter.inc()
        ch.duration.observe(duration_s)
        if ttft_s is not None:
            ch.ttft.observe(ttft_s)
        if overhead_s is not None:
            ch.overhead.observe(overhead_s)
        if prompt_tokens:
            ch.prompt_tokens.inc(prompt_tokens)
        if completion_tokens:
            ch.completion_tokens.inc(completion_tokens)
        if cost_usd:
            ch.cost.inc(cost_usd)

    def upstream_error(self, route: str, arm: str, reason: str) -> None:
        self.upstream_errors.labels(self._route(route), self._arm(route, arm), self._free("reason", reason)).inc()

    def fallback(self, route: str) -> None:
        self.fallbacks.labels(self._route(route)).inc()

    def feedback(self, route: str, arm: str, metric: str, outcome: Any, value: float | None = None) -> None:
        """Count one feedback event.

        `outcome` is a label (positive | negative | neutral | value) or simply the raw
        feedback value, which is mapped with `feedback_outcome`. `value` (numeric
        feedback such as csat) feeds `abgate_feedback_value_total` so dashboards get a mean.
        """
        if not (isinstance(outcome, str) and outcome in FEEDBACK_OUTCOMES):
            outcome, derived = feedback_outcome(metric, outcome)
            if value is None:
                value = derived
        elif value is None and outcome in ("positive", "negative"):
            value = 1.0 if outcome == "positive" else 0.0
        r, a = self._route(route), self._arm(route, arm)
        m = metric if metric in self._feedback_metrics else self._free("metric", metric)
        self.feedback_count.labels(r, a, m, outcome).inc()
        if value is not None:
            self.feedback_value.labels(r, a, m).inc(float(value))

    def event(self, kind: str, outcome: str, n: int = 1) -> None:
        """Count `n` events of `kind` (interaction | feedback | ...) that were
        written | dropped | spooled | replayed | failed."""
        if n <= 0:
            return
        k = kind if kind in EVENT_KINDS else OTHER
        o = outcome if outcome in EVENT_OUTCOMES else OTHER
        self.events.labels(k, o).inc(n)

    def set_queue_depth(self, n: int) -> None:
        self.queue_depth.set(n)

    # -- exposition ------------------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The text exposition; in multiprocess mode the merge of every worker's files."""
        if self.multiprocess_dir is not None:
            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """Worker shutdown: drop this process's live gauges (queue depth) from the merge.
        Counters stay: they are cumulative and still belong in the totals."""
        self.queue_depth.set(0)
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)

    # -- helpers ---------------------------------------------------------------------------

    def _free(self, kind: str, value: str) -> str:
        seen = self._free_seen.setdefault(kind, set())
        if value in seen:
            return value
        if not isinstance(value, str) or not _IDENT.fullmatch(value) or len(seen) >= _MAX_FREE_LABELS:
            return OTHER
        seen.add(value)
        return value


def _status_label(status: str | int) -> str:
    if isinstance(status, int):
        if 200 <= status < 400:
            return "ok"
        if status in (408, 504):
            return "timeout"
        if status == 499:
            return "client_closed"
        if 400 <= status < 500:
            return "rejected"
        return "upstream_error"
    return OTHER
