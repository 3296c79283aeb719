"""Route -> unit -> arm, precomputed once per config version (GrowthBook bucketing)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from gateway.config import Arm, Route
from gateway.routing import choose_arm, hash_unit


@dataclass(frozen=True, slots=True)
class Assignment:
    arm: Arm
    unit: str | None  # salted sha256 hex; None = anonymous or outside coverage (excluded from analysis)
    traffic: str  # live | eval


class RouteAssigner:
    """Everything bucketing needs for one route, computed when the config is loaded."""

    __slots__ = ("name", "route", "ranges", "arms", "by_name", "attr_kind", "header", "experiment", "salt",
                 "hash_version", "_cache")

    CACHE_MAX = 50_000  # returning users skip two hashes; bounded, dropped whole when full

    def __init__(self, name: str, route: Route, salt: bytes):
        self.name = name
        self.route = route
        self.experiment = route.experiment
        self.hash_version = route.hash_version
        self.ranges = route.ranges
        self.arms = route.arms
        self.by_name = {a.name: a for a in route.arms}
        self.salt = salt
        self._cache: dict[str, Assignment] = {}
        attr = route.hash_attribute
        if attr.startswith("header:"):
            self.attr_kind, self.header = "header", attr[len("header:"):].lower()
        else:
            self.attr_kind, self.header = attr, ""

    def unit_value(self, user: str | None, headers: dict[str, str], api_key_hash: str | None) -> str | None:
        if self.attr_kind == "user":
            return user or None
        if self.attr_kind == "header":
            return headers.get(self.header) or None
        return api_key_hash

    def assign(self, value: str | None) -> Assignment:
        """The arm for a hash-attribute value; no value -> control, anonymous."""
        if value is None:
            return Assignment(self.arms[0], None, "live")
        hit = self._cache.get(value)
        if hit is not None:
            return hit
        if len(self._cache) >= self.CACHE_MAX:
            self._cache.clear()
        a = self._cache[value] = self._compute(value)
        return a

    def _compute(self, value: str) -> Assignment:
        # surrogatepass: a lone surrogate (JSON may carry one, e.g. "\ud83d") must not raise; for every
        # well-formed string this is plain UTF-8, so existing units keep their hash
        unit = hashlib.sha256(self.salt + value.encode("utf-8", "surrogatepass")).hexdigest()
        n = hash_unit(self.experiment, value, self.hash_version)
        i = choose_arm(n if n is not None else -1.0, self.ranges)
        if i < 0:
            # Outside coverage: control's model, but not part of the experiment.
            return Assignment(self.arms[0], None, "live")
        return Assignment(self.arms[i], unit, "live")

    def pinned(self, arm_name: str) -> Arm | None:
        return self.by_name.get(arm_name)
