"""One meaning per metric: the feedback API, Prometheus outcomes, the analysis and dataset
building all read a value the way gateway.metric_catalog says."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import analysis as an
from gateway import config as cfgmod
from gateway import events as ev
from gateway import feedback, metrics
from gateway import metric_catalog as catalog
from gateway.archive import ArchiveWriter
from gateway.errors import ApiError
from training.build import signal_of

# (metric, a value the API accepts, the per-interaction number the analysis must see)
ACCEPTED = [("thumbs", 1, 1.0), ("thumbs", -1, 0.0), ("approved", True, 1.0), ("approved", False, 0.0),
            ("csat", 4, 4.0), ("followup", True, 1.0), ("policy_violation", False, 0.0),
            ("edited_response", "a better answer", 1.0)]


def test_every_builtin_has_one_definition() -> None:
    assert set(feedback.BUILTIN_METRICS) == set(cfgmod.BUILTIN_METRICS) == set(metrics.BUILTIN_FEEDBACK_METRICS)
    for m in feedback.BUILTIN_METRICS:
        d = catalog.definition(m)
        assert d.source == "feedback" and d.meaning
        assert d.aggregation == ("unit_mean" if d.count else "ratio")
    assert catalog.aggregation("latency_ms") == "unit_mean" and catalog.aggregation("review.overall") == "ratio"


@pytest.mark.parametrize("metric,value,number", ACCEPTED)
def test_api_prometheus_and_analysis_agree(tmp_path: Path, metric: str, value: object, number: float) -> None:
    v = feedback.validate_value(metric, value, {})
    assert catalog.feedback_outcome(metric, v)[1] == number
    common = dict(tenant="t", route="r", experiment="e", phase=1, config_version=1)
    ArchiveWriter(tmp_path).write([
        ev.Interaction(event_id="i", ts="2025-01-01T00:00:00Z", arm="control", interaction_id="x", unit="u",
                       traffic="live", model="m", stream=False, status="ok", http_status=200, latency_ms=1.0, **common),
        ev.Feedback(event_id="f", ts="2025-01-01T00:00:01Z", arm="control", interaction_id="x", unit="u",
                    metric=metric, value=v, **common),
    ])
    a = an.analyze(tmp_path, "e", expected_weights={"control": 1.0})
    assert a.metrics[metric].arms["control"].mean == pytest.approx(number)


def test_thumbs_strings_are_rejected_by_the_api_and_not_read_by_the_analysis() -> None:
    with pytest.raises(ApiError):
        feedback.validate_value("thumbs", "up", {})
    assert "'up'" not in an._VALUE_SQL


def test_custom_metric_may_not_shadow_an_interaction_metric() -> None:
    with pytest.raises(cfgmod.ConfigError, match="metrics.cost_usd"):
        cfgmod.parse_yaml("routes: {}\nupstreams: {s: {base_url: 'http://x/v1'}}\nmetrics: {cost_usd: {type: float}}\n")


def test_dataset_signal_reads_thumbs_like_the_catalog() -> None:
    assert signal_of({"thumbs": -1}) == "thumbs_down" and signal_of({"thumbs": 1}) == "thumbs_up"
    assert signal_of({"followup": True}) == "followup" and signal_of({"followup": False}) == "no_followup"
