"""Which config changes start a new phase (gateway.config.starts_new_phase)."""

from __future__ import annotations

import msgspec
import pytest

from gateway import config as cfgmod

BASE = cfgmod.Route(experiment="e", arms=(cfgmod.Arm("control", "m", 0.5), cfgmod.Arm("treatment", "t", 0.5)))


@pytest.mark.parametrize(
    "change",
    [
        {"hash_version": 1},
        {"hash_attribute": "api_key"},
        {"coverage": 0.5},
        {"arms": (cfgmod.Arm("control", "m", 0.4), cfgmod.Arm("treatment", "t", 0.6))},
        {"arms": (cfgmod.Arm("control", "m", 0.5), cfgmod.Arm("other", "t", 0.5))},
        {"arms": (*BASE.arms, cfgmod.Arm("third", "x", 0.0))},
        {"experiment": "e2"},
    ],
)
def test_changes_that_can_move_a_unit_start_a_new_phase(change: dict) -> None:
    assert cfgmod.starts_new_phase(BASE, msgspec.structs.replace(BASE, **change))


@pytest.mark.parametrize("change", [{"capture": "off"}, {"fallback": "treatment"}, {}])
def test_other_changes_keep_the_phase(change: dict) -> None:
    assert not cfgmod.starts_new_phase(BASE, msgspec.structs.replace(BASE, **change))


def test_hash_version_change_bumps_the_phase_in_the_store_rule() -> None:
    old = cfgmod.RouterConfig(routes={"r": BASE})
    new = cfgmod.with_phases_bumped(old, cfgmod.RouterConfig(routes={"r": msgspec.structs.replace(BASE, hash_version=1)}))
    assert new.routes["r"].phase == BASE.phase + 1
