"""gateway.metrics: names, labels, bounded cardinality, config gauges, multiprocess merge."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.config import validate
from gateway.metrics import OVERHEAD_BUCKETS, Metrics, feedback_outcome, prepare_multiprocess

ROOT = Path(__file__).resolve().parents[2]


def _config(control_weight: float = 0.5, *, third_arm: bool = False):
    arms = [
        {"name": "control", "model": "base-model", "weight": control_weight},
        {"name": "treatment", "model": "ft:base-model:acme::x1", "weight": round(1 - control_weight, 6)},
    ]
    if third_arm:
        arms = [{**arms[0], "weight": 0.5}, {**arms[1], "weight": 0.25},
                {"name": "extra", "model": "other-model", "weight": 0.25}]
    return validate({
        "routes": {"support": {"experiment": "exp-1", "arms": arms}},
        "upstreams": {"sim": {"base_url": "http://127.0.0.1:9/v1"}},
        "metrics": {"resolved": {"type": "boolean"}},
    })


def samples(m: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, ctype = m.render()
    assert ctype.startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(m: Metrics, name: str, **labels: str) -> float | None:
    return samples(m).get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    m = Metrics()
    m.set_config(7, _config())
    return m


def test_every_design_metric_is_exported(metrics: Metrics) -> None:
    metrics.observe_request("support", "control", "base-model", "ok", 1.5, 0.2, 0.0003, 10, 20, 0.002)
    metrics.upstream_error("support", "treatment", "timeout")
    metrics.fallback("support")
    metrics.feedback("support", "control", "thumbs", 1)
    metrics.event("interaction", "written")
    metrics.set_queue_depth(4)
    names = {name for name, _ in samples(metrics)}
    for expected in ["abgate_requests_total", "abgate_request_duration_seconds_bucket",
                     "abgate_time_to_first_token_seconds_bucket", "abgate_overhead_seconds_bucket",
                     "abgate_upstream_errors_total", "abgate_fallbacks_total", "abgate_tokens_total",
                     "abgate_cost_usd_total", "abgate_feedback_total", "abgate_feedback_value_total",
                     "abgate_arm_weight", "abgate_config_version", "abgate_events_total",
                     "abgate_event_queue_depth"]:
        assert expected in names, expected
    assert value(metrics, "abgate_event_queue_depth") == 4
    assert value(metrics, "abgate_config_version") == 7


def test_observe_request_counts_and_histograms(metrics: Metrics) -> None:
    for _ in range(3):
        metrics.observe_request("support", "control", "base-model", "ok", 2.5, 0.4, 0.00012, 11, 5, 0.001)
    metrics.observe_request("support", "treatment", "ft:base-model:acme::x1", "upstream_error", 0.2)
    assert value(metrics, "abgate_requests_total", route="support", arm="control", model="base-model",
                 status="ok") == 3
    assert value(metrics, "abgate_requests_total", route="support", arm="treatment",
                 model="ft:base-model:acme::x1", status="upstream_error") == 1
    assert value(metrics, "abgate_tokens_total", route="support", arm="control", kind="prompt") == 33
    assert value(metrics, "abgate_tokens_total", route="support", arm="control", kind="completion") == 15
    assert value(metrics, "abgate_cost_usd_total", route="support", arm="control") == pytest.approx(0.003)
    # Multi-second completions land in their own bucket, not +Inf.
    assert value(metrics, "abgate_request_duration_seconds_bucket", route="support", arm="control", le="2.0") == 0
    assert value(metrics, "abgate_request_duration_seconds_bucket", route="support", arm="control", le="3.0") == 3
    assert value(metrics, "abgate_request_duration_seconds_bucket", route="support", arm="control", le="120.0") == 3
    # Sub-millisecond overhead resolves to 50 us steps.
    assert OVERHEAD_BUCKETS[0] == 0.00005 and OVERHEAD_BUCKETS[-1] == 0.1
    assert value(metrics, "abgate_overhead_seconds_bucket", route="support", le="0.0001") == 0
    assert value(metrics, "abgate_overhead_seconds_bucket", route="support", le="0.00015") == 3
    # No TTFT given -> nothing observed for the treatment arm.
    assert value(metrics, "abgate_time_to_first_token_seconds_count", route="support", arm="treatment") == 0


@pytest.mark.parametrize(("code", "label"), [(200, "ok"), (404, "rejected"), (429, "rejected"), (502, "upstream_error"),
                                             (504, "timeout"), (499, "client_closed"), ("weird", "other")])
def test_http_codes_map_to_interaction_status(metrics: Metrics, code: object, label: str) -> None:
    metrics.observe_request("support", "control", "base-model", code, 0.1)  # type: ignore[arg-type]
    assert value(metrics, "abgate_requests_total", route="support", arm="control", model="base-model",
                 status=label) == 1


def test_client_strings_never_become_labels(metrics: Metrics) -> None:
    for i in range(50):
        metrics.observe_request(f"user-typo-{i}", "control", "base-model", "ok", 0.1)
        metrics.observe_request("support", f"arm-{i}", "base-model", "ok", 0.1)
        metrics.observe_request("support", "control", f"raw-model-{i}", "ok", 0.1)
        metrics.feedback(f"route-{i}", "control", "thumbs", -1)
    assert value(metrics, "abgate_requests_total", route="unknown", arm="unknown", model="unknown", status="ok") == 50
    assert value(metrics, "abgate_requests_total", route="support", arm="unknown", model="base-model",
                 status="ok") == 50
    assert value(metrics, "abgate_requests_total", route="support", arm="control", model="other", status="ok") == 50
    assert value(metrics, "abgate_feedback_total", route="unknown", arm="unknown", metric="thumbs",
                 outcome="negative") == 50
    label_values = {v for _, labels in samples(metrics) for _, v in labels}
    assert not any(v.startswith(("user-typo", "arm-", "raw-model", "route-")) for v in label_values)
    # The per-label-set cache must not grow with junk either.
    assert len(metrics._arm_cache) <= 5  # 2 config arms + 3 folded label sets


def test_free_form_labels_are_bounded(metrics: Metrics) -> None:
    for i in range(200):
        metrics.upstream_error("support", "control", f"reason_{i}")
    metrics.upstream_error("support", "control", "has spaces and {braces}")
    reasons = {dict(labels)["reason"] for name, labels in samples(metrics) if name == "abgate_upstream_errors_total"}
    assert len(reasons) <= 65 and "other" in reasons
    metrics.event("made-up-kind", "exploded")
    assert value(metrics, "abgate_events_total", kind="other", outcome="other") == 1


def test_set_config_tracks_weights_versions_and_removed_arms(metrics: Metrics) -> None:
    assert value(metrics, "abgate_arm_weight", route="support", arm="control") == 0.5
    metrics.set_config(8, _config(third_arm=True))
    assert value(metrics, "abgate_config_version") == 8
    assert value(metrics, "abgate_arm_weight", route="support", arm="treatment") == 0.25
    assert value(metrics, "abgate_arm_weight", route="support", arm="extra") == 0.25
    metrics.set_config(9, _config(0.9))
    assert value(metrics, "abgate_config_version") == 9
    assert value(metrics, "abgate_arm_weight", route="support", arm="control") == 0.9
    assert value(metrics, "abgate_arm_weight", route="support", arm="extra") is None
    # An arm that left the config may still finish in-flight requests under its name.
    metrics.observe_request("support", "extra", "other-model", "ok", 0.1)
    assert value(metrics, "abgate_requests_total", route="support", arm="extra", model="other-model",
                 status="ok") == 1


@pytest.mark.parametrize(("metric", "raw", "outcome", "num"), [
    ("thumbs", 1, "positive", 1.0), ("thumbs", -1, "negative", 0.0), ("approved", True, "positive", 1.0),
    ("policy_violation", False, "negative", 0.0), ("csat", 4, "value", 4.0), ("edited_response", "fixed", "positive", 1.0),
    ("review", {"overall": 5, "tone": 4}, "value", 5.0), ("review", {"category": "x"}, "neutral", None),
    ("resolved", None, "neutral", None),
])
def test_feedback_outcome_mapping(metric: str, raw: object, outcome: str, num: float | None) -> None:
    assert feedback_outcome(metric, raw) == (outcome, num)


def test_feedback_counts_and_value_sums_give_rates_and_means(metrics: Metrics) -> None:
    for v in (5, 4, 3):
        metrics.feedback("support", "treatment", "csat", v)                      # raw value
    metrics.feedback("support", "treatment", "csat", "value", value=2)          # label + value
    metrics.feedback("support", "control", "approved", "positive")
    metrics.feedback("support", "control", "approved", "negative")
    metrics.feedback("support", "control", "resolved", True)                    # custom metric from config
    metrics.feedback("support", "control", "not declared anywhere!", True)
    count = value(metrics, "abgate_feedback_total", route="support", arm="treatment", metric="csat", outcome="value")
    total = value(metrics, "abgate_feedback_value_total", route="support", arm="treatment", metric="csat")
    assert (count, total) == (4, 14) and total / count == 3.5
    assert value(metrics, "abgate_feedback_value_total", route="support", arm="control", metric="approved") == 1
    assert value(metrics, "abgate_feedback_total", route="support", arm="control", metric="resolved",
                 outcome="positive") == 1
    assert value(metrics, "abgate_feedback_total", route="support", arm="control", metric="other",
                 outcome="positive") == 1


def test_instances_do_not_share_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    a, b = Metrics(), Metrics()
    a.set_config(1, _config())
    a.observe_request("support", "control", "base-model", "ok", 0.1)
    assert value(b, "abgate_requests_total", route="support", arm="control", model="base-model", status="ok") is None


WORKER = """
import sys
from gateway.config import validate
from gateway.metrics import Metrics
n, version, weight, mode = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
m = Metrics()
m.set_config(version, validate({"routes": {"support": {"experiment": "e", "arms": [
    {"name": "control", "model": "base", "weight": weight},
    {"name": "treatment", "model": "ft:base", "weight": round(1 - weight, 6)}]}},
    "upstreams": {"u": {"base_url": "http://127.0.0.1:9/v1"}}}))
for _ in range(n):
    m.observe_request("support", "control", "base", "ok", 0.3, None, 0.0002, 3, 4, 0.001)
m.set_queue_depth(10)
if mode == "exit":
    m.close()
if mode == "render":
    sys.stdout.write(m.render()[0].decode())
"""


def test_multiprocess_scrape_is_the_sum_over_workers(tmp_path: Path) -> None:
    mp = tmp_path / "mp"
    mp.mkdir()
    (mp / "counter_99999.db").write_bytes(b"stale file from a previous run")
    old_env = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        prepare_multiprocess(mp)
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(mp)
        assert list(mp.iterdir()) == []  # stale files would be summed into this run
    finally:
        if old_env is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = old_env
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp)}

    def worker(*args: str) -> str:
        res = subprocess.run([sys.executable, "-c", WORKER, *args], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60, check=True)
        return res.stdout

    worker("7", "3", "0.5", "alive")   # still running: its queue depth counts
    worker("5", "4", "0.2", "exit")    # exited cleanly: counters stay, queue depth leaves
    text = worker("2", "4", "0.2", "render")
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value
           for fam in text_string_to_metric_families(text) for s in fam.samples}
    key = ("abgate_requests_total", (("arm", "control"), ("model", "base"), ("route", "support"), ("status", "ok")))
    assert got[key] == 14
    assert got[("abgate_tokens_total", (("arm", "control"), ("kind", "prompt"), ("route", "support")))] == 42
    assert got[("abgate_event_queue_depth", ())] == 20
    assert got[("abgate_config_version", ())] == 4
    assert got[("abgate_arm_weight", (("arm", "control"), ("route", "support")))] == 0.2
    assert got[("abgate_overhead_seconds_count", (("route", "support"),))] == 14


def test_series_exist_at_zero_before_first_event(metrics: Metrics) -> None:
    # increase()/rate() miss a counter's first increment if the series appears at 1.
    assert value(metrics, "abgate_requests_total", route="support", arm="treatment",
                 model="ft:base-model:acme::x1", status="upstream_error") == 0
    assert value(metrics, "abgate_events_total", kind="interaction", outcome="dropped") == 0
    assert value(metrics, "abgate_fallbacks_total", route="support") == 0
    assert value(metrics, "abgate_feedback_total", route="support", arm="control", metric="policy_violation",
                 outcome="positive") == 0
    assert value(metrics, "abgate_feedback_total", route="support", arm="control", metric="resolved",
                 outcome="negative") == 0
