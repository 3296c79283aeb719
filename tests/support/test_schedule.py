"""The xdist ordering: modules by recorded duration, heaviest first; unknown ones weigh the median."""

from __future__ import annotations

from pathlib import Path

from tests.support.schedule import DURATIONS, heaviest_first, load_weights, module_of


def test_heaviest_first_orders_scopes_by_their_module_and_keeps_ties_in_order() -> None:
    weights = {"a.py": 1.0, "b.py": 30.0, "c.py": 5.0}
    scopes = ["a.py", "new.py", "b.py::TestX", "c.py", "b.py", "other.py"]
    # median 5.0: unknown modules sit with c.py, in their original order
    assert heaviest_first(scopes, weights) == ["b.py::TestX", "b.py", "new.py", "c.py", "other.py", "a.py"]
    assert heaviest_first(scopes, {}) == scopes  # nothing recorded: xdist's own order
    assert module_of("tests/x/test_y.py::TestZ::test_w[1-2]") == "tests/x/test_y.py"


def test_load_weights_tolerates_a_missing_or_broken_file(tmp_path: Path) -> None:
    assert load_weights(tmp_path / "none.json") == {}
    (tmp_path / "bad.json").write_text("[1, 2")
    assert load_weights(tmp_path / "bad.json") == {}
    (tmp_path / "ok.json").write_text('{"tests/a.py": 2}')
    assert load_weights(tmp_path / "ok.json") == {"tests/a.py": 2.0}


def test_the_recorded_durations_name_modules_that_exist() -> None:
    root = DURATIONS.parents[1]
    weights = load_weights()
    assert len(weights) > 50
    missing = [m for m in weights if not (root / m).is_file()]
    assert missing == [], f"stale entries in {DURATIONS.name} (run `make test-durations`): {missing}"
