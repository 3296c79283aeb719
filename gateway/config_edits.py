"""The one place a router config changes: validation, the spec/traffic merge, CAS, audit.

People author the *spec* (routes, arms, models, upstreams, auth, limits) in the config
file, `abgate config set` or `PUT /admin/config`; the loop owns the *traffic state* (arm
weights and coverage of a route; the store bumps phases) once promote, rollback, rollout,
`gate --apply` or an explicit weights command has set it — as Argo Rollouts separates a
Rollout's spec from its status. The store records which routes are managed
(`ConfigVersion.managed`) and the content hash of the config file last applied
(`ConfigVersion.file_sha256`).

- An authored config is merged three-way: its spec, plus the stored traffic state of every
  managed route. An edit that cannot keep that state (it removes an arm that carries
  traffic, or gives a new arm weight on a managed route) is refused with `TrafficConflict`
  naming the field; `reset_traffic=True` takes the authored traffic state instead.
- A config file is applied only when its content changed since it was last applied
  (`sync_file`), so restarts, respawned workers and replicas started with the same file
  change nothing.
- Every write is compare-and-set on the version, validated once here, recorded with
  author, reason and decision id, and audited through the `audit` callback (a ConfigChange
  event: the archive for the CLI, the event sink inside the gateway).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from gateway import config as cfgmod
from gateway import routing
from gateway.archive import append_events
from gateway.config import ConfigError, Route, RouterConfig
from gateway.config_store import ConfigStore, ConfigVersion, ManagedTraffic, UnknownVersion, VersionConflict
from gateway.events import ConfigChange, new_event_id

Audit = Callable[[ConfigChange], object]

# Actions that set traffic state: the routes whose weights or coverage they change become managed.
TRAFFIC_ACTIONS = frozenset({"promote", "rollback", "rollout_step", "set_weights"})
_EPS = 1e-9


class EditError(ValueError):
    """An edit that cannot be made. `field` is the dotted config path or request parameter at
    fault; `code` classifies it (unknown_route, unknown_arm, unknown_version,
    invalid_parameter, missing_parameter, invalid_config, traffic_conflict)."""

    def __init__(self, message: str, *, field: str = "", code: str = "invalid_parameter") -> None:
        self.message, self.field, self.code = message, field, code
        super().__init__(message)


class TrafficConflict(EditError):
    """An authored config that cannot keep the managed traffic state; nothing was written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}", field=field, code="traffic_conflict")


@dataclass(frozen=True, slots=True)
class Change:
    """Who makes a change and why (kept in history and in the audit event)."""

    author: str
    reason: str = ""
    decision_id: str | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an edit did: `current` is what the store holds now; `written` the new version, or
    None when nothing had to change; `notes` say what the merge kept or why nothing changed."""

    current: ConfigVersion
    written: ConfigVersion | None
    notes: tuple[str, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class GateAction:
    """What `gate --apply` did with a verdict."""

    action: str  # promote | rollback
    route: str
    version: ConfigVersion


def file_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def change_event(new: ConfigVersion, previous: int | None) -> ConfigChange:
    """The audit event for a stored config change."""
    return ConfigChange(
        event_id=new_event_id(), ts=new.created_at, tenant="system", config_version=new.version,
        action=new.action, author=new.author, reason=new.reason, decision_id=new.decision_id,
        previous_version=previous,
    )


def archive_audit(state_dir: Path) -> Audit:
    """Audit into the event archive under `state_dir` (CLI commands, the serve parent)."""
    return lambda event: append_events(state_dir, [event])


def weights_text(route: Route) -> str:
    return ", ".join(f"{a.name}={a.weight:g}" for a in route.arms)


def _mark_text(mark: ManagedTraffic) -> str:
    by = f"{mark.action} by {mark.author}" + (f", decision {mark.decision_id}" if mark.decision_id else "")
    return f"managed since v{mark.since_version} ({by})"


def _traffic(route: Route) -> tuple[tuple[tuple[str, float], ...], float]:
    return tuple((a.name, a.weight) for a in route.arms), route.coverage


def _with_weights(route: Route, weights: Mapping[str, float]) -> Route:
    arms = tuple(msgspec.structs.replace(a, weight=float(weights.get(a.name, 0.0))) for a in route.arms)
    return msgspec.structs.replace(route, arms=arms)


def merge_spec(current: ConfigVersion | None, authored: RouterConfig, *, reset_traffic: bool = False
               ) -> tuple[RouterConfig, dict[str, ManagedTraffic], list[str]]:
    """Three-way merge: the authored spec, the stored traffic state of every managed route.

    Returns (config to store, managed marks to keep, notes for log and history). Raises
    TrafficConflict when the authored arm set cannot carry the managed weights.
    """
    if current is None:
        return authored, {}, []
    if reset_traffic:
        reset = sorted(r for r in current.managed if r in authored.routes)
        return authored, {}, ([f"traffic state of {', '.join(reset)} reset to the authored config"] if reset else [])
    routes: dict[str, Route] = {}
    managed: dict[str, ManagedTraffic] = {}
    notes: list[str] = []
    for name, route in authored.routes.items():
        mark = current.managed.get(name)
        prev = current.config.routes.get(name)
        if mark is None or prev is None:
            routes[name] = route
            continue
        at = f"routes.{name}"
        if prev.experiment != route.experiment:
            routes[name] = route
            notes.append(f"{at}: new experiment {route.experiment!r}, traffic state from the authored config")
            continue
        stored = {a.name: a.weight for a in prev.arms}
        new_names = {a.name for a in route.arms}
        for arm in prev.arms:
            if arm.name not in new_names and arm.weight > _EPS:
                raise TrafficConflict(
                    f"{at}.arms",
                    f"removes arm {arm.name!r}, which carries {arm.weight:.0%} of the route's traffic "
                    f"(weights {weights_text(prev)}, {_mark_text(mark)}); move its traffic first "
                    f"(`abgate rollback {name}` or `abgate promote`), or apply with --reset-traffic")
        for i, arm in enumerate(route.arms):
            if arm.name not in stored and arm.weight > _EPS:
                raise TrafficConflict(
                    f"{at}.arms[{i}].weight",
                    f"new arm {arm.name!r} has weight {arm.weight:g}, but the route's weights are managed "
                    f"({weights_text(prev)}, {_mark_text(mark)}); add it at weight 0 and ramp it with "
                    f"`abgate rollout`, or apply with --reset-traffic")
        merged = msgspec.structs.replace(_with_weights(route, stored), coverage=prev.coverage, phase=prev.phase)
        if _traffic(merged) != _traffic(route):
            notes.append(f"{at}: kept managed traffic {weights_text(merged)}"
                         + (f", coverage {merged.coverage:g}" if merged.coverage != route.coverage else "")
                         + f" (authored: {weights_text(route)}; {_mark_text(mark)})")
        routes[name] = merged
        managed[name] = mark
    return msgspec.structs.replace(authored, routes=routes), managed, notes


def _validated(cfg: RouterConfig) -> RouterConfig:
    """Validation, once for every edit: the store never holds a config the gateway would reject."""
    try:
        return cfgmod.validate(cfgmod.to_builtins(cfg))
    except ConfigError as err:
        raise EditError(f"the resulting config is invalid: {err}", field=err.field, code="invalid_config") from None


def _unchanged(cur: ConfigVersion, cfg: RouterConfig) -> bool:
    return cfgmod.with_phases_bumped(cur.config, cfg) == cur.config


class ConfigEditor:
    """Every config change goes through here (CLI, admin API, hot reload, rollout, gate)."""

    def __init__(self, store: ConfigStore, audit: Audit | None = None,
                 check: Callable[[RouterConfig], None] | None = None) -> None:
        self.store = store
        self.audit = audit
        self.check = check  # resources the config names (e.g. few-shot exports); raises ConfigError

    # -- the one write path ---------------------------------------------------------------

    def _commit(self, cur: ConfigVersion | None, cfg: RouterConfig, *, change: Change, action: str,
                managed: dict[str, ManagedTraffic] | None = None, file_sha: str | None = None) -> ConfigVersion:
        cfg = _validated(cfg)
        if self.check is not None:
            try:
                self.check(cfg)
            except ConfigError as err:
                raise EditError(f"the config names a resource that is not usable: {err}", field=err.field,
                                code="invalid_config") from None
        new = self.store.put(
            cfg, expected_version=cur.version if cur else None, author=change.author,
            reason=change.reason, decision_id=change.decision_id, action=action, managed=managed,
            file_sha256=file_sha)
        if self.audit is not None:
            self.audit(change_event(new, cur.version if cur else None))
        return new

    def _current(self, expected_version: int | None = None) -> ConfigVersion:
        cur = self.store.current()
        if cur is None:
            raise EditError("the config store is empty; store a config first (`abgate config set FILE` or "
                            "`abgate serve --config FILE`)", code="invalid_config")
        if expected_version is not None and expected_version != cur.version:
            raise VersionConflict(expected_version, cur.version)
        return cur

    def _route(self, cur: ConfigVersion, route: str) -> Route:
        r = cur.config.routes.get(route)
        if r is None:
            raise EditError(f"unknown route {route!r}; routes: {', '.join(cur.config.routes) or 'none'}",
                            field="route", code="unknown_route")
        return r

    def _marks(self, cur: ConfigVersion, cfg: RouterConfig, change: Change, action: str,
               target: str | None = None) -> dict[str, ManagedTraffic]:
        """Current marks, plus every route whose traffic state this (traffic) action changes, plus
        the `target` route an operator acted on even when its weights were already those (a
        promote to the weights in force still makes them the operator's, so no file edit undoes them)."""
        marks = dict(cur.managed)
        for name, route in cfg.routes.items():
            prev = cur.config.routes.get(name)
            if prev is None or _traffic(prev) != _traffic(route) or name == target:
                marks[name] = ManagedTraffic(since_version=cur.version + 1, action=action, author=change.author,
                                             decision_id=change.decision_id)
        return marks

    # -- authored configs -------------------------------------------------------------------

    def apply_authored(self, cfg: RouterConfig, *, change: Change, expected_version: int | None,
                       reset_traffic: bool = False, file_sha: str | None = None, action: str = "set") -> Outcome:
        """Store an authored config (file, `config set`, `PUT /admin/config`), keeping the traffic
        state of managed routes. No new version when nothing would change."""
        cur = self.store.current()
        actual = cur.version if cur else None
        if expected_version != actual:
            raise VersionConflict(expected_version, actual)
        merged, managed, notes = merge_spec(cur, cfg, reset_traffic=reset_traffic)
        if cur is not None and _unchanged(cur, merged) and managed == cur.managed:
            return Outcome(cur, None, (*notes, f"no change: the store's version {cur.version} already serves it"))
        reason = "; ".join([change.reason or "authored config", *notes])
        new = self._commit(cur, merged, change=Change(change.author, reason, change.decision_id),
                           action=action if cur is not None else "seed", managed=managed, file_sha=file_sha)
        return Outcome(new, new, tuple(notes))

    def sync_file(self, path: Path, *, author: str = "serve", reset_traffic: bool = False,
                  seed_only: bool = False) -> Outcome:
        """Apply config FILE when its content changed since it was last applied (or to seed an
        empty store). `seed_only`: write only into an empty store. Raises ConfigError for an
        invalid file, TrafficConflict for one that conflicts with managed traffic state."""
        data = path.read_bytes()
        sha = file_sha256(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError("", f"not valid UTF-8 (byte {err.start})") from None
        cfg = cfgmod.parse_yaml(text)
        cur: ConfigVersion | None = None
        for _ in range(5):
            cur = self.store.current()
            if cur is not None and seed_only:
                return Outcome(cur, None, (f"store already holds version {cur.version}",))
            if cur is not None and cur.file_sha256 == sha and not reset_traffic:
                note = f"file unchanged since it was applied (sha256 {sha[:12]}); serving version {cur.version}"
                return Outcome(cur, None, (note,))
            try:
                return self.apply_authored(
                    cfg, change=Change(author, f"config file {path} (sha256 {sha[:12]})"
                                       + (" with --reset-traffic" if reset_traffic else "")),
                    expected_version=cur.version if cur else None, reset_traffic=reset_traffic,
                    file_sha=sha, action="file")
            except VersionConflict:
                continue  # another worker or replica wrote meanwhile: look again
        assert cur is not None
        return Outcome(cur, None, ("the store kept changing; not applied",))

    # -- traffic state ----------------------------------------------------------------------

    def set_weights(self, route: str, weights: Mapping[str, float], *, change: Change, action: str = "set_weights",
                    expected_version: int | None = None) -> ConfigVersion:
        """Set ROUTE's arm weights (arms not named get 0); the route's traffic becomes managed."""
        cur = self._current(expected_version)
        r = self._route(cur, route)
        unknown = sorted(set(weights) - {a.name for a in r.arms})
        if unknown:
            raise EditError(f"route {route!r} has no arm(s) {unknown}; arms: {', '.join(a.name for a in r.arms)}",
                            field="weights", code="unknown_arm")
        for name, w in weights.items():
            if isinstance(w, bool) or not isinstance(w, int | float):
                raise EditError(f"weight of {name!r} must be a number, got {w!r}", field="weights")
        cfg = msgspec.structs.replace(cur.config, routes={**cur.config.routes, route: _with_weights(r, weights)})
        return self._commit(cur, cfg, change=change, action=action,
                            managed=self._marks(cur, cfg, change, action, target=route))

    def move_traffic(self, route: str, arm: str, weight: float, *, change: Change, action: str,
                     expected_version: int | None = None) -> ConfigVersion:
        """The one promote rule (`gateway.routing.promoted_weights`): ARM gets WEIGHT, the
        other arms share the rest in proportion to their current weights."""
        cur = self._current(expected_version)
        r = self._route(cur, route)
        names = [a.name for a in r.arms]
        if arm not in names:
            raise EditError(f"route {route!r} has no arm {arm!r}; arms: {', '.join(names)}", field="arm",
                            code="unknown_arm")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise EditError(f"`weight` must be a number, got {weight!r}", field="weight")
        try:
            ws = routing.promoted_weights([a.weight for a in r.arms], names.index(arm), float(weight))
        except ValueError as err:
            raise EditError(str(err), field="weight") from None
        cfg = msgspec.structs.replace(
            cur.config, routes={**cur.config.routes, route: _with_weights(r, dict(zip(names, ws, strict=True)))})
        return self._commit(cur, cfg, change=change, action=action,
                            managed=self._marks(cur, cfg, change, action, target=route))

    def promote(self, route: str, arm: str, weight: float = 1.0, *, change: Change,
                expected_version: int | None = None) -> ConfigVersion:
        """Give ARM WEIGHT of ROUTE's traffic, citing the decision that allows it."""
        if not change.decision_id:
            raise EditError("a promotion cites the decision behind it: `decision_id` is required",
                            field="decision_id", code="missing_parameter")
        reason = change.reason or f"promote {arm} to {float(weight):.0%} per decision {change.decision_id}"
        return self.move_traffic(route, arm, weight, change=Change(change.author, reason, change.decision_id),
                                 action="promote", expected_version=expected_version)

    def rollback_route(self, route: str, *, change: Change, expected_version: int | None = None) -> ConfigVersion:
        """All of ROUTE's traffic back to control (arms[0])."""
        cur = self._current(expected_version)
        control = self._route(cur, route).arms[0].name
        reason = change.reason or f"rollback {route}: all traffic to control arm {control}"
        return self.move_traffic(route, control, 1.0, change=Change(change.author, reason, change.decision_id),
                                 action="rollback", expected_version=expected_version)

    def rollback_to(self, version: int, *, change: Change, expected_version: int | None = None) -> ConfigVersion:
        """Re-apply version VERSION's whole config as a new version (history is never rewritten).
        Routes whose traffic state it changes become managed, so a restart keeps the rollback."""
        cur = self._current(expected_version)
        try:
            target = self.store.get(version)
        except UnknownVersion:
            raise EditError(f"no config version {version}; latest is {cur.version}", field="to_version",
                            code="unknown_version") from None
        change = Change(change.author, change.reason or f"rollback to version {version}", change.decision_id)
        return self._commit(cur, target.config, change=change, action="rollback",
                            managed=self._marks(cur, target.config, change, "rollback"))

    def commit(self, cfg: RouterConfig, *, change: Change, action: str, expected_version: int) -> ConfigVersion:
        """Store CFG, derived by the caller from version EXPECTED_VERSION (e.g. `models add-arm`).
        Traffic actions mark the routes whose traffic they change."""
        cur = self._current(expected_version)
        managed = self._marks(cur, cfg, change, action) if action in TRAFFIC_ACTIONS else None
        return self._commit(cur, cfg, change=change, action=action, managed=managed)

    # -- decisions --------------------------------------------------------------------------

    def apply_gate_verdict(self, verdict: str, *, route: str, treatment: str, decision_id: str,
                           reasons: list[str], author: str) -> GateAction | None:
        """`gate --apply`: GO promotes TREATMENT to all of ROUTE's traffic, NO-GO rolls ROUTE back
        to control, HOLD changes nothing (None)."""
        if verdict == "GO":
            new = self.promote(route, treatment, 1.0, change=Change(
                author, f"GO decision {decision_id}: promote {treatment} to 100%", decision_id))
            return GateAction("promote", route, new)
        if verdict == "NO-GO":
            new = self.rollback_route(route, change=Change(
                author, f"NO-GO decision {decision_id}: " + "; ".join(reasons), decision_id))
            return GateAction("rollback", route, new)
        return None


def traffic_changes(prev: ConfigVersion | None, new: ConfigVersion) -> list[str]:
    """What changed in the routes' traffic state from PREV to NEW (for `config history`)."""
    out: list[str] = []
    for name, r in new.config.routes.items():
        p = prev.config.routes.get(name) if prev else None
        if p is None:
            out.append(f"{name}: {weights_text(r)}")
            continue
        before = {a.name: a.weight for a in p.arms}
        moved = [f"{a.name} {before.get(a.name, 0.0):g}->{a.weight:g}" for a in r.arms
                 if abs(before.get(a.name, 0.0) - a.weight) > _EPS]
        if r.coverage != p.coverage:
            moved.append(f"coverage {p.coverage:g}->{r.coverage:g}")
        if moved:
            out.append(f"{name}: " + ", ".join(moved))
    return out
