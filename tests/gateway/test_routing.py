"""hash_version 3 = GrowthBook's JS SDK / growthbook-python 4.x hashing over UTF-16 code units,
checked against the real JS SDK (`@growthbook/growthbook`, run with node); versions 1 and 2 keep
abgate's code-point hashing so running experiments are not reshuffled; lone surrogates never raise."""

from __future__ import annotations

import random

import pytest

from gateway.assign import RouteAssigner
from gateway.config import Arm, ConfigError, Route, validate
from gateway.routing import bucket_ranges, choose_arm, fnv1a32, fnv1a32_utf16, hash_unit
from tests.support.node import run_node


def _ids() -> list[tuple[str, str]]:
    rng = random.Random(17)
    astral = ["😀", "🚀", "👩‍💻", "🇯🇵", "\U00020000", "\U0002A6D6", "\U0002B740", "\U00030000", "𝔘", "\U0010FFFF"]
    bmp = ["user-1", "ü", "日本語", "中文", "\uffff", "a b"]
    ids = []
    for i in range(300):
        k = rng.randint(1, 4)
        value = "".join(rng.choice(astral + bmp) for _ in range(k)) + (str(i) if i % 3 else "")
        ids.append((rng.choice(["exp-1", "support-ft-2", "🚀-launch", "\U00020001seed"]), value))
    ids += [("exp-1", "\ud83d"), ("exp-1", "x\udc00y"), ("\ud800", "user-9"), ("exp-1", "plain-ascii")]
    return ids


def test_v3_matches_growthbook_js_sdk_beyond_the_bmp() -> None:
    cases = _ids()
    ref = run_node("growthbook_hash.mjs", [{"seed": s, "value": v, "weights": [0.5, 0.5]} for s, v in cases])
    assert isinstance(ref, list) and len(ref) == len(cases)
    ranges = bucket_ranges(2, 1.0, [0.5, 0.5])
    differs_from_v2 = 0
    for (seed, value), expected in zip(cases, ref):
        n = hash_unit(seed, value, 3)
        assert n == expected["bucket"], (seed, value)
        assert choose_arm(n, ranges) == expected["variation"], (seed, value)
        differs_from_v2 += hash_unit(seed, value, 2) != n
    assert differs_from_v2 > 100  # the code-point hash really differs there: hence a new version


def test_v2_is_unchanged_and_equals_v3_inside_the_bmp() -> None:
    # pinned values of the code-point hash: v2 must never change under running experiments
    assert hash_unit("exp-1", "😀user", 2) == 0.7932
    assert fnv1a32("😀") == 0x0650A71F
    for seed, value in [("exp-1", "user-1"), ("s", "日本語ü"), ("", "\uffff"), ("exp", "")]:
        assert hash_unit(seed, value, 3) == hash_unit(seed, value, 2)
        assert fnv1a32_utf16(seed + value) == fnv1a32(seed + value)
    assert hash_unit("exp-1", "x", 4) is None


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("value", ["\ud83d", "a\udfffb", "\udc00\ud800"])
def test_lone_surrogate_never_raises(version: int, value: str) -> None:
    route = Route(experiment="exp-1", hash_version=version,
                  arms=(Arm("control", "m0", 0.5), Arm("treatment", "m1", 0.5)))
    a = RouteAssigner("support", route, b"salt")
    got = a.assign(value)
    assert got.arm.name in ("control", "treatment")
    assert got.unit is not None and len(got.unit) == 64
    assert a.assign("user-1").unit == RouteAssigner("support", route, b"salt").assign("user-1").unit


def _cfg(version: int) -> dict[str, object]:
    return {"routes": {"r": {"experiment": "e", "hash_version": version,
                             "arms": [{"name": "a", "model": "m", "weight": 1.0}]}},
            "upstreams": {"u": {"base_url": "http://127.0.0.1:1/v1"}}}


def test_config_accepts_v3_and_names_the_field_otherwise() -> None:
    assert validate(_cfg(3)).routes["r"].hash_version == 3
    with pytest.raises(ConfigError) as err:
        validate(_cfg(4))
    assert err.value.field == "routes.r.hash_version"


def test_switching_to_v3_starts_a_new_phase() -> None:
    from gateway.config import with_phases_bumped

    old = validate(_cfg(2))
    new = with_phases_bumped(old, validate(_cfg(3)))
    assert new.routes["r"].phase == old.routes["r"].phase + 1
    assert with_phases_bumped(old, validate(_cfg(2))).routes["r"].phase == old.routes["r"].phase
