"""Retrain triggers that used to under-report (seed 003): new quality interactions not yet in a
dataset, a new system prompt before it is the majority, new question categories."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.archive import ArchiveWriter
from gateway.events import Feedback, Interaction
from training import triggers as trg
from training.registry import Registry

OLD, NEW = "You are SigmaSight.", "You are SigmaSight. Cite every filing."
NOW = datetime.now(UTC)


def _ts(days_ago: float, i: int) -> str:
    return (NOW - timedelta(days=days_ago) + timedelta(seconds=i)).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _traffic(state: Path, n: int, *, days_ago: float, prompt: str, metric: str = "thumbs", value: object = 1,
             start: int = 0, category: str | None = None) -> None:
    evs: list = []
    for k in range(start, start + n):
        iid = f"iid-{k}"
        evs.append(Interaction(
            event_id=f"e{k}", ts=_ts(days_ago, k), tenant="acme", route="analyst", experiment="x", arm="control",
            phase=1, config_version=1, interaction_id=iid, unit=f"u{k}", traffic="live", model="gpt-4o-mini",
            stream=False, status="ok", http_status=200, latency_ms=5.0,
            messages=[{"role": "system", "content": prompt}, {"role": "user", "content": f"q{k}"}], response=f"a{k}"))
        evs.append(Feedback(event_id=f"f{k}", ts=_ts(days_ago, k), tenant="acme", interaction_id=iid, metric=metric,
                            value=value))
        if category:
            evs.append(Feedback(event_id=f"r{k}", ts=_ts(days_ago, k), tenant="acme", interaction_id=iid,
                                metric="review", value={"category": category}, source="reviewer"))
    ArchiveWriter(state, writer=f"t{start}").write(evs)


def _trained(reg: Registry, prompt: str = OLD, categories: tuple[str, ...] = ("sec_10k",)) -> None:
    exs = [{"source_id": f"old-{i}", "tenant_id": "acme", "content_sha": f"s{i}", "quality10": 8.0, "validated": True,
            "status": "accepted", "category": categories[i % len(categories)], "split": "train",
            "messages": [{"role": "user", "content": f"old {i}"}, {"role": "assistant", "content": "a"}]}
           for i in range(10)]
    ds = reg.create_dataset(tenant="acme", name="v1", source="t", examples=exs)
    run = reg.create_run(tenant="acme", base_model="gpt-4o-mini", status="succeeded", dataset_id=ds,
                         system_prompt_sha=hashlib.sha256(prompt.encode()).hexdigest())
    with reg.tx() as db:
        db.execute("UPDATE examples SET created_at = ?", (_ts(20, 0),))
        db.execute("UPDATE training_runs SET created_at = ? WHERE id = ?", (_ts(10, 0), run))


def _by_name(state: Path, reg: Registry) -> dict[str, trg.Trigger]:
    return {t.name: t for t in trg.evaluate(state, reg, tenant="acme", today=NOW)}


def test_new_quality_interactions_count_before_any_dataset_is_built(tmp_path: Path) -> None:
    _traffic(tmp_path, 40, days_ago=3, prompt=OLD)                                   # thumbs up: count
    _traffic(tmp_path, 15, days_ago=3, prompt=OLD, metric="edited_response", value="better", start=100)  # count
    _traffic(tmp_path, 30, days_ago=3, prompt=OLD, value=-1, start=200)              # thumbs down: not
    _traffic(tmp_path, 30, days_ago=12, prompt=OLD, start=300)                       # before the training: not
    with Registry(tmp_path) as reg:
        _trained(reg)
        t = _by_name(tmp_path, reg)["new quality examples"]
    assert t.fired and t.detail.startswith("55 new quality examples since the last training")
    assert "0 in datasets, 55 quality interactions not yet curated" in t.detail


def test_a_new_system_prompt_fires_before_it_is_the_majority(tmp_path: Path) -> None:
    _traffic(tmp_path, 100, days_ago=2, prompt=OLD)
    _traffic(tmp_path, 30, days_ago=1, prompt=NEW, start=500)
    with Registry(tmp_path) as reg:
        _trained(reg)
        t = _by_name(tmp_path, reg)["system prompt changed"]
    assert t.fired and t.detail.startswith("30 of 130 recent requests (23%) use a system prompt not trained on")


def test_new_question_categories_trigger(tmp_path: Path) -> None:
    _traffic(tmp_path, 8, days_ago=2, prompt=OLD, category="comparison")
    _traffic(tmp_path, 8, days_ago=2, prompt=OLD, category="sec_10k", start=50)
    _traffic(tmp_path, 2, days_ago=2, prompt=OLD, category="sec_8k", start=80)  # too few to count
    with Registry(tmp_path) as reg:
        assert not _by_name(tmp_path, reg)["new question categories"].fired  # nothing trained yet
        _trained(reg)
        t = _by_name(tmp_path, reg)["new question categories"]
    assert t.fired and t.detail == "not in the last training: comparison (8)"
