"""Simulated users: chat through the gateway, then give feedback whose rates depend on answer quality.

`python -m simulator.traffic --gateway URL --route R --users N --requests M [--seed S] [--concurrency C]
[--api-key K] [--task support|analyst|intent|mixed] [--stream-share X]`, or `await run(...)`.

Users judge answers by content (`simulator.tasks.score`), never by the model name, so a better model
earns more thumbs up, fewer edits and follow-ups, higher CSAT, more approvals; a worse one more policy
violations. Every random choice comes from an RNG seeded by (seed, request index), so the requests and
feedback are the same whatever the concurrency or completion order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from simulator import prompts, tasks

# aiohttp rather than httpx: the generator shares the machine with the gateway it loads, and aiohttp's
# client costs a fraction of httpx's CPU per request (its HTTP parser is in C)
CLIENT_ERRORS = (aiohttp.ClientError, TimeoutError)


@dataclass
class ArmStats:
    requests: int = 0
    errors: int = 0
    models: set[str] = field(default_factory=set)
    quality_sum: float = 0.0
    feedback: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def mean_quality(self) -> float:
        ok = self.requests - self.errors
        return self.quality_sum / ok if ok else 0.0


@dataclass
class Summary:
    requests: int = 0
    ok: int = 0
    errors: int = 0
    feedback_sent: int = 0
    feedback_errors: int = 0
    arms: dict[str, ArmStats] = field(default_factory=dict)
    status_codes: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    first_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests, "ok": self.ok, "errors": self.errors, "feedback_sent": self.feedback_sent,
            "feedback_errors": self.feedback_errors, "status_codes": dict(self.status_codes),
            "first_error": self.first_error,
            "arms": {a: {"requests": s.requests, "errors": s.errors, "models": sorted(s.models),
                         "mean_quality": round(s.mean_quality, 4), "feedback": dict(s.feedback)}
                     for a, s in sorted(self.arms.items())},
        }


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How likely each kind of feedback is, as a function of answer quality q in [0, 1]."""

    thumbs_rate: float = 0.6
    edit_base: float = 0.05
    edit_slope: float = 0.6
    followup_base: float = 0.05
    followup_slope: float = 0.5
    csat_rate: float = 0.4
    approval_rate: float = 0.7     # share of interactions a reviewer approves or rejects
    review_rate: float = 0.3
    violation_report_rate: float = 0.9


def feedback_for(task: tasks.Task, answer: str, rng: random.Random, b: Behaviour = Behaviour(),
                 category: str = "") -> list[tuple[str, Any, str]]:
    """The (metric, value, source) feedback one simulated user + reviewer give for one answer."""
    s = tasks.score(task, answer)
    q = s.quality
    out: list[tuple[str, Any, str]] = []
    if rng.random() < b.thumbs_rate:
        up = rng.random() < (0.1 + 0.85 * q) and not s.violation
        out.append(("thumbs", 1 if up else -1, "user"))
    if rng.random() < b.edit_base + b.edit_slope * (1 - q):
        out.append(("edited_response", task.ideal, "user"))
    out.append(("followup", rng.random() < b.followup_base + b.followup_slope * (1 - q), "user"))
    if rng.random() < b.csat_rate:
        csat = round(1 + 4 * q + rng.gauss(0, 0.6))
        out.append(("csat", max(1, min(5, csat)), "user"))
    if rng.random() < b.approval_rate:
        out.append(("approved", (not s.violation) and rng.random() < 0.05 + 0.9 * q, "reviewer"))
    if s.violation and rng.random() < b.violation_report_rate:
        out.append(("policy_violation", True, "reviewer"))
    elif not s.violation and rng.random() < 0.1:
        out.append(("policy_violation", False, "reviewer"))
    if rng.random() < b.review_rate:
        def grade(shift: float = 0.0) -> int:
            return max(1, min(5, round(1 + 4 * q + shift + rng.gauss(0, 0.4))))
        scores = {"factuality": grade(), "helpfulness": grade(), "tone": grade(0.5),
                  "policy": 1 if s.violation else grade(0.8), "completeness": grade(-0.2)}
        review: dict[str, int | str] = {
            **scores, "overall": min(scores.values()) if s.violation else round(sum(scores.values()) / 5)}
        review.update(quality=max(1, min(10, round(1 + 9 * q + rng.gauss(0, 0.7)))),
                      category=category or task.kind, reviewer=f"reviewer-{rng.randint(1, 3)}")
        out.append(("review", review, "reviewer"))
    return out


def default_kind(route: str) -> str:
    low = route.lower()
    for kind in prompts.KINDS:
        if kind in low:
            return kind
    return "mixed"


async def _read_stream(resp: aiohttp.ClientResponse) -> tuple[str, str | None]:
    text: list[str] = []
    ident: str | None = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        ident = ident or chunk.get("id")
        for ch in chunk.get("choices") or ():
            text.append((ch.get("delta") or {}).get("content") or "")
    return "".join(text), ident


async def run(gateway: str, route: str, users: int, requests: int, *, seed: int = 0, concurrency: int = 8,
              api_key: str | None = None, task: str | None = None, stream_share: float = 0.0,
              behaviour: Behaviour = Behaviour(), send_feedback: bool = True, timeout_s: float = 30.0,
              progress: Any = None) -> Summary:
    """Send `requests` chat requests from `users` simulated users through the gateway at `gateway`."""
    if users < 1 or requests < 0 or concurrency < 1:
        raise ValueError("users and concurrency must be >= 1 and requests >= 0")
    kind = task or default_kind(route)
    base = gateway.rstrip("/")
    headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
    summary = Summary()
    sem = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency * 2)
    timeout = aiohttp.ClientTimeout(total=timeout_s)

    async with aiohttp.ClientSession(base, headers=headers, timeout=timeout, connector=connector) as client:
        async def one(i: int) -> None:
            rng = random.Random(f"{seed}:{i}")
            user = f"user-{seed}-{rng.randrange(users):06d}"
            prompt = prompts.make(kind, rng)
            stream = rng.random() < stream_share
            body: dict[str, Any] = {"model": route, "messages": list(prompt.messages), "user": user}
            if stream:
                body.update(stream=True, stream_options={"include_usage": True})
            async with sem:
                summary.requests += 1
                try:
                    async with client.post("/v1/chat/completions", json=body) as resp:
                        answer, ident = "", None
                        if resp.status != 200:
                            answer = await resp.text()
                        elif stream:
                            answer, ident = await _read_stream(resp)
                        else:
                            data = json.loads(await resp.read())
                            answer, ident = data["choices"][0]["message"]["content"] or "", data.get("id")
                except (*CLIENT_ERRORS, ValueError, KeyError) as err:
                    summary.errors += 1
                    summary.first_error = summary.first_error or f"{type(err).__name__}: {err}"
                    return
                finally:
                    if progress is not None:
                        progress()
                arm = resp.headers.get("x-abgate-arm", "unknown")
                stats = summary.arms.setdefault(arm, ArmStats())
                stats.requests += 1
                summary.status_codes[resp.status] += 1
                if resp.status != 200:
                    stats.errors += 1
                    summary.errors += 1
                    summary.first_error = summary.first_error or f"HTTP {resp.status}: {answer[:300]}"
                    return
                summary.ok += 1
                if model := resp.headers.get("x-abgate-model"):
                    stats.models.add(model)
                stats.quality_sum += tasks.score(prompt.task, answer).quality
                iid = resp.headers.get("x-abgate-interaction-id") or ident
                if not send_feedback or not iid:
                    return
                for metric, value, source in feedback_for(prompt.task, answer, rng, behaviour, prompt.category):
                    fb = {"interaction_id": iid, "metric": metric, "value": value, "source": source,
                          "idempotency_key": f"{user}-{i}-{metric}"}
                    error: str | None = None
                    try:
                        async with client.post("/v1/feedback", json=fb) as r:
                            if r.status >= 300:
                                error = f"feedback HTTP {r.status}: {(await r.text())[:300]}"
                    except CLIENT_ERRORS as err:
                        error = f"feedback: {type(err).__name__}: {err}"
                    if error is None:
                        summary.feedback_sent += 1
                        stats.feedback[metric] += 1
                    else:
                        summary.feedback_errors += 1
                        summary.first_error = summary.first_error or error

        await asyncio.gather(*(one(i) for i in range(requests)))
    return summary


def print_summary(summary: Summary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Traffic split per arm")
    for col in ("arm", "models", "requests", "share", "errors", "mean quality", "feedback"):
        table.add_column(col, justify="left" if col in ("arm", "models") else "right")
    total = max(1, sum(s.requests for s in summary.arms.values()))
    for arm, s in sorted(summary.arms.items()):
        table.add_row(arm, ", ".join(sorted(s.models)), str(s.requests), f"{s.requests / total:.1%}", str(s.errors),
                      f"{s.mean_quality:.3f}", str(sum(s.feedback.values())))
    console = Console()
    console.print(table)
    console.print(f"requests {summary.requests}, ok {summary.ok}, errors {summary.errors}, "
                  f"feedback sent {summary.feedback_sent}, feedback errors {summary.feedback_errors}")
    if summary.first_error:
        console.print(f"[yellow]first error:[/] {summary.first_error}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.traffic", description="Simulated users for abgate.")
    p.add_argument("--gateway", required=True, help="gateway base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--route", required=True, help="route name sent as `model`")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--api-key", default=None)
    p.add_argument("--task", choices=(*prompts.KINDS, "mixed"), default=None,
                   help="prompt pool (default: from the route name, else mixed)")
    p.add_argument("--stream-share", type=float, default=0.0, help="share of requests sent with stream=true")
    p.add_argument("--no-feedback", action="store_true")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    a = p.parse_args(argv)
    if a.users < 1 or a.requests < 0 or a.concurrency < 1 or not 0 <= a.stream_share <= 1:
        p.error("--users/--concurrency must be >= 1, --requests >= 0, --stream-share in [0, 1]")

    async def go() -> Summary:
        if a.json:
            return await run(a.gateway, a.route, a.users, a.requests, seed=a.seed, concurrency=a.concurrency,
                             api_key=a.api_key, task=a.task, stream_share=a.stream_share,
                             send_feedback=not a.no_feedback)
        from rich.progress import Progress

        with Progress() as bar:
            t = bar.add_task("requests", total=a.requests)
            return await run(a.gateway, a.route, a.users, a.requests, seed=a.seed, concurrency=a.concurrency,
                             api_key=a.api_key, task=a.task, stream_share=a.stream_share,
                             send_feedback=not a.no_feedback, progress=lambda: bar.advance(t))

    try:
        summary = asyncio.run(go())
    except CLIENT_ERRORS as err:
        print(f"traffic: cannot reach {a.gateway}: {err}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print_summary(summary)
    return 0 if summary.ok > 0 or a.requests == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
