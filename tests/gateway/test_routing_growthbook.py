"""Bucketing against GrowthBook's official SDK test vectors, and the split of 10,000 users."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gateway.assign import RouteAssigner
from gateway.config import Arm, Route
from gateway.routing import bucket_ranges, choose_arm, hash_unit

CASES = json.loads((Path(__file__).parents[1] / "support" / "data" / "growthbook_cases.json").read_text())
SALT = b"test-salt"


@pytest.mark.parametrize(("seed", "value", "version", "expected"), CASES["hash"])
def test_hash_matches_growthbook(seed: str, value: str, version: int, expected: float | None) -> None:
    assert hash_unit(seed, value, version) == expected


def _gb_weights_valid(n: int, weights: list[float] | None) -> bool:
    if weights is None:
        return True
    return len(weights) == n and abs(sum(weights) - 1.0) <= 1e-6


@pytest.mark.parametrize(("name", "args", "expected"), CASES["getBucketRange"])
def test_bucket_ranges_match_growthbook(name: str, args: list, expected: list[list[float]]) -> None:
    n, coverage, weights = args
    if _gb_weights_valid(n, weights):
        got = bucket_ranges(n, coverage, weights)
        assert [list(r) for r in got] == [pytest.approx(r) for r in expected], name
    else:
        # GrowthBook silently falls back to equal weights (or, within 0.99-1.01, uses them as
        # given); we reject anything not summing to 1 within 1e-6 and say why.
        with pytest.raises(ValueError, match="weights"):
            bucket_ranges(n, coverage, weights)


@pytest.mark.parametrize(("name", "n", "ranges", "expected"), CASES["chooseVariation"])
def test_choose_matches_growthbook(name: str, n: float, ranges: list[list[float]], expected: int) -> None:
    assert choose_arm(n, [tuple(r) for r in ranges]) == expected, name


def _route(weights: tuple[float, ...], coverage: float = 1.0, attr: str = "user") -> Route:
    arms = tuple(Arm(name=f"a{i}", model=f"m{i}", weight=w) for i, w in enumerate(weights))
    return Route(experiment="exp-1", arms=arms, coverage=coverage, hash_attribute=attr)


@pytest.mark.parametrize("weights", [(0.5, 0.5), (0.2, 0.8), (0.1, 0.3, 0.6)])
def test_ten_thousand_users_split_within_binomial_noise(weights: tuple[float, ...]) -> None:
    ra = RouteAssigner("r", _route(weights), SALT)
    n = 10_000
    counts = [0] * len(weights)
    for i in range(n):
        a = ra.assign(f"user-{i}")
        counts[int(a.arm.name[1:])] += 1
        assert a.unit is not None and a.traffic == "live"
    for c, w in zip(counts, weights, strict=True):
        sigma = math.sqrt(n * w * (1 - w))
        assert abs(c - n * w) < 4 * sigma, (counts, weights)


def test_same_unit_same_arm_and_unit_is_salted_hash() -> None:
    ra = RouteAssigner("r", _route((0.5, 0.5)), SALT)
    first = ra.assign("alice")
    assert all(ra.assign("alice") == first for _ in range(20))
    assert first.unit is not None and "alice" not in first.unit and len(first.unit) == 64
    other_salt = RouteAssigner("r", _route((0.5, 0.5)), b"other").assign("alice")
    assert other_salt.unit != first.unit and other_salt.arm == first.arm  # salt never changes the arm


def test_assignment_matches_growthbook_hash_directly() -> None:
    ra = RouteAssigner("r", _route((0.5, 0.5)), SALT)
    for i in range(200):
        v = f"u{i}"
        expect = "a0" if hash_unit("exp-1", v) < 0.5 else "a1"
        assert ra.assign(v).arm.name == expect


def test_raising_treatment_weight_only_moves_control_users() -> None:
    before = RouteAssigner("r", _route((0.5, 0.5)), SALT)
    after = RouteAssigner("r", _route((0.2, 0.8)), SALT)
    moved_back = 0
    for i in range(5000):
        b, a = before.assign(f"u{i}").arm.name, after.assign(f"u{i}").arm.name
        if b == "a1" and a == "a0":
            moved_back += 1
    assert moved_back == 0


def test_no_value_is_anonymous_control_and_outside_coverage_is_excluded() -> None:
    ra = RouteAssigner("r", _route((0.5, 0.5), coverage=0.5), SALT)
    anon = ra.assign(None)
    assert anon.arm.name == "a0" and anon.unit is None
    outside = [ra.assign(f"u{i}") for i in range(4000)]
    excluded = [a for a in outside if a.unit is None]
    assert all(a.arm.name == "a0" for a in excluded)
    assert abs(len(excluded) - 2000) < 4 * math.sqrt(4000 * 0.25)


def test_hash_attribute_sources() -> None:
    user = RouteAssigner("r", _route((0.5, 0.5)), SALT)
    assert user.unit_value("bob", {"x-u": "h"}, "k") == "bob"
    assert user.unit_value("", {}, "k") is None
    hdr = RouteAssigner("r", _route((0.5, 0.5), attr="header:X-U"), SALT)
    assert hdr.unit_value("bob", {"x-u": "h"}, "k") == "h"
    assert hdr.unit_value("bob", {}, "k") is None
    key = RouteAssigner("r", _route((0.5, 0.5), attr="api_key"), SALT)
    assert key.unit_value("bob", {}, "keyhash") == "keyhash"
    assert key.unit_value("bob", {}, None) is None


def test_promoted_weights_is_one_rule_for_admin_api_and_cli(tmp_path) -> None:
    # one function carries the rule; the admin API, the CLI and rollouts all reach it through
    # gateway.config_edits.ConfigEditor.move_traffic, and no other module defines one
    from pathlib import Path

    from gateway import config_edits as edits
    from gateway import config_store as cs
    from gateway.config import Arm, Route, RouterConfig, Upstream
    from gateway.routing import promoted_weights

    root = Path(__file__).resolve().parents[2]
    defs = [p for d in ("gateway", "evaluation", "abgate") for p in (root / d).rglob("*.py")
            if "def promoted_weights" in p.read_text()]
    assert [p.relative_to(root).as_posix() for p in defs] == ["gateway/routing.py"]
    for n, (weights, idx, w) in enumerate((([0.5, 0.5], 1, 0.8), ([0.6, 0.2, 0.2], 1, 0.5),
                                           ([0.0, 1.0, 0.0], 1, 0.4), ([1.0, 0.0, 0.0], 2, 0.1), ([0.3, 0.7], 0, 1.0))):
        expected = promoted_weights(weights, idx, w)
        assert abs(sum(expected) - 1.0) < 1e-12
        store = cs.FileConfigStore(tmp_path / str(n))
        route = Route(experiment="e", arms=tuple(Arm(f"a{i}", "m", x) for i, x in enumerate(weights)))
        store.put(RouterConfig(routes={"r": route}, upstreams={"u": Upstream("http://127.0.0.1:9/v1")}),
                  expected_version=None, author="t", reason="init")
        new = edits.ConfigEditor(store).move_traffic("r", f"a{idx}", w, change=edits.Change("t"), action="promote")
        assert [a.weight for a in new.config.routes["r"].arms] == expected
    with pytest.raises(ValueError, match="within"):
        promoted_weights([0.5, 0.5], 0, 1.5)
