"""Real Prometheus scraping a real gateway driven through both arms of a simulator upstream.

Every PromQL expression of every dashboard panel and alert rule must return data, and the
counts Prometheus reports must agree with what the test sent.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from tests.support import http, promql
from tests.support.procs import Proc, start_gateway, start_simulator

pytestmark = pytest.mark.integration

ROUTE_CONFIG = """
routes:
  support:
    experiment: support-ft-2
    hash_attribute: user
    arms:
      - {{name: control, model: gpt-4o-mini-2024-07-18, weight: {w0}}}
      - {{name: treatment, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: {w1}}}
    fallback: control
upstreams:
  sim: {{base_url: "{base}/v1", timeout_s: 10}}
models:
  gpt-4o-mini-2024-07-18: {{upstream: sim, input_per_mtok: 0.15, output_per_mtok: 0.60}}
  "ft:gpt-4o-mini-2024-07-18:acme:support:abc123": {{upstream: sim, input_per_mtok: 0.30, output_per_mtok: 1.20}}
"""


def write_router(path: Path, upstream: str, w0: float, w1: float) -> Path:
    path.write_text(ROUTE_CONFIG.format(base=upstream, w0=w0, w1=w1))
    return path


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes to stop at the end, in reverse start order."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.stop()


def chat(client: httpx.Client, base: str, user: str, *, stream: bool) -> httpx.Response:
    body = {"model": "support", "user": user, "stream": stream,
            "messages": [{"role": "user", "content": f"Where is my order? ({user})"}]}
    if stream:
        with client.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=30) as r:
            r.read()
            return r
    return client.post(f"{base}/v1/chat/completions", json=body, timeout=30)


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    # A fresh connection each time, so with several workers any of them may answer.
    text = http.get(f"{base}/metrics", timeout=10, headers={"connection": "close"}).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def total(samples: dict, name: str, **match: str) -> float:
    return sum(v for (n, labels), v in samples.items()
               if n == name and all(dict(labels).get(k) == want for k, want in match.items()))


def test_dashboards_and_alerts_return_data_from_real_prometheus(tmp_path: Path, procs: list[Proc]) -> None:
    sim, upstream = start_simulator(tmp_path, "--error-rate", "0.15", "--seed", "3")
    procs.append(sim)
    config = write_router(tmp_path / "router.yaml", upstream, 0.5, 0.5)
    gw, base = start_gateway(tmp_path, config, tmp_path / "state")
    procs.append(gw)
    prom, prom_base = promql.start_prometheus(tmp_path, [base.removeprefix("http://")])
    procs.append(prom)
    # Scrape at least once before traffic so counters start from a known sample.
    promql.wait_for(prom_base, "up", lambda r: promql.values(r) == [1.0])
    version0 = promql.values(promql.query(prom_base, "max(abgate_config_version)"))[0]

    rnd = random.Random(5)
    sent = 0
    ok_by_arm: Counter[str] = Counter()
    interactions: list[str] = []
    with httpx.Client() as client:
        def burst(n: int) -> None:
            nonlocal sent
            for i in range(n):
                r = chat(client, base, f"user-{rnd.randrange(40)}", stream=i % 3 == 0)
                sent += 1
                assert r.status_code in (200, 502, 504), r.text
                if r.status_code == 200:
                    ok_by_arm[r.headers["x-abgate-arm"]] += 1
                    interactions.append(r.headers["x-abgate-interaction-id"])

        burst(60)
        assert set(ok_by_arm) == {"control", "treatment"}, ok_by_arm

        sent_feedback: Counter[str] = Counter()
        rated = list(interactions)
        for k, iid in enumerate(rated):
            items = [("thumbs", 1 if k % 3 else -1), ("csat", 1 + k % 5), ("approved", k % 2 == 0),
                     ("policy_violation", k % 7 == 0)]
            if k % 4 == 0:
                items.append(("edited_response", f"A corrected answer number {k}."))
            for metric, value in items:
                r = client.post(f"{base}/v1/feedback", json={"interaction_id": iid, "metric": metric, "value": value},
                                timeout=10)
                assert r.status_code == 200, r.text
                sent_feedback[metric] += 1

        # A config change must show in abgate_config_version / abgate_arm_weight and as an annotation.
        write_router(config, upstream, 0.3, 0.7)
        promql.wait_for(prom_base, 'max(abgate_arm_weight{route="support", arm="treatment"})',
                        lambda r: promql.values(r) == [0.7])
        promql.wait_for(prom_base, "max(abgate_config_version)", lambda r: promql.values(r)[0] > version0)
        burst(20)

    # Prometheus' count equals what was sent (polled: the last requests need one more scrape).
    promql.wait_for(prom_base, 'sum(abgate_requests_total{route="support"})', lambda r: promql.values(r) == [sent])
    for arm, n in ok_by_arm.items():
        got = promql.values(promql.query(prom_base, f'sum(abgate_requests_total{{route="support", arm="{arm}", status="ok"}})'))
        assert got == [n], (arm, got, n)
    for metric, n in sent_feedback.items():
        promql.wait_for(prom_base, f'sum(abgate_feedback_total{{route="support", metric="{metric}"}})',
                        lambda r, n=n: promql.values(r) == [n])
    csat_sum = promql.values(promql.query(prom_base, 'sum(abgate_feedback_value_total{metric="csat"})'))
    assert csat_sum == [sum(1 + k % 5 for k in range(len(rated)))]
    assert promql.values(promql.query(prom_base, 'sum(abgate_upstream_errors_total{route="support"})'))[0] > 0
    assert promql.values(promql.query(prom_base, 'sum(abgate_cost_usd_total{route="support"})'))[0] > 0
    assert promql.values(promql.query(prom_base, 'sum(abgate_events_total{outcome="written"})'))[0] > 0
    # Rules are evaluated every second: wait until the recorded series include the new data.
    promql.wait_for(prom_base, "route:abgate_requests:increase30m", lambda r: bool(r))

    empty = []
    for where, expr in promql.dashboard_queries() + promql.rule_queries():
        result = promql.query(prom_base, promql.substitute(expr))
        if not promql.has_finite(result):
            empty.append(f"{where}: {expr} -> {result}")
    assert not empty, "queries without data:\n" + "\n".join(empty)

    rules = http.get(f"{prom_base}/api/v1/rules", timeout=10).json()["data"]["groups"]
    evaluated = [r for g in rules for r in g["rules"]]
    assert len(evaluated) == len(promql.rule_queries())
    assert all(r["health"] == "ok" for r in evaluated), [(r["name"], r.get("lastError")) for r in evaluated]


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out


def _multiproc_dir(pids: list[int]) -> Path:
    for pid in pids:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for item in env:
            if item.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(item.split(b"=", 1)[1].decode())
    raise AssertionError(f"no worker of {pids} runs with PROMETHEUS_MULTIPROC_DIR")


def _requests_per_pid(mp_dir: Path) -> dict[int, float]:
    per_pid: dict[int, float] = {}
    for f in mp_dir.glob("counter_*.db"):
        pid = int(f.stem.split("_")[1])
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(str(f)):
            if json.loads(key)[1] == "abgate_requests_total":
                per_pid[pid] = per_pid.get(pid, 0.0) + value
    return per_pid


def test_two_workers_one_scrape_reports_the_sum(tmp_path: Path, procs: list[Proc]) -> None:
    sim, upstream = start_simulator(tmp_path, "--latency-ms", "30", "--seed", "1")
    procs.append(sim)
    config = write_router(tmp_path / "router.yaml", upstream, 0.5, 0.5)
    gw, base = start_gateway(tmp_path, config, tmp_path / "state", "--workers", "2")
    procs.append(gw)
    assert gw.popen is not None
    mp_dir = _multiproc_dir(_descendants(gw.popen.pid))
    assert mp_dir != Path(os.environ.get("PROMETHEUS_MULTIPROC_DIR", "/nonexistent"))

    def one(i: int) -> int:
        # New connection per request so the kernel spreads them over both workers.
        with httpx.Client(headers={"connection": "close"}) as c:
            return chat(c, base, f"user-{i}", stream=i % 2 == 0).status_code

    sent = 0
    with ThreadPoolExecutor(8) as pool:
        for _round in range(20):
            codes = list(pool.map(one, range(sent, sent + 16)))
            assert codes == [200] * len(codes)
            sent += len(codes)
            if len([n for n in _requests_per_pid(mp_dir).values() if n > 0]) >= 2:
                break
    per_pid = _requests_per_pid(mp_dir)
    assert len([n for n in per_pid.values() if n > 0]) >= 2, f"one worker served everything: {per_pid}"
    assert sum(per_pid.values()) == sent

    # Whichever worker answers the scrape, it reports the sum over both.
    for _ in range(6):
        s = scrape(base)
        assert total(s, "abgate_requests_total", route="support") == sent
        assert total(s, "abgate_request_duration_seconds_count", route="support") == sent
        assert total(s, "abgate_config_version") >= 1
        assert total(s, "abgate_arm_weight", route="support", arm="treatment") == 0.5

    # And so does Prometheus scraping it.
    prom, prom_base = promql.start_prometheus(tmp_path, [base.removeprefix("http://")], rule_files=())
    procs.append(prom)
    promql.wait_for(prom_base, 'sum(abgate_requests_total{route="support"})', lambda r: promql.values(r) == [sent])
