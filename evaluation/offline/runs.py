"""Eval runs on disk: `<state>/evals/<run_id>/results.jsonl` (one ExampleResult a line)
and `summary.json` (RunSummary). Loading checks both files line by line."""

from __future__ import annotations

import math
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from evaluation import stats
from evaluation.offline.scorers import ERROR, LATENCY, MetricSpec

RESULTS, SUMMARY = "results.jsonl", "summary.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RunError(ValueError):
    pass


class ExampleResult(msgspec.Struct, kw_only=True):
    id: str
    line: int
    category: str
    prompt: list[dict[str, Any]]
    reference: str
    output: str | None = None
    ok: bool = False
    error: str | None = None
    http_status: int | None = None
    attempts: int = 0
    latency_ms: float | None = None
    model: str | None = None
    arm: str | None = None
    interaction_id: str | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    scores: dict[str, float | None] = {}


class MetricSummary(msgspec.Struct, kw_only=True):
    name: str
    kind: str  # binary | continuous
    higher_is_better: bool | None
    n: int
    mean: float | None
    low: float | None
    high: float | None
    method: str  # wilson | bootstrap


class RunSummary(msgspec.Struct, kw_only=True):
    run_id: str
    model: str
    target: dict[str, Any]
    dataset: str
    dataset_sha256: str
    n_examples: int
    n_ok: int
    n_failed: int
    started_at: str
    finished_at: str
    scorers: list[str]
    metrics: dict[str, MetricSummary]
    latency: dict[str, float | None]
    categories: dict[str, int]
    settings: dict[str, Any]
    failures: list[str] = []
    warnings: list[str] = []


@dataclass(frozen=True, slots=True)
class Run:
    path: Path
    summary: RunSummary
    results: tuple[ExampleResult, ...]

    @property
    def run_id(self) -> str:
        return self.summary.run_id

    def spec(self, metric: str) -> MetricSpec | None:
        m = self.summary.metrics.get(metric)
        return None if m is None else MetricSpec(m.name, m.kind, m.higher_is_better)  # type: ignore[arg-type]

    def values(self, metric: str) -> dict[str, float]:
        """Example id -> value for the examples where the metric applies."""
        return {r.id: v for r in self.results if (v := value_of(r, metric)) is not None}


def value_of(r: ExampleResult, metric: str) -> float | None:
    if metric == ERROR.name:
        return 0.0 if r.ok else 1.0
    if metric == LATENCY.name:
        return r.latency_ms if r.ok else None
    v = r.scores.get(metric)
    return None if v is None or not math.isfinite(v) else float(v)


def evals_dir(state_dir: Path) -> Path:
    return state_dir / "evals"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return (s or "run")[:60]


def new_run_id(model: str, name: str | None = None) -> str:
    if name is not None:
        if not _NAME.match(name):
            raise RunError(f"run name {name!r} must be 1-128 of letters, digits, '.', '_', '-' (not starting with . or -)")
        return name
    return f"{_slug(model)}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def reserve(state_dir: Path, run_id: str) -> Path:
    """Create the run directory; an existing run is never overwritten."""
    d = evals_dir(state_dir) / run_id
    d.parent.mkdir(parents=True, exist_ok=True)
    try:
        d.mkdir()
    except FileExistsError:
        raise RunError(f"eval run {run_id!r} already exists in {d.parent}; pick another --name") from None
    return d


def summarize_metric(spec: MetricSpec, values: Sequence[float], alpha: float = 0.05) -> MetricSummary:
    n = len(values)
    if n == 0:
        return MetricSummary(name=spec.name, kind=spec.kind, higher_is_better=spec.higher_is_better, n=0,
                             mean=None, low=None, high=None, method="none")
    if spec.kind == "binary":
        ci = stats.wilson_interval(int(round(sum(values))), n, alpha)
        method = "wilson"
    else:
        ci = stats.bootstrap_ci(values, "mean", alpha=alpha)
        method = "bootstrap"
    return MetricSummary(name=spec.name, kind=spec.kind, higher_is_better=spec.higher_is_better, n=n,
                         mean=_fin(ci.estimate), low=_fin(ci.low), high=_fin(ci.high), method=method)


def _fin(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def latency_summary(latencies: Sequence[float], alpha: float = 0.05) -> dict[str, float | None]:
    if not latencies:
        return {"p50": None, "p50_low": None, "p50_high": None, "p95": None, "p95_low": None, "p95_high": None}
    a = np.asarray(latencies, dtype=float)
    p50 = stats.bootstrap_ci(a, "median", alpha=alpha)
    p95 = stats.bootstrap_ci(a, lambda x: float(np.percentile(x, 95)), alpha=alpha, n_resamples=1000)
    return {"p50": _fin(p50.estimate), "p50_low": _fin(p50.low), "p50_high": _fin(p50.high),
            "p95": _fin(p95.estimate), "p95_low": _fin(p95.low), "p95_high": _fin(p95.high)}


def summarize(results: Sequence[ExampleResult], specs: Sequence[MetricSpec], **fields: Any) -> RunSummary:
    metrics: dict[str, MetricSummary] = {}
    for spec in (*specs, LATENCY, ERROR):
        vals = [v for r in results if (v := value_of(r, spec.name)) is not None]
        metrics[spec.name] = summarize_metric(spec, vals)
    cats: dict[str, int] = {}
    for r in results:
        cats[r.category] = cats.get(r.category, 0) + 1
    failed = [r for r in results if not r.ok]
    return RunSummary(
        n_examples=len(results), n_ok=len(results) - len(failed), n_failed=len(failed), metrics=metrics,
        latency=latency_summary([r.latency_ms for r in results if r.ok and r.latency_ms is not None]),
        categories=dict(sorted(cats.items())),
        failures=[f"{r.id} (line {r.line}): {r.error}" for r in failed[:20]], **fields,
    )


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save(run_dir: Path, summary: RunSummary, results: Sequence[ExampleResult]) -> None:
    enc = msgspec.json.Encoder()
    _atomic_write(run_dir / RESULTS, b"".join(enc.encode(r) + b"\n" for r in results))
    _atomic_write(run_dir / SUMMARY, msgspec.json.format(enc.encode(summary), indent=2) + b"\n")


def resolve(state_dir: Path, ref: str) -> Path:
    """A run id under `<state>/evals` or a path to a run directory."""
    p = Path(ref)
    if (p / SUMMARY).is_file():
        return p
    d = evals_dir(state_dir) / ref
    if (d / SUMMARY).is_file():
        return d
    known = sorted(x.name for x in evals_dir(state_dir).glob("*") if (x / SUMMARY).is_file()) \
        if evals_dir(state_dir).is_dir() else []
    hint = f"; runs in {evals_dir(state_dir)}: {', '.join(known[-10:])}" if known else f"; {evals_dir(state_dir)} has no runs"
    raise RunError(f"no eval run {ref!r} (neither a run directory nor a run id){hint}")


def load(state_dir: Path, ref: str) -> Run:
    d = resolve(state_dir, ref)
    try:
        summary = msgspec.json.decode((d / SUMMARY).read_bytes(), type=RunSummary)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as e:
        raise RunError(f"{d / SUMMARY}: unreadable run summary: {e}") from None
    dec = msgspec.json.Decoder(ExampleResult)
    results: list[ExampleResult] = []
    problems: list[str] = []
    try:
        raw = (d / RESULTS).read_bytes()
    except OSError as e:
        raise RunError(f"{d / RESULTS}: cannot read: {e.strerror}") from None
    for ln, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            results.append(dec.decode(line))
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            problems.append(f"line {ln}: {e}")
    if problems:
        raise RunError(f"{d / RESULTS}: {len(problems)} unreadable line(s): {'; '.join(problems[:5])}")
    if len(results) != summary.n_examples:
        raise RunError(f"{d}: results.jsonl has {len(results)} examples but summary.json says {summary.n_examples}")
    return Run(d, summary, tuple(results))
