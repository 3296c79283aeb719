"""gateway.lifecycle: shutdown dates from upstream listings or the config, the gauge, the start-up warning."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway import lifecycle as lc
from gateway.config import ConfigError, validate
from tests.support import http
from tests.support.procs import poll_until, start_gateway, start_simulator

CFG = {
    "routes": {"support": {"experiment": "e", "arms": [
        {"name": "control", "model": "ft:gpt-4o-mini-2024-07-18:acme:s:1", "weight": 1.0},
        {"name": "luna", "model": "gpt-6-luna", "weight": 0.0},
        {"name": "legacy", "model": "legacy-model", "weight": 0.0}]}},
    "upstreams": {"u": {"base_url": "http://127.0.0.1:1/v1"}},
    "models": {"legacy-model": {"shutdown_date": "2026-12-20"},
               "ft:gpt-4o-mini-2024-07-18:acme:s:1": {"shutdown_date": "2030-01-01"}},
}


def test_parse_shutdown_accepts_dates_times_and_unix_seconds() -> None:
    assert lc.parse_shutdown("2027-01-14") == date(2027, 1, 14)
    assert lc.parse_shutdown("2027-01-14T00:00:00Z") == date(2027, 1, 14)
    assert lc.parse_shutdown(1799884800) == date(2027, 1, 14)
    for bad in (None, "", "soon", True, [], "2027-13-01"):
        assert lc.parse_shutdown(bad) is None


def test_dates_from_listing_keeps_models_with_a_date() -> None:
    body = json.dumps({"object": "list", "data": [
        {"id": "gpt-4o-mini-2024-07-18", "object": "model", "shutdown_date": "2027-01-14"},
        {"id": "gpt-6-luna", "object": "model"}, {"id": "x", "shutdown_date": None}]}).encode()
    assert lc.dates_from_listing(body) == {"gpt-4o-mini-2024-07-18": date(2027, 1, 14)}


def test_upstream_date_wins_over_the_config_and_retiring_filters_by_days() -> None:
    cfg = validate(CFG)
    upstream = {"ft:gpt-4o-mini-2024-07-18:acme:s:1": date(2027, 1, 14)}
    by_arm = {s.arm: s for s in lc.arm_shutdowns(cfg, upstream)}
    assert set(by_arm) == {"control", "legacy"}  # luna: no date anywhere
    assert (by_arm["control"].shutdown, by_arm["control"].source) == (date(2027, 1, 14), "upstream")
    assert (by_arm["legacy"].shutdown, by_arm["legacy"].source) == (date(2026, 12, 20), "config")
    today = date(2026, 12, 2)
    assert [s.arm for s in lc.retiring(by_arm.values(), 30, today)] == ["legacy"]
    assert [s.arm for s in lc.retiring(by_arm.values(), 43, today)] == ["legacy", "control"]
    assert by_arm["control"].days_left(today) == 43
    assert lc.days_to(date(2027, 1, 14), datetime(2027, 1, 13, 12, tzinfo=UTC)) == 0.5


def test_a_fine_tune_retires_with_its_base_model() -> None:
    cfg = validate({**CFG, "models": {}})
    by_arm = {s.arm: s for s in lc.arm_shutdowns(cfg, {"gpt-4o-mini-2024-07-18": date(2027, 1, 14)})}
    assert (by_arm["control"].shutdown, by_arm["control"].source) == (date(2027, 1, 14), "upstream:base")
    cfg = validate({**CFG, "models": {"gpt-4o-mini-2024-07-18": {"shutdown_date": "2027-01-14"}}})
    by_arm = {s.arm: s for s in lc.arm_shutdowns(cfg, {})}
    assert by_arm["control"].source == "config:base"
    assert lc.base_model("ft:gpt-4o-mini-2024-07-18:acme:s:1") == "gpt-4o-mini-2024-07-18"
    assert lc.base_model("gpt-6-luna") is None and lc.base_model("ft:") is None


def test_config_shutdown_date_must_be_a_date() -> None:
    bad = {**CFG, "models": {"legacy-model": {"shutdown_date": "next year"}}}
    with pytest.raises(ConfigError) as err:
        validate(bad)
    assert err.value.field == "models.legacy-model.shutdown_date"


def test_gauge_follows_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    reg = CollectorRegistry()
    life = lc.Lifecycle(reg)
    life.upstream_dates = {"ft:gpt-4o-mini-2024-07-18:acme:s:1": date(2027, 1, 14)}
    life.on_config(validate(CFG))
    text = generate_latest(reg).decode()
    assert 'abgate_model_days_to_shutdown{arm="control",model="ft:gpt-4o-mini-2024-07-18:acme:s:1",route="support"}' \
        in text
    assert 'arm="legacy"' in text and 'arm="luna"' not in text
    # the arm is removed from the config: its series goes
    one_arm = {**CFG, "routes": {"support": {"experiment": "e", "arms": [CFG["routes"]["support"]["arms"][0]]}}}
    life.on_config(validate(one_arm))
    assert 'arm="legacy"' not in generate_latest(reg).decode()


@pytest.mark.integration
def test_gateway_warns_at_start_and_exports_days_to_shutdown(tmp_path: Path) -> None:
    sim_proc, sim = start_simulator(tmp_path)
    gw = None
    try:
        cfg = tmp_path / "router.yaml"
        cfg.write_text(f"""
routes:
  support:
    experiment: support-ft-2
    arms:
      - {{name: control, model: "ft:gpt-4o-mini-2024-07-18:acme:support:abc123", weight: 1.0}}
      - {{name: luna, model: gpt-6-luna, weight: 0.0}}
upstreams:
  sim: {{base_url: "{sim}/v1", timeout_s: 10}}
""")
        gw, base = start_gateway(tmp_path, cfg, tmp_path / "state")
        series = 'abgate_model_days_to_shutdown{arm="control",model="ft:gpt-4o-mini-2024-07-18:acme:support:abc123"'
        poll_until(lambda: series in http.get(f"{base}/metrics").text, "the days-to-shutdown gauge", timeout=15,
                   interval=0.1)
        text = http.get(f"{base}/metrics").text
        assert series in text, text[-2000:]
        value = float(next(line for line in text.splitlines() if line.startswith(series)).rsplit(" ", 1)[1])
        assert abs(value - lc.days_to(date(2027, 1, 14))) < 0.1
        assert 'arm="luna"' not in "\n".join(x for x in text.splitlines() if x.startswith("abgate_model_days"))
        poll_until(lambda: "model_retiring" in gw.output(), "the model_retiring warning", timeout=10)
        out = gw.output()
        line = next(x for x in out.splitlines() if "model_retiring" in x)
        assert "2027-01-14" in line and "upstream:base" in line and "ft:gpt-4o-mini-2024-07-18:acme:support:abc123" in line
    finally:
        if gw is not None:
            gw.stop()
        sim_proc.stop()
