"""Grafana dashboards, provisioning and Prometheus alert rules: structure + promtool."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
import yaml

from tests.support.promql import (
    ALERTS,
    DASHBOARDS,
    GRAFANA,
    as_bool,
    dashboard_queries,
    panels,
    rule_queries,
    substitute,
)

METRIC_NAMES = {
    "abgate_requests_total", "abgate_request_duration_seconds_bucket", "abgate_time_to_first_token_seconds_bucket",
    "abgate_overhead_seconds_bucket", "abgate_upstream_errors_total", "abgate_fallbacks_total", "abgate_tokens_total",
    "abgate_cost_usd_total", "abgate_feedback_total", "abgate_feedback_value_total", "abgate_arm_weight",
    "abgate_config_version", "abgate_events_total", "abgate_event_queue_depth", "abgate_model_days_to_shutdown",
}


def _load(name: str) -> dict:
    return json.loads((GRAFANA / "dashboards" / name).read_text())


def test_both_dashboards_exist_with_route_and_arm_variables() -> None:
    assert {p.name for p in DASHBOARDS} == {"ab-experiment.json", "gateway-health.json"}
    titles = set()
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        titles.add(dash["title"])
        assert dash["uid"] and 36 <= dash["schemaVersion"] <= 41
        names = {v["name"] for v in dash["templating"]["list"]}
        assert {"route", "arm"} <= names, path.name
        for v in dash["templating"]["list"]:
            assert v["datasource"]["uid"] == "prometheus"
    assert titles == {"abgate / A/B experiment", "abgate / Gateway health"}
    uids = [json.loads(p.read_text())["uid"] for p in DASHBOARDS]
    assert len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_has_title_unit_datasource_and_queries(path) -> None:
    dash = json.loads(path.read_text())
    seen_ids = set()
    for p in panels(dash):
        assert p.get("title"), p
        assert p["id"] not in seen_ids
        seen_ids.add(p["id"])
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "prometheus"}, p["title"]
        assert p["fieldConfig"]["defaults"].get("unit"), p["title"]
        assert p.get("description"), p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "prometheus", p["title"]
            assert t["expr"].strip() and t["refId"], p["title"]
        gp = p["gridPos"]
        assert gp["x"] + gp["w"] <= 24


def test_ab_dashboard_covers_what_product_teams_watch() -> None:
    text = " ".join(e for w, e in dashboard_queries() if "ab-experiment" in w)
    titles = {p["title"] for p in panels(_load("ab-experiment.json"))}
    for needed in ["Traffic share per arm vs configured weight", "Request rate per arm", "Error rate per arm",
                   "Latency p50 / p95 / p99 per arm", "Time to first token p50 / p95 per arm",
                   "Tokens per second per arm", "Cost per hour per arm", "Thumbs-up rate per arm", "Edit rate per arm",
                   "Approval rate per arm", "CSAT mean per arm", "Policy-violation rate per arm"]:
        assert needed in titles
    for metric in ["thumbs", "edited_response", "approved", "csat", "policy_violation"]:
        assert f'metric="{metric}"' in text
    assert "abgate_arm_weight" in text
    annotations = [a for a in _load("ab-experiment.json")["annotations"]["list"] if "expr" in a]
    assert [a["expr"] for a in annotations] == ["changes(abgate_config_version[1m]) > 0"]
    assert annotations[0]["datasource"]["uid"] == "prometheus"


def test_health_dashboard_covers_what_operators_watch() -> None:
    text = " ".join(e for w, e in dashboard_queries() if "gateway-health" in w)
    for needed in ["abgate_overhead_seconds_bucket", "abgate_upstream_errors_total", "abgate_fallbacks_total",
                   "abgate_event_queue_depth", "abgate_events_total", "abgate_config_version"]:
        assert needed in text
    assert "histogram_quantile(0.5," in text and "histogram_quantile(0.99," in text


def test_queries_only_use_exported_metric_names() -> None:
    for where, expr in dashboard_queries():
        for name in re.findall(r"\babgate_[a-z_]+\b", expr):
            assert name in METRIC_NAMES, f"{where}: {name}"
        substitute(expr)  # every template variable has a value


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    ds = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())["datasources"]
    assert [(d["uid"], d["type"]) for d in ds] == [("prometheus", "prometheus")]
    prov = yaml.safe_load((GRAFANA / "provisioning/dashboards/abgate.yml").read_text())["providers"]
    assert prov[0]["type"] == "file" and prov[0]["options"]["path"] == "/var/lib/grafana/dashboards/abgate"
    compose = yaml.safe_load((GRAFANA.parent / "docker-compose.yml").read_text())
    assert {"gateway", "simulator", "redis", "prometheus", "grafana"} <= set(compose["services"])
    mounts = " ".join(compose["services"]["grafana"]["volumes"])
    assert "./grafana/dashboards:/var/lib/grafana/dashboards/abgate" in mounts
    assert "./grafana/provisioning:/etc/grafana/provisioning" in mounts
    prom = yaml.safe_load((GRAFANA / "prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert "./grafana/alerts.yml:/etc/prometheus/alerts.yml:ro" in compose["services"]["prometheus"]["volumes"]


def test_alert_rules_cover_the_required_conditions() -> None:
    rules = {r.get("alert") or r["record"]: r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    for alert in ["AbgateArmErrorRateHigh", "AbgateOverheadP99High", "AbgateEventsDropped",
                  "AbgateArmTrafficShareMismatch"]:
        assert alert in rules
        assert rules[alert]["annotations"]["summary"] and rules[alert]["labels"]["severity"]
    tested = " ".join(p.read_text() for p in (GRAFANA / "tests").glob("*.yml"))
    for name, rule in rules.items():
        if "alert" in rule:
            assert f"alertname: {name}" in tested, f"{name} has no promtool test"


def test_as_bool_keeps_series_that_do_not_fire() -> None:
    assert as_bool("a > 0.05 and on (x) b >= 20") == "a > bool 0.05 and on (x) b >= bool 20"
    assert as_bool('c{status!="ok"} > 0') == 'c{status!="ok"} > bool 0'
    assert as_bool("x and on (r) (0 < w:max < 1)") == "x and on (r) (w:max > bool 0) * (w:max < bool 1)"
    assert all(" bool " in e for w, e in rule_queries() if w.startswith("alert"))


def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run `make sysdeps` (make test does)")
    return exe


def test_promtool_check_rules() -> None:
    res = subprocess.run([_promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_rule_unit_tests() -> None:
    files = sorted((GRAFANA / "tests").glob("*_test.yml"))
    assert len(files) >= 4
    res = subprocess.run([_promtool(), "test", "rules", *map(str, files)], capture_output=True, text=True,
                         timeout=120, cwd=GRAFANA / "tests")
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("SUCCESS") == len(files)


def test_promtool_tests_catch_a_broken_rule(tmp_path) -> None:
    """The promtool tests must fail when a rule's threshold is wrong, not pass vacuously."""
    broken = ALERTS.read_text().replace("> 0.05\n", "> 0.5\n")
    assert broken != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(broken)
    test_dir = tmp_path / "tests"
    test_dir.mkdir()
    src = (GRAFANA / "tests" / "arm_error_rate_test.yml").read_text()
    (test_dir / "t.yml").write_text(src)
    res = subprocess.run([_promtool(), "test", "rules", "t.yml"], capture_output=True, text=True, timeout=60,
                         cwd=test_dir)
    assert res.returncode != 0 and "FAILED" in res.stdout + res.stderr
