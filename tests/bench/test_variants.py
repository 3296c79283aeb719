"""bench.variants: the synthetic few-shot index and the report table (the measurement itself is `python -m
bench.variants`, too slow for the test suite)."""

from __future__ import annotations

from pathlib import Path

from bench import variants
from gateway import fewshot


def test_write_index_builds_a_loadable_index_of_n_examples(tmp_path: Path) -> None:
    path = tmp_path / "fewshot" / "ds_bench.json"
    variants.write_index(path, 50, seed=1)
    index = fewshot.load_index(path)
    assert len(index.shots) == 50 and index.matrix.shape == (50, 256) and index.dataset == "ds_bench"
    assert len({s.user for s in index.shots}) == 50


def _side(p50: float, retrieval: bool = False) -> dict:
    q = {"n": 10.0, "p50_ms": p50, "p90_ms": p50 + 1, "p99_ms": p50 + 2, "mean_ms": p50}
    row = {"latency": q, "overhead": {**q, "p50_ms": p50 / 10}, "added": {"latency": {"p50_ms": p50 - 5.0}}}
    if retrieval:
        row["retrieval"] = q
    return row


def test_markdown_has_one_row_per_side_with_the_added_latency() -> None:
    res = {"date": "2026-12-02", "loadavg_1m_after": 1.5,
           "params": {"n": 10, "warmup": 1, "examples": 50, "k": 4, "dim": 256},
           "sides": {"plain": _side(5.0), "fewshot-new-text": _side(7.5, retrieval=True)}}
    md = variants.to_markdown(res)
    assert "| plain | 5.00 ms |" in md and "+0.00 ms" in md
    assert "| fewshot-new-text | 7.50 ms |" in md and "+2.50 ms" in md and "| 7.50 ms | 9.50 |" in md
    assert "k=4 of 50 examples" in md and "load average after the run: 1.5" in md
