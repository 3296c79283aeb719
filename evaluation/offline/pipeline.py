"""`eval run` end to end: reserve the run dir, call the model, score, summarise, save."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

from evaluation.offline import runs
from evaluation.offline.dataset import Dataset
from evaluation.offline.runner import RunSettings, Target, run_all
from evaluation.offline.runs import ExampleResult, Run
from evaluation.offline.scorers import MetricSpec, Scorer


def score(dataset: Dataset, results: Sequence[ExampleResult], scorers: Sequence[Scorer]) -> tuple[list[MetricSpec], list[str]]:
    """Fill `scores` of the successful results in place; returns the metric specs and warnings."""
    by_id = {ex.id: ex for ex in dataset.examples}
    ok = [r for r in results if r.ok and r.output is not None]
    specs: list[MetricSpec] = []
    warnings: list[str] = []
    for sc in scorers:
        sc.prepare(dataset.examples)
        values = sc.score_all([(by_id[r.id], r.output or "") for r in ok])
        for r, v in zip(ok, values):
            r.scores.update(v)
        specs += [s for s in sc.metrics() if s.name not in {x.name for x in specs}]
        failures = getattr(sc, "failures", None)
        if failures:
            warnings.append(f"{sc.name}: {len(failures)} example(s) without a score, e.g. {failures[0]}")
    return specs, warnings


def execute(
    state_dir: Path,
    dataset: Dataset,
    target: Target,
    settings: RunSettings,
    scorers: Sequence[Scorer],
    *,
    run_id: str,
    on_result: Callable[[ExampleResult], None] | None = None,
) -> Run:
    run_dir = runs.reserve(state_dir, run_id)
    started = runs.now_iso()
    try:
        results = asyncio.run(run_all(dataset.examples, target, settings, on_result))
        specs, warnings = score(dataset, results, scorers)
        failed = sum(not r.ok for r in results)
        if failed:
            warnings.append(f"{failed} of {len(results)} example(s) failed after {settings.retries} retries; "
                            "the offline gate HOLDs on an incomplete run")
        summary = runs.summarize(
            results, specs, run_id=run_id, model=target.model if not target.via_gateway else
            (next((r.model for r in results if r.model), None) or f"{target.model}/{target.arm}"),
            target=target.describe(), dataset=dataset.path, dataset_sha256=dataset.sha256, started_at=started,
            finished_at=runs.now_iso(), scorers=[s.name for s in scorers] + ["latency"],
            settings={"concurrency": settings.concurrency, "rps": settings.rps, "retries": settings.retries},
            warnings=warnings,
        )
        runs.save(run_dir, summary, results)
    except BaseException:
        # leave no half-written run behind that `compare` or the gate could pick up
        for p in run_dir.glob("*"):
            p.unlink(missing_ok=True)
        run_dir.rmdir()
        raise
    return Run(run_dir, summary, tuple(results))
