"""One `abgate gate` decision over a 10,000-unit archive (issue 16 target: well under a
second of analysis). Prints wall and CPU seconds of the decision, median of `--runs`.

    python -m bench.gate_10k [--units 10000] [--runs 5]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from evaluation import criteria as critmod
from evaluation import synth
from evaluation.decide import decide

CRITERIA = """
experiment: exp
expected_weights: {control: 0.5, treatment: 0.5}
success:
  - {metric: approved, direction: increase}
  - {metric: edited_response, direction: decrease}
  - {metric: csat, direction: increase}
guardrails:
  - {metric: policy_violation, direction: decrease}
  - {metric: error, direction: decrease}
  - {metric: latency_ms, direction: decrease, tolerance: 0.1, effect: relative}
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="one gate decision over a synthetic archive")
    p.add_argument("--units", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        arms = (synth.ArmSpec("control", "a"), synth.ArmSpec("treatment", "b"))
        events = synth.generate(state, synth.Scenario(experiment="exp", arms=arms, units=args.units, days=15, seed=1))
        crit = critmod.parse(CRITERIA)
        decide(crit, state)  # warm: imports, first scan
        walls, cpus = [], []
        for _ in range(args.runs):
            t, c = time.perf_counter(), _cpu()
            d = decide(crit, state)
            walls.append(time.perf_counter() - t)
            cpus.append(_cpu() - c)
    print(f"{args.units} units, {events} events: gate {d.verdict}; median wall {statistics.median(walls):.3f} s, "
          f"median CPU {statistics.median(cpus):.3f} s over {args.runs} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
