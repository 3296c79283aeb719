"""Replay 14 days of the seed-002 A/B test into the archive, without waiting 14 days.

    python examples/order-support/replay_ab.py --state-dir .abgate [--route order-support]
        [--users 1400] [--per-user 4] [--days 14.5] [--seed 2]

What it writes is what the gateway would have logged over `--days` days of 50/50 traffic:
for the route's CURRENT config version and phase (read from the config store),

- each simulated customer is bucketed exactly like the gateway does it (GrowthBook hash of
  the user id seeded by the route's `experiment`, the deployment's unit salt), so the
  split follows the route's weights;
- each conversation is a seed-002 order question from the simulator's prompt pool, and
  the answer is what the simulator's model gives for the arm's model id (`ft:` models
  state more of the key facts; see simulator/model.py);
- the feedback (approvals, edits, CSAT, thumbs, follow-ups, policy-violation reports,
  rubric reviews) comes from the simulator's user model (`simulator.traffic.feedback_for`),
  which judges the answer's content, never the model name;
- timestamps are spread uniformly over the `--days` days that end now.

It is a replay of simulated traffic, not a measurement: it exists so the example can show
`abgate analyze` and `abgate gate` on a full 14-day, 500+-units-per-arm experiment. Against
real traffic you skip this script and let the gateway run for 14 days.
"""

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway import events as ev
from gateway.archive import ArchiveWriter
from gateway.assign import RouteAssigner
from gateway.config_store import FileConfigStore
from gateway.state import load_secrets
from simulator import model as sim_model
from simulator import prompts
from simulator.traffic import Behaviour, feedback_for


def _ts(t: datetime) -> str:
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def replay(state_dir: Path, route_name: str, *, users: int, per_user: int, days: float, seed: int,
           end: datetime | None = None, tenant: str = "default") -> dict[str, int]:
    """Write the replayed events; returns interactions per arm."""
    cur = FileConfigStore(state_dir).current()
    if cur is None:
        raise SystemExit("no config stored: run `abgate config set router-ab.yaml` first")
    route = cur.config.routes.get(route_name)
    if route is None:
        raise SystemExit(f"unknown route {route_name!r} (routes: {', '.join(cur.config.routes)})")
    if sum(1 for a in route.arms if a.weight > 0) < 2:
        raise SystemExit(f"route {route_name!r} is not running an A/B test (fewer than two arms with weight > 0)")
    assigner = RouteAssigner(route_name, route, load_secrets(state_dir).unit_salt)
    prices = cur.config.models
    end = end or datetime.now(UTC)
    start = end - timedelta(days=days)
    rng = random.Random(seed)
    writer = ArchiveWriter(state_dir, writer=f"replay-{seed}")
    common = dict(tenant=tenant, route=route_name, experiment=route.experiment, phase=route.phase,
                  config_version=cur.version)
    per_arm: dict[str, int] = {}
    batch: list[ev.Event] = []
    for u in range(users):
        user_id = f"customer-{seed}-{u:06d}"
        a = assigner.assign(user_id)
        if a.unit is None:  # outside coverage: not part of the experiment
            continue
        arm = a.arm
        for _ in range(per_user):
            t = start + (end - start) * rng.random()
            prompt = prompts.support(rng)
            system, user = prompt.messages[0]["content"], prompt.messages[1]["content"]
            answer = sim_model.answer(arm.model, system, user, seed=0)
            iid = f"replay-{rng.getrandbits(96):024x}"
            pt, ct = 30 + len(system + user) // 4, len(answer) // 4
            price = prices.get(arm.model)
            cost = (pt * price.input_per_mtok + ct * price.output_per_mtok) / 1e6 if price else None
            batch.append(ev.Interaction(
                event_id=ev.new_event_id(), ts=_ts(t), arm=arm.name, interaction_id=iid, unit=a.unit, traffic="live",
                model=arm.model, stream=False, status="ok", http_status=200,
                latency_ms=max(50.0, rng.gauss(900.0, 200.0)), prompt_tokens=pt, completion_tokens=ct, cost_usd=cost,
                messages=list(prompt.messages), response=answer, finish_reason="stop", **common))
            per_arm[arm.name] = per_arm.get(arm.name, 0) + 1
            for metric, value, source in feedback_for(prompt.task, answer, rng, Behaviour(), prompt.category):
                ft = t + timedelta(seconds=rng.uniform(5, 600))
                batch.append(ev.Feedback(
                    event_id=ev.new_event_id(), ts=_ts(min(ft, end)), arm=arm.name, interaction_id=iid, unit=a.unit,
                    metric=metric, value=value, source=source, **common))  # type: ignore[arg-type]
        if len(batch) > 20_000:
            writer.write(sorted(batch, key=lambda e: e.ts), fsync=False)
            batch = []
    writer.write(sorted(batch, key=lambda e: e.ts), fsync=True)
    return per_arm


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Replay 14 days of the seed-002 A/B test into the archive.")
    p.add_argument("--state-dir", type=Path, default=Path(".abgate"))
    p.add_argument("--route", default="order-support")
    p.add_argument("--users", type=int, default=1400, help="simulated customers (default 1400: ~700 per arm)")
    p.add_argument("--per-user", type=int, default=4, help="conversations per customer")
    p.add_argument("--days", type=float, default=14.5, help="length of the replayed experiment, ending now")
    p.add_argument("--seed", type=int, default=2)
    a = p.parse_args(argv)
    if a.users < 1 or a.per_user < 1 or a.days <= 0:
        p.error("--users and --per-user must be >= 1 and --days > 0")
    per_arm = replay(a.state_dir, a.route, users=a.users, per_user=a.per_user, days=a.days, seed=a.seed)
    total = sum(per_arm.values())
    print(f"replayed {total} interactions over {a.days:g} days: "
          + ", ".join(f"{k}={v} ({v / total:.0%})" for k, v in sorted(per_arm.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
