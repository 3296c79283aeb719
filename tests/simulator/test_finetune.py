"""A simulated fine-tuning job's status is a pure function of its age: the lifecycle, checked on a clock
that no poll can skip through (the HTTP tests only see the states their polls land in)."""

from __future__ import annotations

from typing import Any

from simulator.finetune import QUEUED_END, VALIDATING_END, _status


def job(**over: Any) -> dict[str, Any]:
    return {"created": 100.0, "duration": 10.0, "cancelled_at": None, "problems": [], **over}


def test_the_lifecycle_in_order() -> None:
    ages = [0.0, 10 * VALIDATING_END - 0.01, 10 * VALIDATING_END, 10 * QUEUED_END - 0.01, 10 * QUEUED_END, 9.99, 10.0,
            50.0]
    assert [_status(job(), 100.0 + a) for a in ages] == [
        "validating_files", "validating_files", "queued", "queued", "running", "running", "succeeded", "succeeded"]


def test_bad_files_fail_after_validation_and_cancel_wins_before_the_end() -> None:
    bad = job(problems=["line 1: no messages"])
    assert _status(bad, 100.0) == "validating_files" and _status(bad, 100.0 + 10 * VALIDATING_END) == "failed"
    assert _status(job(cancelled_at=105.0), 120.0) == "cancelled"  # stays cancelled past its end
    assert _status(job(cancelled_at=111.0), 120.0) == "succeeded"  # a cancel after it finished changes nothing
