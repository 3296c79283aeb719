"""Offline reporting: targets at baseline, eval cost, compare's regression flag, the gate's printout."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from abgate.cli.main import app
from evaluation import criteria as critmod
from evaluation.offline import gate as og
from evaluation.offline.cost import describe, prices, run_cost
from evaluation.offline.runs import ExampleResult
from tests.support.offline_eval import make_run, pattern


def test_improvement_needed_at_baseline(tmp_path: Path) -> None:
    base = make_run(tmp_path, "base", acc=pattern(100, 81))
    crit = critmod.parse((Path(__file__).parents[2] / "examples/intent-classification/criteria.yaml").read_text())
    (line,) = og.targets(crit, base.summary)
    assert line.startswith("all_fields_correct: candidate needs >= 0.891 (baseline 0.81 x 1.1) and >= 0.85")
    assert "at least 0.891" in line


def _res(i: int, pt: int, ct: int) -> ExampleResult:
    return ExampleResult(id=str(i), line=i, category="a", prompt=[], reference="", ok=True, prompt_tokens=pt,
                         completion_tokens=ct)


def test_eval_cost_total_from_tokens_and_prices() -> None:
    rows = [_res(i, 1000, 100) for i in range(100)]  # 100k in, 10k out
    base = run_cost(rows, "gpt-4o-mini-2024-07-18")
    assert base.cost_usd == pytest.approx(100_000 * 0.15 / 1e6 + 10_000 * 0.60 / 1e6)
    ft = run_cost(rows, "ft:gpt-4o-mini-2024-07-18:acme::abc123")
    assert ft.cost_usd == pytest.approx(2 * base.cost_usd)  # fine-tuned inference is 2x the base rate
    unknown = run_cost(rows, "my-local-model")
    assert unknown.cost_usd is None and "no price for my-local-model" in describe(unknown)
    assert prices("gpt-4o-2024-08-06") == (2.50, 10.00, "list price")


def test_compare_does_not_flag_a_non_significant_latency_change(tmp_path: Path) -> None:
    n = 60
    rng = random.Random(7)
    lat_b = [100.0 + rng.uniform(-20, 20) for _ in range(n)]
    lat_c = [x + rng.uniform(-5, 5.6) for x in lat_b]  # ~ +0.3 ms on average: noise
    make_run(tmp_path, "b", acc=pattern(n, 50), latency=lat_b)
    make_run(tmp_path, "c", acc=pattern(n, 50), latency=lat_c)
    r = CliRunner().invoke(app, ["eval", "compare", "b", "c", "--state-dir", str(tmp_path)],
                           env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "no category where the candidate is significantly worse" in r.output
    assert "worse by point estimate but not significantly" in r.output
    r = CliRunner().invoke(app, ["eval", "compare", "b", "c", "--all-categories", "--state-dir", str(tmp_path)],
                           env={"COLUMNS": "200"})
    assert "no (worse, not significant)" in r.output and "yes" not in r.output.split("Per category")[1]


def test_offline_gate_prints_runs_not_experiment_none(tmp_path: Path) -> None:
    make_run(tmp_path, "baseline", acc=pattern(100, 81), model="gpt-4o-mini-2024-07-18")
    make_run(tmp_path, "finetuned", acc=pattern(100, 91), model="ft:gpt-4o-mini-2024-07-18:acme:intent:abcdef12")
    crit = tmp_path / "c.yaml"
    crit.write_text((Path(__file__).parents[2] / "examples/intent-classification/criteria.yaml").read_text()
                    .replace("stage: offline", "stage: offline\ndecide_on: point"))
    r = CliRunner().invoke(app, ["gate", "--criteria", str(crit), "--state-dir", str(tmp_path)],
                           env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.output  # GO on point estimates
    assert "experiment None" not in r.output and "phase None" not in r.output
    assert "criteria mode: point" in r.output
    assert "ft:gpt-4o-mini-2024-07-18:acme:intent:abcdef12" in r.output  # the model id is never cut at 80 columns
    md = next((tmp_path / "decisions").glob("*.md")).read_text()
    assert "experiment" not in md and "criteria mode: point" in md and "baseline run" in md
