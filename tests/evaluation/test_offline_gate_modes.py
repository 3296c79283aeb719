"""The offline gate's criteria modes (seed 001): point estimates next to whole-CI, both in the record."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from evaluation import criteria as critmod
from evaluation.offline import gate as og
from tests.support.offline_eval import make_run, pattern


def _seed_runs(state: Path) -> None:
    # the seed's own 100-example test set: 81% -> 91% = +12.3% relative, 91% absolute
    make_run(state, "base", acc=pattern(100, 81))
    make_run(state, "candidate", acc=pattern(100, 91))


def _crit(mode: str) -> critmod.Criteria:
    c = critmod.parse(og.SEED001_CRITERIA.read_text())
    return msgspec.structs.replace(c, decide_on=mode, min_examples=100)


def test_point_mode_is_go_where_the_ci_mode_holds(tmp_path: Path) -> None:
    _seed_runs(tmp_path)
    ci = og.decide(_crit("ci"), tmp_path)
    point = og.decide(_crit("point"), tmp_path)
    assert ci.verdict == "HOLD" and point.verdict == "GO"
    lift = next(m for m in point.metrics if m.effect == "relative")
    assert lift.estimate == pytest.approx(91 / 81 - 1) and lift.verdict == "met" and "CI: inconclusive" in lift.note
    floor = next(m for m in point.metrics if m.effect == "value")
    assert floor.verdict == "met" and "CI: inconclusive" in floor.note
    # the record shows both readings, whichever mode decided
    for d, mode in ((ci, "ci"), (point, "point")):
        assert d.extra["criteria_mode"] == mode
        assert [(v["metric"], v["effect"], v["point"], v["ci"]) for v in d.extra["verdicts"]] == [
            ("all_fields_correct", "relative", "met", "inconclusive"),
            ("all_fields_correct", "value", "met", "inconclusive")]


def test_point_mode_below_the_threshold_is_nogo(tmp_path: Path) -> None:
    make_run(tmp_path, "base", acc=pattern(100, 85))
    make_run(tmp_path, "candidate", acc=pattern(100, 92))  # +8.2% < 10%
    d = og.decide(_crit("point"), tmp_path)
    assert d.verdict == "NO-GO"


def test_decide_on_is_checked() -> None:
    with pytest.raises(critmod.CriteriaError, match="decide_on"):
        critmod.parse("stage: online\ndecide_on: point\nsuccess: [{metric: m, direction: increase}]\n")
    with pytest.raises(critmod.CriteriaError, match="decide_on"):
        critmod.parse("stage: offline\nbaseline: a\ncandidate: b\ndecide_on: mean\n"
                      "success: [{metric: m, direction: increase}]\n")
