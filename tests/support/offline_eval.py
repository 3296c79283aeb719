"""Synthetic eval runs written to a state dir, for compare / gate unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evaluation.offline import runs
from evaluation.offline.scorers import MetricSpec

ACC = MetricSpec("all_fields_correct", "binary", True)
JSONV = MetricSpec("json_valid", "binary", True)
SIM = MetricSpec("similarity", "continuous", True)


def make_run(state: Path, run_id: str, *, acc: Sequence[int], json_ok: Sequence[int] | None = None,
             latency: Sequence[float] | None = None, sim: Sequence[float] | None = None,
             categories: Sequence[str] | None = None, failed: Sequence[int] = (), dataset_sha: str = "d" * 64,
             model: str = "m") -> runs.Run:
    n = len(acc)
    json_ok = json_ok if json_ok is not None else [1] * n
    latency = latency if latency is not None else [100.0 + (i % 7) for i in range(n)]
    categories = categories if categories is not None else ["a" if i % 2 else "b" for i in range(n)]
    results = []
    for i in range(n):
        ok = i not in failed
        scores = {"all_fields_correct": float(acc[i]), "json_valid": float(json_ok[i])} if ok else {}
        if ok and sim is not None:
            scores["similarity"] = float(sim[i])
        results.append(runs.ExampleResult(
            id=f"ex{i}", line=i + 1, category=categories[i], prompt=[{"role": "user", "content": f"q{i}"}],
            reference="{}", output="{}" if ok else None, ok=ok, error=None if ok else "HTTP 500: boom",
            attempts=1, latency_ms=float(latency[i]) if ok else None, model=model, scores=scores))
    specs = [ACC, JSONV] + ([SIM] if sim is not None else [])
    summary = runs.summarize(results, specs, run_id=run_id, model=model, target={"mode": "direct"},
                             dataset="held.jsonl", dataset_sha256=dataset_sha, started_at="2026-01-01T00:00:00Z",
                             finished_at="2026-01-01T00:01:00Z", scorers=["x"], settings={})
    d = runs.reserve(state, run_id)
    runs.save(d, summary, results)
    return runs.load(state, run_id)


def pattern(n: int, ones: int) -> list[int]:
    """n binary outcomes, the first `ones` of them 1 (deterministic)."""
    return [1] * ones + [0] * (n - ones)
