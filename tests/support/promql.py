"""Real Prometheus for tests, and the PromQL our dashboards and alert rules use."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.support import http
from tests.support.procs import ROOT, Proc, free_port, wait_http

GRAFANA = ROOT / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
ALERTS = GRAFANA / "alerts.yml"

# What Grafana would substitute. Rate windows span the whole (short) test run so a panel
# still has data a few seconds after the traffic stopped.
DEFAULT_VARS = {"$__rate_interval": "5m", "$__interval": "5s", "$__range": "5m", "$route": "support",
                "$arm": "control|treatment"}


def start_prometheus(tmp: Path, targets: list[str], *, rule_files: tuple[Path, ...] = (ALERTS,)
                     ) -> tuple[Proc, str]:
    """Prometheus scraping `targets` (host:port) every second and evaluating `rule_files`."""
    exe = shutil.which("prometheus")
    if exe is None:
        raise RuntimeError("prometheus is not installed: run `make sysdeps` (make test does)")
    port = free_port()
    cfg = tmp / f"prometheus-{port}.yml"
    cfg.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [{"job_name": "abgate", "static_configs": [{"targets": targets}]}],
    }))
    proc = Proc([exe, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / f'prom-data-{port}'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                log=tmp / f"prometheus-{port}.log").start()
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/-/ready", proc, timeout=30)
    return proc, base


def query(base: str, expr: str) -> list[dict[str, Any]]:
    r = http.get(f"{base}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    if r.status_code != 200 or body.get("status") != "success":
        raise AssertionError(f"query failed ({r.status_code}): {expr}\n{body}")
    data = body["data"]
    if data["resultType"] == "scalar":
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]


def values(result: list[dict[str, Any]]) -> list[float]:
    return [float(s["value"][1]) for s in result]


def wait_for(base: str, expr: str, predicate, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Poll `expr` until `predicate(result)` holds; fail with the last result."""
    deadline = time.monotonic() + timeout
    result: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        result = query(base, expr)
        if predicate(result):
            return result
        time.sleep(0.25)
    raise AssertionError(f"{expr} did not reach the expected value in {timeout}s; last: {result}")


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])  # panels of collapsed rows


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, raw expr) for every panel target and annotation of every dashboard."""
    out = []
    for path in DASHBOARDS:
        dash = json.loads(path.read_text())
        for p in panels(dash):
            for t in p.get("targets", []):
                out.append((f"{path.name}: {p['title']} [{t['refId']}]", t["expr"]))
        for a in dash.get("annotations", {}).get("list", []):
            if "expr" in a:
                out.append((f"{path.name}: annotation {a['name']}", a["expr"]))
    return out


def rule_queries() -> list[tuple[str, str]]:
    """(where, expr) for every recording and alerting rule; alert thresholds become `bool`
    comparisons so the expression returns its series whether or not it fires."""
    out = []
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        for rule in group["rules"]:
            expr = rule["expr"].strip()
            if "alert" in rule:
                out.append((f"alert {rule['alert']}", as_bool(expr)))
            else:
                out.append((f"record {rule['record']}", expr))
    return out


_CMP = re.compile(r"(?<![=!<>~])(>=|<=|==|!=|>|<)(?!\s*bool)(?=\s*-?[\d.])")


def as_bool(expr: str) -> str:
    """`x > 0.05` -> `x > bool 0.05` (0/1 per series instead of filtering).
    Scalar-first filters (`0 < x`) are flipped so they keep the vector's labels."""
    expr = re.sub(r"\(\s*(-?[\d.]+)\s*<\s*([^()<>]+?)\s*<\s*(-?[\d.]+)\s*\)",
                  r"(\2 > bool \1) * (\2 < bool \3)", expr)
    return _CMP.sub(lambda m: f"{m.group(1)} bool", expr)


def substitute(expr: str, variables: dict[str, str] | None = None) -> str:
    vs = {**DEFAULT_VARS, **(variables or {})}
    for name in sorted(vs, key=len, reverse=True):  # $__rate_interval before $__range etc.
        expr = expr.replace(name, vs[name])
    if "$" in expr:
        raise AssertionError(f"unsubstituted template variable in {expr}")
    return expr


def has_finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(v) for v in values(result))
